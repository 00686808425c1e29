"""Workflows of the flow control tests (tests/engine/test_flow_control.py and the worker
process ones): a concurrency key, singletons, debounce, and key functions that fail.

Each body records when it enters and leaves its step (``Execution`` rows labelled
``enter:KEY`` and ``leave:KEY``), so that a test can count how many runs of a key were
inside at once, across processes.
"""

from __future__ import annotations

import time

import django_durable as durable

from .workflows import executed


def _inside(ctx: durable.Context, key: str, pause: float, first_pause: float = 0.0) -> None:
    def body() -> None:
        entered = executed(ctx.run_id, f"enter:{key}")
        time.sleep(first_pause if entered == 1 and first_pause else pause)
        executed(ctx.run_id, f"leave:{key}")

    ctx.step("work", body)


def customer_of(customer: str, *args: object, **kwargs: object) -> str:
    """The flow key of these workflows: their first argument."""
    return customer


@durable.workflow(name="tests.flow_pair", concurrency_key=customer_of, concurrency_limit=2)
def flow_pair(ctx: durable.Context, customer: str, pause: float = 0.0) -> str:
    """At most two runs per customer at once."""
    _inside(ctx, customer, pause)
    return customer


@durable.workflow(name="tests.flow_one", concurrency_key=customer_of)
def flow_one(
    ctx: durable.Context, customer: str, pause: float = 0.0, first_pause: float = 0.0
) -> str:
    """One run per customer at once (the default limit); ``first_pause`` is the pause of
    its first execution only (a worker killed in it leaves the next one short)."""
    _inside(ctx, customer, pause, first_pause)
    return customer


@durable.workflow(name="tests.flow_one_async", concurrency_key=customer_of)
async def flow_one_async(ctx: durable.AsyncContext, customer: str) -> str:
    return await ctx.step("work", lambda: customer)


@durable.workflow(name="tests.flow_singleton", singleton_key=customer_of)
def flow_singleton(ctx: durable.Context, customer: str, note: str = "") -> str:
    """One unfinished run per customer: a start while it is returns it."""
    ctx.wait_for_event(f"flow.go:{customer}")
    return note


@durable.workflow(name="tests.flow_queued", singleton_key=customer_of, on_conflict="queue")
def flow_queued(ctx: durable.Context, customer: str, pause: float = 0.0) -> str:
    """One run per customer at a time: later starts wait for it."""
    _inside(ctx, customer, pause)
    return customer


@durable.workflow(name="tests.flow_debounced", debounce=2, debounce_key=customer_of)
def flow_debounced(ctx: durable.Context, customer: str, value: int) -> int:
    """Starts of one customer within 2 s collapse into one run, with the last value."""
    return ctx.step("work", lambda: value)


@durable.workflow(name="tests.flow_bad_key", concurrency_key=lambda value: value)
def flow_bad_key(ctx: durable.Context, value: object) -> None:
    """Its key is its argument as given: anything but a str is refused at start."""


@durable.workflow(name="tests.flow_raising_key", concurrency_key=lambda order: order["customer"])
def flow_raising_key(ctx: durable.Context, order: dict) -> None:
    """Its key function raises KeyError for an order without a customer."""


@durable.workflow(name="tests.plain_inside")
def plain_inside(ctx: durable.Context, label: str, pause: float = 0.0) -> str:
    """No key: records its step's enter and leave like the keyed ones."""
    _inside(ctx, label, pause)
    return label
