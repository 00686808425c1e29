"""Workflows of the upgrade test (tests/reliability/test_upgrade.py).

The test writes runs of these workflows as an older release of django-durable left them
(the schema of an old migration state, the records its code wrote), migrates to the head
and lets the new code carry them on. Each order reserves, then waits (a sleep, an event
or a message), then ships; every body counts its executions (``Execution`` rows), so the
test can tell that no recorded body ran again.
"""

from __future__ import annotations

import django_durable as durable

from .workflows import executed

NAP = 3600.0  # seconds a sleeper sleeps: longer than any test, so only skip() ends it


def _body(run_id: str, label: str, text: str) -> str:
    executed(run_id, label)
    return f"{label} {text}"


@durable.workflow(name="tests.upgrade_sleeper")
def sleeper(ctx: durable.Context, order: str, nap: float = NAP) -> list[str]:
    """Reserve, sleep ``nap`` seconds, ship."""
    reserved = ctx.step("reserve", lambda: _body(ctx.run_id, "reserve", order))
    ctx.sleep(nap, name="cool_off")
    shipped = ctx.step("ship", lambda: _body(ctx.run_id, "ship", order))
    return [reserved, shipped]


@durable.workflow(name="tests.upgrade_event_waiter")
def event_waiter(ctx: durable.Context, order: str) -> list[str]:
    """Reserve, wait for the event ``paid-<order>``, ship for the amount it says."""
    reserved = ctx.step("reserve", lambda: _body(ctx.run_id, "reserve", order))
    paid = ctx.wait_for_event(f"paid-{order}")
    text = f"{order} paid {paid.data['amount']}"
    shipped = ctx.step("ship", lambda: _body(ctx.run_id, "ship", text))
    return [reserved, shipped]


@durable.workflow(name="tests.upgrade_message_waiter")
def message_waiter(ctx: durable.Context, order: str) -> list[str]:
    """Reserve, take the message on ``approval``, ship as it says."""
    reserved = ctx.step("reserve", lambda: _body(ctx.run_id, "reserve", order))
    approval = ctx.recv("approval")
    text = f"{order} approved by {approval['by']}"
    shipped = ctx.step("ship", lambda: _body(ctx.run_id, "ship", text))
    return [reserved, shipped]
