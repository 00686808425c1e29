"""Workflows of the first_of and callback tests (tests/engine, tests/api, tests/worker)."""

from __future__ import annotations

import time
from typing import Any

import django_durable as durable

from .models import Execution


def said(winner: durable.Winner) -> dict:
    """Return a Winner as JSON: which came first, and a JSON form of its value."""
    value: Any = winner.value
    if isinstance(value, durable.ReceivedEvent):
        value = {"event_id": value.id, "data": value.data}
    return {"index": winner.index, "kind": winner.kind, "value": value}


@durable.workflow(name="tests.first_of")
def first_of(ctx: durable.Context, name: str, topic: str, seconds: float) -> dict:
    winner = ctx.first_of(durable.event(name), durable.message(topic), durable.timer(seconds))
    ctx.sleep(0.05)  # replayed after this: the winner must come from the record
    return said(winner)


@durable.workflow(name="tests.first_of_then_the_rest")
def first_of_then_the_rest(ctx: durable.Context, name: str, topic: str) -> dict:
    """Race an event and a message, then take the one that lost: it must still be there."""
    winner = ctx.first_of(durable.message(topic), durable.event(name))
    if winner.kind == "event":
        rest = ctx.recv(topic, timeout=5, default="nothing")
    else:
        rest = ctx.wait_for_event(name, timeout=5).data
    return {**said(winner), "rest": rest}


@durable.workflow(name="tests.async_first_of")
async def async_first_of(ctx: durable.AsyncContext, name: str, topic: str, seconds: float) -> dict:
    winner = await ctx.first_of(durable.event(name), durable.message(topic), durable.timer(seconds))
    await ctx.sleep(0.05)
    return said(winner)


@durable.workflow(name="tests.first_of_twice")
def first_of_twice(ctx: durable.Context, name: str) -> list:
    """An event won by a first_of is received: the next wait takes a newer emission."""
    first = ctx.first_of(durable.event(name), durable.timer(60))
    second = ctx.wait_for_event(name, timeout=5)
    third = ctx.first_of(durable.event(name), durable.timer(60))
    return [first.value.data, second.data, third.value.data]


@durable.workflow(name="tests.first_of_child")
def first_of_child(ctx: durable.Context, pause: float, seconds: float) -> dict:
    from .workflows import child_double

    child = ctx.start_child(child_double, 21, pause)
    winner = ctx.first_of(child, durable.timer(seconds))
    result = child.result()  # the child's end is not taken by first_of
    return {**said(winner), "result": result}


@durable.workflow(name="tests.first_of_failed_child")
def first_of_failed_child(ctx: durable.Context) -> str:
    from .workflows import child_fails

    child = ctx.start_child(child_fails)
    try:
        ctx.first_of(durable.message("never"), child)
    except durable.ChildWorkflowFailed as exc:
        return f"child failed: {exc.run_id == child.run_id}"
    return "no failure"


@durable.workflow(name="tests.first_of_typed")
def first_of_typed(ctx: durable.Context, name: str) -> dict:
    from .payloads import Payment

    winner = ctx.first_of(durable.timer(60), durable.event(name, model=Payment))
    return {"amount": winner.value.data.amount, "index": winner.index}


@durable.workflow(name="tests.first_of_timer_only")
def first_of_timer_only(ctx: durable.Context, seconds: float) -> dict:
    return said(ctx.first_of(durable.timer(seconds)))


@durable.workflow(name="tests.first_of_bad")
def first_of_bad(ctx: durable.Context, what: str) -> None:
    if what == "nothing":
        ctx.first_of()
    else:
        ctx.first_of(durable.event("x"), "not a thing")


# --- callbacks ----------------------------------------------------------------------------


def hand_out(run_id: str, callback: dict) -> dict:
    """Stands for giving the callback to an outside system (counted, as a step body)."""
    Execution.objects.create(run_id=run_id, label="hand-out", pid=0)
    return callback


@durable.workflow(name="tests.callback")
def callback(ctx: durable.Context, timeout: float | None = None) -> Any:
    cb = ctx.callback(timeout=timeout)
    ctx.step("hand-out", hand_out, ctx.run_id, {"id": cb.id, "url": cb.url})
    ctx.set_value("callback", {"id": cb.id, "url": cb.url})
    try:
        value = cb.wait()
    except durable.CallbackFailed as exc:
        return {"failed": str(exc), "details": exc.details}
    except durable.CallbackTimeout:
        return "timed out"
    ctx.sleep(0.05)  # replayed after this: the same callback, the same value
    return {"value": value, "again": cb.wait(), "url": cb.url}


@durable.workflow(name="tests.async_callback")
async def async_callback(ctx: durable.AsyncContext) -> Any:
    cb = await ctx.callback(name="approval")
    await ctx.set_value("callback", {"id": cb.id})
    value = await cb.wait()
    await ctx.sleep(0.05)
    return {"value": value, "id": cb.id}


@durable.workflow(name="tests.first_of_callback")
def first_of_callback(ctx: durable.Context, timeout: float | None = None) -> dict:
    cb = ctx.callback(timeout=timeout)
    ctx.set_value("callback", {"id": cb.id})
    try:
        winner = ctx.first_of(durable.message("cancel"), cb, durable.timer(60))
    except durable.CallbackTimeout:
        return {"kind": "callback", "value": "timed out"}
    return said(winner)


# --- in worker processes, killed -----------------------------------------------------------


def slow(run_id: str, label: str, pause: float) -> str:
    Execution.objects.create(run_id=run_id, label=label, pid=0)
    time.sleep(pause)
    return label


@durable.workflow(name="tests.race_then_slow")
def race_then_slow(ctx: durable.Context, name: str, topic: str, pause: float) -> dict:
    """Race an event, a message and a timer; work slowly (a kill lands here); take the rest."""
    winner = ctx.first_of(durable.event(name), durable.message(topic), durable.timer(3600))
    ctx.step("slow", slow, ctx.run_id, "slow", pause)
    if winner.kind == "event":
        rest = ctx.recv(topic, timeout=30, default="nothing")
    else:
        rest = ctx.wait_for_event(name, timeout=30).data
    return {**said(winner), "rest": rest}


@durable.workflow(name="tests.callback_then_slow")
def callback_then_slow(ctx: durable.Context, pause: float) -> dict:
    cb = ctx.callback(timeout=3600)
    ctx.set_value("callback", {"id": cb.id, "url": cb.url})
    value = cb.wait()
    ctx.step("slow", slow, ctx.run_id, "slow", pause)
    return {"value": value, "id": cb.id}


@durable.workflow(name="tests.callback_after_sleep")
def callback_after_sleep(ctx: durable.Context, seconds: float) -> Any:
    """Make a callback, sleep, then wait: a completion in between is there at once."""
    cb = ctx.callback()
    ctx.set_value("callback", {"id": cb.id})
    ctx.sleep(seconds)
    return cb.wait()
