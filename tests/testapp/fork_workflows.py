"""Workflows of the fork tests (tests/client/test_fork.py and the worker processes test).

``BUG`` stands for a bug deployed with the original runs: a test turns it on in its own
process, where the original fails, and off (or starts a fresh worker process, where it is
off) before the fork runs on the "fixed" code.
"""

from __future__ import annotations

import time

import django_durable as durable

from .workflows import add, child_waits_for_go, executed

BUG = {"on": False}
NO_RETRY = durable.RetryPolicy(max_attempts=1)


def _body(run_id: str, label: str, value: object, pause: float = 0.0) -> object:
    executed(run_id, label)
    time.sleep(pause)
    if BUG["on"] and label == "ship":
        raise durable.FatalError(f"bug in {label}")
    return value


@durable.workflow(name="tests.fork_orders")
def fork_orders(ctx: durable.Context, order: str, pause: float = 0.0) -> dict:
    """Four payments (each with its progress and a line of the log), then the shipping."""
    for index in range(1, 5):
        ctx.step(f"pay-{index}", _body, ctx.run_id, f"pay-{index}", index, retry=NO_RETRY)
        ctx.set_progress(index, 5, f"paid {index}")
        ctx.write_stream("log", f"paid {index}")
    shipped = ctx.step("ship", _body, ctx.run_id, "ship", f"shipped {order}", pause)
    ctx.set_progress(5, 5, "shipped")
    ctx.close_stream("log")
    return {"order": order, "shipped": shipped, "paid_at": str(ctx.now())}


@durable.workflow(name="tests.fork_messages")
def fork_messages(ctx: durable.Context) -> dict:
    """A message taken, then a step that has the bug, then another message."""
    first = ctx.recv("approval", timeout=60)
    ctx.step("ship", _body, ctx.run_id, "ship", "shipped", retry=NO_RETRY)
    second = ctx.recv("approval", timeout=60)
    return {"first": first, "second": second}


@durable.workflow(name="tests.fork_events")
def fork_events(ctx: durable.Context) -> dict:
    """An event received, one emitted, then a step that has the bug."""
    event = ctx.wait_for_event("fork/go", timeout=60)
    emitted = ctx.emit_event("fork/emitted", {"from": ctx.run_id})
    ctx.step("ship", _body, ctx.run_id, "ship", "shipped", retry=NO_RETRY)
    return {"event": event.data, "emitted": emitted}


@durable.workflow(name="tests.fork_parent")
def fork_parent(ctx: durable.Context) -> dict:
    """A child run (finished), then a step that has the bug."""
    handle = ctx.start_child(add, 1, 2)
    total = handle.result()
    ctx.step("ship", _body, ctx.run_id, "ship", "shipped", retry=NO_RETRY)
    return {"child": handle.run_id, "total": total}


@durable.workflow(name="tests.fork_abandons")
def fork_abandons(ctx: durable.Context) -> str:
    """A child run left running (abandon), then a failure."""
    ctx.start_child(child_waits_for_go.using(parent_close="abandon"))
    ctx.step("ship", _body, ctx.run_id, "ship", "shipped", retry=NO_RETRY)
    return "done"
