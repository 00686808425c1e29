"""Workflows the tests run, in-process and in worker subprocesses."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from datetime import timedelta
from decimal import Decimal

import django_durable as durable

from .models import Execution, SideEffect

# Tests flip this to change a workflow's code path between two executions of a run.
VARIANT = {"value": "a"}


def executed(run_id: str, label: str) -> int:
    """Count an execution of a step body; return how many times it ran so far."""
    Execution.objects.create(run_id=run_id, label=label, pid=os.getpid())
    return Execution.objects.filter(run_id=run_id, label=label).count()


@durable.workflow(name="tests.add")
def add(ctx: durable.Context, a: int, b: int) -> int:
    return ctx.step("add", lambda: a + b)


@durable.step
def double(value: int) -> int:
    return value * 2


@durable.workflow(name="tests.step_function")
def step_function(ctx: durable.Context, value: int) -> int:
    return double(double(value))


@durable.workflow(name="tests.counted")
def counted(ctx: durable.Context, steps: int, pause: float = 0.0) -> int:
    """``steps`` steps, each counting its executions and pausing (a slow body)."""
    total = 0
    for index in range(steps):

        def body(index: int = index) -> int:
            executed(ctx.run_id, f"step-{index}")
            time.sleep(pause)
            return index

        total += ctx.step(f"step-{index}", body)
    return total


@durable.workflow(name="tests.atomic_counted")
def atomic_counted(ctx: durable.Context, steps: int, pause: float = 0.0) -> int:
    """Atomic steps: the SideEffect row of each must exist exactly once."""
    for index in range(steps):

        def body(index: int = index) -> int:
            SideEffect.objects.create(run_id=ctx.run_id, label=f"step-{index}")
            time.sleep(pause)
            return index

        ctx.step(f"step-{index}", body, atomic=True)
    return steps


@durable.workflow(name="tests.values")
def values(ctx: durable.Context) -> dict:
    first = (ctx.now(), ctx.uuid(), ctx.random())
    second = (ctx.now(), ctx.uuid(), ctx.random())
    return {"first": list(first), "second": list(second)}


@durable.workflow(name="tests.types")
def types(ctx: durable.Context, when, amount: Decimal) -> dict:
    later = ctx.step("later", lambda: when + timedelta(days=1))
    return {"later": later, "amount": ctx.step("amount", lambda: amount * 2), "tuple": (1, 2)}


@durable.workflow(name="tests.sleeper")
def sleeper(ctx: durable.Context, seconds: float) -> str:
    executed(ctx.run_id, "before")  # runs on every replay: counts executions
    ctx.step("before", lambda: "x")
    ctx.sleep(seconds)
    return ctx.step("after", lambda: "woke")


@durable.workflow(name="tests.sleep_until")
def sleep_until(ctx: durable.Context, when) -> str:
    ctx.sleep_until(when)
    return "done"


@durable.workflow(name="tests.flaky")
def flaky(ctx: durable.Context, failures: int, retry_after: float | None = None) -> int:
    """A step that fails ``failures`` times, then succeeds."""

    def body() -> int:
        count = executed(ctx.run_id, "flaky")
        if count <= failures:
            if retry_after is not None:
                raise durable.RetryableError(f"try {count} failed", retry_after=retry_after)
            raise ConnectionError(f"try {count} failed")
        return count

    policy = durable.RetryPolicy(max_attempts=4, initial_delay=0.05, backoff=2.0, max_delay=0.2)
    return ctx.step("flaky", body, retry=policy)


def _info_until(succeed_at: int) -> dict:
    """A body that fails until attempt ``succeed_at``, then returns what step_info() said."""
    info = durable.step_info()
    if info.attempt < succeed_at:
        raise ConnectionError(f"attempt {info.attempt} failed")
    return {**dataclasses.asdict(info), "is_last_attempt": info.is_last_attempt}


@durable.workflow(name="tests.step_info")
def step_info(ctx: durable.Context) -> dict:
    policy = durable.RetryPolicy(max_attempts=3, initial_delay=0)
    try:
        durable.step_info()
    except durable.DurableError as exc:
        outside = str(exc)
    return {
        "plain": ctx.step("plain", _info_until, 3, retry=policy),
        "atomic": ctx.step("atomic", _info_until, 1, atomic=True),
        "outside": outside,
    }


@durable.workflow(name="tests.async_step_info")
async def async_step_info(ctx: durable.AsyncContext) -> dict:
    async def awaited() -> dict:
        return _info_until(2)

    policy = durable.RetryPolicy(max_attempts=2, initial_delay=0)
    return {
        "async": await ctx.step("async", awaited, retry=policy),
        "sync": await ctx.step("sync", _info_until, 1),
    }


@durable.workflow(name="tests.fatal")
def fatal(ctx: durable.Context) -> None:
    def body() -> None:
        executed(ctx.run_id, "fatal")
        raise durable.FatalError("card declined")

    ctx.step("charge", body, retry=durable.RetryPolicy(max_attempts=5, initial_delay=0))


class LocalError(Exception):
    """Defined here: importable, so a failed step raises it again on replay."""


@durable.workflow(name="tests.catches")
def catches(ctx: durable.Context) -> str:
    """Catches a failed step and compensates; replay must take the same path."""

    def body() -> None:
        raise LocalError("no stock")

    try:
        ctx.step("reserve", body)
    except LocalError as exc:
        ctx.step("compensate", lambda: "undone")
        ctx.sleep(0.05)
        return f"compensated: {exc}"
    return "reserved"


@durable.workflow(name="tests.unrebuildable")
def unrebuildable(ctx: durable.Context) -> str:
    class Hidden(Exception):
        pass

    def body() -> None:
        raise Hidden("nobody can import me")

    try:
        ctx.step("hidden", body)
    except durable.StepFailed as exc:
        ctx.sleep(0.05)
        return exc.error["type"]
    return "no"


@durable.workflow(name="tests.boom")
def boom(ctx: durable.Context) -> None:
    ctx.step("ok", lambda: 1)
    raise ValueError("boom")


@durable.workflow(name="tests.workflow_retry", max_attempts=3)
def workflow_retry(ctx: durable.Context) -> int:
    ctx.step("setup", lambda: executed(ctx.run_id, "setup"))

    def body() -> int:
        count = executed(ctx.run_id, "work")
        if count < 3:
            raise RuntimeError(f"attempt {count} failed")
        return count

    return ctx.step("work", body)


@durable.workflow(name="tests.non_json_step")
def non_json_step(ctx: durable.Context) -> None:
    ctx.step("make-object", lambda: object())


@durable.workflow(name="tests.non_json_result")
def non_json_result(ctx: durable.Context) -> object:
    return {1, 2, 3}


@durable.workflow(name="tests.variant")
def variant(ctx: durable.Context) -> str:
    ctx.step("first", lambda: 1)
    if VARIANT["value"] == "a":
        ctx.step("second-a", lambda: 2)
    else:
        ctx.step("second-b", lambda: 2)
    ctx.sleep(0.05)
    return VARIANT["value"]


@durable.workflow(name="tests.swallows")
def swallows(ctx: durable.Context) -> str:
    """Swallows the non-determinism error; the run must fail anyway."""
    ctx.step("first", lambda: 1)
    with contextlib.suppress(Exception):
        ctx.step("second-" + VARIANT["value"], lambda: 2)
    ctx.sleep(0.05)
    return "swallowed"


@durable.workflow(name="tests.shortened")
def shortened(ctx: durable.Context) -> str:
    ctx.step("first", lambda: 1)
    if VARIANT["value"] == "a":
        ctx.step("second", lambda: 2)
        ctx.sleep(0.05)
    return "end"


@durable.workflow(name="tests.nested_op")
def nested_op(ctx: durable.Context) -> None:
    ctx.step("outer", lambda: ctx.now())


@durable.workflow(name="tests.async_add")
async def async_add(ctx: durable.AsyncContext, a: int, b: int) -> int:
    async def add_async() -> int:
        return a + b

    first = await ctx.step("async-add", add_async)
    second = await ctx.step("sync-add", lambda: first + 1)
    await ctx.sleep(0.05)
    third = await double(second)
    return third


@durable.workflow(name="tests.async_atomic")
async def async_atomic(ctx: durable.AsyncContext) -> int:
    def body() -> int:
        SideEffect.objects.create(run_id=ctx.run_id, label="async-atomic")
        return 1

    return await ctx.step("write", body, atomic=True)


@durable.workflow(name="tests.timeout", timeout=0.5)
def timeout(ctx: durable.Context) -> str:
    ctx.step("first", lambda: 1)
    ctx.sleep(60)
    return "never"


@durable.workflow(name="tests.exits")
def exits(ctx: durable.Context) -> None:
    raise SystemExit(3)


@durable.workflow(name="tests.big_result")
def big_result(ctx: durable.Context, size: int) -> str:
    return ctx.step("big", lambda: "x" * size)


@durable.workflow(name="tests.long_name")
def long_name(ctx: durable.Context) -> None:
    ctx.step("x" * 201, lambda: 1)


@durable.workflow(name="tests.retry_after_handled_failure", max_attempts=2)
def retry_after_handled_failure(ctx: durable.Context) -> str:
    """A handled step failure early on, then a failure that retries the workflow."""

    def refused() -> None:
        executed(ctx.run_id, "refused")
        raise LocalError("refused")

    try:
        ctx.step("refused", refused)
    except LocalError:
        ctx.step("compensate", lambda: executed(ctx.run_id, "compensate"))

    def flaky() -> int:
        count = executed(ctx.run_id, "flaky")
        if count == 1:
            raise RuntimeError("first attempt fails")
        return count

    ctx.step("flaky", flaky)
    return "done"


# --- talking to runs ---------------------------------------------------------------------


@durable.workflow(name="tests.waits_event")
def waits_event(ctx: durable.Context, name: str, timeout: float | None = None) -> dict:
    executed(ctx.run_id, "before-wait")  # counts executions of the workflow body
    event = ctx.wait_for_event(name, timeout=timeout)
    return {
        "id": event.id,
        "name": event.name,
        "data": event.data,
        "source": event.source,
        "type": event.type,
        "time": event.time,
    }


@durable.workflow(name="tests.event_timeout")
def event_timeout(ctx: durable.Context, name: str, timeout: float) -> str:
    try:
        ctx.wait_for_event(name, timeout=timeout)
    except durable.EventTimeout:
        ctx.step("after-timeout", lambda: 1)
        ctx.sleep(0.3)  # replayed after this: the timeout must replay as a timeout
        return "timed out"
    return "received"


@durable.workflow(name="tests.waits_twice")
def waits_twice(ctx: durable.Context, name: str) -> list:
    first = ctx.wait_for_event(name)
    second = ctx.wait_for_event(name)
    return [first.data, second.data]


@durable.workflow(name="tests.emits")
def emits(ctx: durable.Context, name: str) -> int:
    event_id = ctx.emit_event(name, {"from": ctx.run_id}, source="tests", type="demo")
    ctx.sleep(0.05)
    return event_id


@durable.workflow(name="tests.receives")
def receives(
    ctx: durable.Context, count: int, topic: str | None = None, timeout: float | None = None
) -> list:
    received = [ctx.recv(topic, timeout=timeout) for _ in range(count)]
    ctx.sleep(0.05)  # replayed: the messages must come from the records, not be taken again
    return received


@durable.workflow(name="tests.recv_timeout")
def recv_timeout(ctx: durable.Context, timeout: float) -> list:
    first = ctx.recv("late", timeout=timeout)
    ctx.sleep(0.3)
    return [first]


@durable.workflow(name="tests.recv_with_default")
def recv_with_default(ctx: durable.Context, count: int, timeout: float) -> list:
    """Receive ``count`` times, telling a timeout from a message that is ``None``."""
    received = [ctx.recv(timeout=timeout, default="timed out") for _ in range(count)]
    ctx.sleep(0.05)  # replayed: the timeouts must replay as the default too
    return received


@durable.workflow(name="tests.async_recv_with_default")
async def async_recv_with_default(ctx: durable.AsyncContext, timeout: float) -> list:
    return [
        await ctx.recv(timeout=timeout, default="timed out"),
        await ctx.recv(timeout=timeout, default="timed out"),
    ]


@durable.workflow(name="tests.typed_event")
def typed_event(ctx: durable.Context, name: str) -> dict:
    from .payloads import Payment

    event = ctx.wait_for_event(name, model=Payment)
    return {"amount": event.data.amount, "currency": event.data.currency}


@durable.workflow(name="tests.publishes")
def publishes(ctx: durable.Context, count: int, pause: float = 0.0) -> str:
    for index in range(count):
        ctx.set_progress(index + 1, count, f"item {index}")
        ctx.set_value("last", {"index": index})
        time.sleep(pause)
    ctx.sleep(0.05)
    return "published"


@durable.workflow(name="tests.streams")
def streams(ctx: durable.Context, count: int, pause: float = 0.0, close: bool = True) -> int:
    for index in range(count):
        ctx.write_stream("out", {"index": index})
        time.sleep(pause)
    if close:
        ctx.close_stream("out")
    ctx.sleep(0.05)
    return count


# Set by a test's reader as each item of ``stream_in_lockstep`` reaches it ("<run id>:<index>").
STREAM_SEEN: dict[str, threading.Event] = {}


@durable.workflow(name="tests.stream_in_lockstep")
def stream_in_lockstep(ctx: durable.Context, count: int) -> list[bool]:
    """Write ``count`` items, each after the reader has the one before (or 30 s passed)."""
    seen = []
    for index in range(count):
        ctx.write_stream("out", {"index": index})
        event = STREAM_SEEN.setdefault(f"{ctx.run_id}:{index}", threading.Event())
        seen.append(ctx.step(f"seen-{index}", event.wait, 30))
    ctx.close_stream("out")
    return seen


@durable.workflow(name="tests.slow_stream")
def slow_stream(ctx: durable.Context, count: int, pause: float) -> int:
    """A step between items, so a kill lands between (or inside) them."""
    for index in range(count):
        ctx.step(f"work-{index}", lambda index=index: (time.sleep(pause), index)[1])
        ctx.write_stream("out", index)
    ctx.close_stream("out")
    return count


@durable.workflow(name="tests.write_after_close")
def write_after_close(ctx: durable.Context) -> None:
    ctx.write_stream("out", 1)
    ctx.close_stream("out")
    ctx.write_stream("out", 2)


@durable.workflow(name="tests.stream_then_wait")
def stream_then_wait(ctx: durable.Context, count: int) -> None:
    """Write ``count`` items, leave the stream open, and wait for a message."""
    for index in range(count):
        ctx.write_stream("out", index)
    ctx.recv("go")


@durable.workflow(name="tests.async_channels")
async def async_channels(ctx: durable.AsyncContext, name: str) -> dict:
    event = await ctx.wait_for_event(name)
    message = await ctx.recv("go")
    await ctx.set_progress(1, 2, "half")
    offset = await ctx.write_stream("out", message)
    await ctx.close_stream("out")
    emitted = await ctx.emit_event(f"{name}:done", {"ok": True})
    return {"event": event.data, "message": message, "offset": offset, "emitted": emitted}


# Tests hold the body of a "gate" step here until they set it.
GATE = threading.Event()


def wait_at_gate() -> str:
    GATE.wait(10)
    return "through"


@durable.workflow(name="tests.gated")
def gated(ctx: durable.Context) -> str:
    ctx.step("gate", wait_at_gate)
    ctx.step("after", lambda: "after")
    return "done"


@durable.workflow(name="tests.async_gated")
async def async_gated(ctx: durable.AsyncContext) -> str:
    await ctx.step("gate", wait_at_gate)
    await ctx.step("after", lambda: "after")
    return "done"


# --- started over HTTP ----------------------------------------------------------------------


@durable.workflow(name="tests.http_receives", http_start=True)
def http_receives(ctx: durable.Context, label: str = "") -> dict:
    ctx.set_progress(0, 2, "waiting for approval")
    message = ctx.recv("approval")
    ctx.set_progress(1, 2, "approved")
    for index in range(3):
        ctx.write_stream("log", {"line": index, "label": label})
    ctx.close_stream("log")
    ctx.set_progress(2, 2, "done")
    return {"label": label, "message": message}


@durable.workflow(name="tests.http_fails", http_start=True)
def http_fails(ctx: durable.Context) -> None:
    raise ValueError("secret internals")


@durable.workflow(name="tests.retry_rewinds_channels", max_attempts=2)
def retry_rewinds_channels(ctx: durable.Context) -> object:
    """Attempt 1 fails after writing to every channel; attempt 2 must not see those writes."""

    def flaky() -> int:
        if executed(ctx.run_id, "flaky") == 1:
            raise RuntimeError("first attempt fails")
        return 1

    error = None
    try:
        ctx.step("flaky", flaky)
    except RuntimeError as exc:
        error = exc
    ctx.emit_event("rewind-test", {"failed": error is not None})  # same position both times
    if error is not None:
        ctx.write_stream("out", "written by the failed attempt")
        ctx.set_value("seen", ctx.recv("in"))
        raise error
    message = ctx.recv("in")
    ctx.write_stream("out", "written by the retry")
    return message


@durable.workflow(name="tests.typed_event_retried", max_attempts=3)
def typed_event_retried(ctx: durable.Context, name: str) -> dict:
    from .payloads import Payment

    return {"amount": ctx.wait_for_event(name, model=Payment).data.amount}


# --- event-triggered ----------------------------------------------------------------------


@durable.workflow(name="tests.on_order", trigger_on_event="tests/order")
def on_order(ctx: durable.Context, payload: dict) -> dict:
    return payload


@durable.workflow(
    name="tests.on_batch", trigger_on_event="tests/batch", batch_size=10, batch_timeout=3600
)
def on_batch(ctx: durable.Context, payload: dict) -> dict:
    return payload


@durable.workflow(name="tests.on_signup_mail", trigger_on_event="tests/signup")
def on_signup_mail(ctx: durable.Context, payload: dict) -> list:
    return [event["id"] for event in payload["events"]]


@durable.workflow(name="tests.on_signup_crm", trigger_on_event="tests/signup")
async def on_signup_crm(ctx: durable.AsyncContext, payload: dict) -> list:
    return [event["id"] for event in payload["events"]]


# Wildcards: "*" is one segment, "**" one or more (tests/orchestration/test_wildcards.py).
@durable.workflow(name="tests.on_orders_any_depth", trigger_on_event="tests/orders/**")
def on_orders_any_depth(ctx: durable.Context, payload: dict) -> list:
    return [event["name"] for event in payload["events"]]


@durable.workflow(name="tests.on_orders_one_segment", trigger_on_event="tests/orders/*")
def on_orders_one_segment(ctx: durable.Context, payload: dict) -> list:
    return [event["name"] for event in payload["events"]]


@durable.workflow(
    name="tests.on_regions_batch",
    trigger_on_event="tests/regions/*/created",
    batch_size=3,
    batch_timeout=3600,
)
def on_regions_batch(ctx: durable.Context, payload: dict) -> list:
    return [event["name"] for event in payload["events"]]


# --- scheduled ----------------------------------------------------------------------------
# A tick a year (New Year in Paris): worker processes of other tests sync this schedule, and
# must not start runs of it. The schedule tests move its next tick into the past instead.


@durable.workflow(name="tests.new_year", schedule="0 0 1 1 *", schedule_timezone="Europe/Paris")
def new_year(ctx: durable.Context, scheduled_time) -> object:
    return scheduled_time


@durable.workflow(name="tests.tick")
def tick(ctx: durable.Context, *args: object, scheduled_time, **kwargs: object) -> dict:
    """The workflow of the schedules the tests add as the admin would: returns what it got."""
    return {"args": list(args), "kwargs": kwargs, "scheduled_time": scheduled_time}


# --- orchestration: children, cancellation, versions --------------------------------------


@durable.workflow(name="tests.child_double")
def child_double(ctx: durable.Context, value: int, pause: float = 0.0) -> int:
    executed(ctx.run_id, "child")
    time.sleep(pause)
    return ctx.step("double", lambda: value * 2)


@durable.workflow(name="tests.child_fails")
def child_fails(ctx: durable.Context) -> None:
    ctx.step("before", lambda: 1)
    raise ValueError("child broke")


@durable.workflow(name="tests.parent_one")
def parent_one(ctx: durable.Context, value: int) -> int:
    executed(ctx.run_id, "parent")
    return ctx.run_child(child_double, value)


@durable.workflow(name="tests.parent_fanout")
def parent_fanout(ctx: durable.Context, count: int, pause: float = 0.0) -> list:
    executed(ctx.run_id, "parent")
    handles = [ctx.start_child(child_double, index, pause) for index in range(count)]
    return ctx.gather(*handles)


@durable.workflow(name="tests.parent_catches_child")
def parent_catches_child(ctx: durable.Context) -> dict:
    try:
        ctx.run_child("tests.child_fails")
    except durable.ChildWorkflowFailed as exc:
        ctx.sleep(0.05)  # replayed after this: the failure must come from the record
        return {"child": exc.run_id, "type": exc.error_type, "message": exc.error_message}
    return {}


@durable.workflow(name="tests.parent_uncaught_child")
def parent_uncaught_child(ctx: durable.Context) -> None:
    ctx.run_child("tests.child_fails")


@durable.workflow(name="tests.nested")
def nested(ctx: durable.Context, levels: int) -> int:
    if levels == 0:
        ctx.sleep(3600)
        return 0
    return ctx.run_child(nested, levels - 1) + 1


@durable.workflow(name="tests.sleepy_child")
def sleepy_child(ctx: durable.Context) -> str:
    ctx.sleep(3600)
    return "woke"


@durable.workflow(name="tests.parent_leaves")
def parent_leaves(ctx: durable.Context, policy: str) -> str:
    handle = ctx.start_child(sleepy_child.using(parent_close=policy))
    return handle.run_id


@durable.workflow(name="tests.parent_naps_then_leaves")
def parent_naps_then_leaves(ctx: durable.Context) -> str:
    """Starts a child, suspends, and finishes in a later execution (replaying the start)."""
    handle = ctx.start_child(sleepy_child)
    ctx.sleep(60)
    return handle.run_id


@durable.workflow(name="tests.cancels_its_child")
def cancels_its_child(ctx: durable.Context) -> str:
    handle = ctx.start_child(sleepy_child)
    handle.cancel("not needed")
    try:
        handle.result()
    except durable.ChildWorkflowFailed as exc:
        return exc.error_type
    return "finished"


@durable.workflow(name="tests.async_cleanup")
async def async_cleanup(ctx: durable.AsyncContext, shielded_sleep: float = 0.0) -> str:
    """``cleanup`` as an ``async def`` workflow."""
    try:
        await ctx.step("work", lambda: executed(ctx.run_id, "work"))
        await ctx.sleep(3600)
        await ctx.step("never", lambda: executed(ctx.run_id, "never"))
    except durable.Cancelled:
        with ctx.shield():
            if shielded_sleep:
                await ctx.sleep(shielded_sleep)
            await ctx.step("cleanup", lambda: executed(ctx.run_id, "cleanup"))
        raise
    return "finished"


@durable.workflow(name="tests.cleanup")
def cleanup(ctx: durable.Context, shielded_sleep: float = 0.0) -> str:
    try:
        ctx.step("work", lambda: executed(ctx.run_id, "work"))
        ctx.sleep(3600)
        ctx.step("never", lambda: executed(ctx.run_id, "never"))
    except durable.Cancelled:
        with ctx.shield():
            if shielded_sleep:
                ctx.sleep(shielded_sleep)  # cleanup may wait; cancellation does not cut it
            ctx.step("cleanup", lambda: executed(ctx.run_id, "cleanup"))
        raise
    return "finished"


@durable.workflow(name="tests.slow_steps")
def slow_steps(ctx: durable.Context, count: int, pause: float) -> int:
    for index in range(count):
        ctx.step(
            f"step-{index}",
            lambda index=index: (executed(ctx.run_id, f"s{index}"), time.sleep(pause))[0],
        )
    return count


@durable.workflow(name="tests.handles_cancel")
def handles_cancel(ctx: durable.Context) -> str:
    try:
        ctx.recv("never")
    except durable.Cancelled:
        return "handled"
    return "received"


@durable.workflow(name="tests.versioned")
def versioned(ctx: durable.Context) -> str:
    ctx.step("a", lambda: 1)
    if VARIANT["value"] == "a":  # the code as it was
        path = ctx.step("old", lambda: "old")
    elif ctx.patched("switch-to-new"):  # the code as it is now
        path = ctx.step("new", lambda: "new")
    else:
        path = ctx.step("old", lambda: "old")
    ctx.sleep(0.05)
    return path


@durable.workflow(name="tests.times_out_cancelled", timeout=0.5, on_timeout="cancel")
def times_out_cancelled(ctx: durable.Context) -> str:
    try:
        ctx.sleep(60)
    except durable.Cancelled:
        with ctx.shield():
            ctx.step("cleanup", lambda: executed(ctx.run_id, "cleanup"))
        raise
    return "woke"


@durable.workflow(name="tests.async_times_out_cancelled", timeout=0.5, on_timeout="cancel")
async def async_times_out_cancelled(ctx: durable.AsyncContext) -> str:
    try:
        await ctx.sleep(60)
    except durable.Cancelled:
        with ctx.shield():
            await ctx.step("cleanup", lambda: executed(ctx.run_id, "cleanup"))
        raise
    return "woke"


@durable.workflow(name="tests.parent_with_deadline", timeout=0.5)
def parent_with_deadline(ctx: durable.Context) -> str:
    # Abandoned, so that it outlives its parent and meets the deadline it inherited.
    handle = ctx.start_child(sleepy_child.using(parent_close="abandon"))
    return handle.run_id


@durable.workflow(name="tests.retry_me")
def retry_me(ctx: durable.Context) -> int:
    ctx.step("first", lambda: executed(ctx.run_id, "first"))

    def flaky() -> int:
        if executed(ctx.run_id, "flaky") == 1:
            raise RuntimeError("first try fails")
        return 7

    return ctx.step("flaky", flaky)


@durable.workflow(name="tests.async_parent")
async def async_parent(ctx: durable.AsyncContext, count: int) -> dict:
    handles = [await ctx.start_child(child_double, index) for index in range(count)]
    results = await ctx.gather(*handles)
    single = await ctx.run_child(child_double, 100)
    with ctx.shield():
        marker = await ctx.patched("async-patch")
    return {"results": results, "single": single, "patched": marker}


@durable.workflow(name="tests.exclusive", queue="single")
def exclusive(ctx: durable.Context, pause: float) -> int:
    """Runs in a queue limited to one run at a time: records when it is in its step."""

    def body() -> int:
        executed(ctx.run_id, "enter")
        time.sleep(pause)
        executed(ctx.run_id, "leave")
        return 1

    return ctx.step("work", body)


@durable.workflow(name="tests.rated", queue="rated")
def rated(ctx: durable.Context) -> int:
    return ctx.step("work", lambda: 1)


@durable.workflow(name="tests.cleans_up_after_recv")
def cleans_up_after_recv(ctx: durable.Context) -> str:
    """Cancelled while it waits for a message, it cleans up; retried, it waits again."""
    try:
        message = ctx.recv("go")
    except durable.Cancelled:
        with ctx.shield():
            ctx.sleep(0.05)  # a wait inside the cleanup must not be cut short or confused
            ctx.step("cleanup", lambda: executed(ctx.run_id, "cleanup"))
        raise
    return f"got {message}"


@durable.workflow(name="tests.cancelled_in_backoff")
def cancelled_in_backoff(ctx: durable.Context) -> str:
    """Its step keeps failing with a long backoff, during which it is cancelled."""

    def body() -> str:
        if executed(ctx.run_id, "attempt") == 1:
            raise RuntimeError("first attempt fails")
        return "second attempt worked"

    try:
        return ctx.step(
            "flaky",
            body,
            retry=durable.RetryPolicy(max_attempts=3, initial_delay=3600, max_delay=3600),
        )
    except durable.Cancelled:
        with ctx.shield():
            ctx.step("cleanup", lambda: executed(ctx.run_id, "cleanup"))
        raise


@durable.workflow(name="tests.child_waits_for_go")
def child_waits_for_go(ctx: durable.Context) -> str:
    return f"child got {ctx.recv('go')}"


@durable.workflow(name="tests.parent_of_waiting_child")
def parent_of_waiting_child(ctx: durable.Context, fail_after: bool = False) -> str:
    handle = ctx.start_child(child_waits_for_go)
    if fail_after:

        def fails_once() -> str:
            if executed(ctx.run_id, "fails_once") == 1:
                raise RuntimeError("the parent's own step fails")
            return "ok"

        ctx.step("fails_once", fails_once, retry=durable.RetryPolicy(max_attempts=1))
    return f"parent saw: {handle.result()}"


from . import reliability_workflows  # noqa: E402, F401  (the reliability suite)
from .clock_workflows import holds  # noqa: E402, F401  (loads the clock tests' workflows)
from .flow_workflows import flow_pair  # noqa: E402, F401  (loads the flow control ones)
from .fork_workflows import BUG  # noqa: E402, F401  (loads the fork tests' workflows)
from .multidb_workflows import PAUSE  # noqa: E402, F401  (the two-database tests' workflows)
from .race_workflows import GATES  # noqa: E402, F401  (loads the race and restart workflows)
from .saga_workflows import STAGES  # noqa: E402, F401  (loads the compensation ones)
from .stream_workflows import batches  # noqa: E402, F401  (batched stream writes)
from .timeout_workflows import GATES as TIMEOUT_GATES  # noqa: E402, F401  (step timeouts)
from .upgrade_workflows import NAP  # noqa: E402, F401  (loads the upgrade test's workflows)
from .waits_workflows import said  # noqa: E402, F401  (loads the first_of and callback ones)
