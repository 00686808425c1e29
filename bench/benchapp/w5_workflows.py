"""W5's workflows: runs that suspend at once, on a shared event or on a timer."""

from datetime import datetime

import django_durable as durable


@durable.workflow(name="bench.w5_wait_event")
def wait_event(ctx: durable.Context, name: str) -> int:
    """Wait for event ``name`` (one emission wakes every waiter), then finish."""
    return ctx.wait_for_event(name).id


@durable.workflow(name="bench.w5_sleep_until")
def sleep_until(ctx: durable.Context, until: str) -> str:
    """Sleep until ``until`` (an ISO 8601 time shared by every run), then finish."""
    ctx.sleep_until(datetime.fromisoformat(until))
    return until
