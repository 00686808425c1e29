"""Workflows the tests run, in-process and in worker subprocesses."""

from __future__ import annotations

import contextlib
import os
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


@durable.workflow(name="tests.async_channels")
async def async_channels(ctx: durable.AsyncContext, name: str) -> dict:
    event = await ctx.wait_for_event(name)
    message = await ctx.recv("go")
    await ctx.set_progress(1, 2, "half")
    offset = await ctx.write_stream("out", message)
    await ctx.close_stream("out")
    emitted = await ctx.emit_event(f"{name}:done", {"ok": True})
    return {"event": event.data, "message": message, "offset": offset, "emitted": emitted}


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
