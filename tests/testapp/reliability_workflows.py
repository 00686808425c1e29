"""Workflows of the reliability suite (tests/reliability), in worker processes and in-process.

Their steps say which process ran them: a plain step's body writes an ``Execution`` row
(committed at once, outside the checkpoint, so every try counts) and returns the pid, so
the checkpoint records who wrote it; an atomic step writes a ``SideEffect`` row in the
checkpoint's transaction, so it exists exactly once per step or the step is not recorded.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import django_durable as durable

from .models import Execution, SideEffect


def _plain(run_id: str, label: str, pause: float) -> int:
    Execution.objects.create(run_id=run_id, label=label, pid=os.getpid())
    if pause:
        time.sleep(pause)
    return os.getpid()


def _atomic(run_id: str, label: str) -> int:
    SideEffect.objects.create(run_id=run_id, label=label)
    return os.getpid()


@durable.workflow(name="reliability.steps")
def steps(ctx: durable.Context, count: int, pause: float = 0.0) -> int:
    """``count`` steps: even positions plain (with a pause), odd ones atomic."""
    for index in range(count):
        label = f"step-{index}"
        if index % 2:
            ctx.step(label, _atomic, ctx.run_id, label, atomic=True)
        else:
            ctx.step(label, _plain, ctx.run_id, label, pause)
    return count


# --- poison: each must end the run with a clear error, never the worker --------------------


@durable.workflow(name="reliability.kills_its_worker")
def kills_its_worker(ctx: durable.Context) -> None:
    def body() -> None:
        Execution.objects.create(run_id=ctx.run_id, label="kill", pid=os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)

    ctx.step("kill", body)


@durable.workflow(name="reliability.nondeterministic")
def nondeterministic(ctx: durable.Context) -> str:
    """Branches on something it does not record: how often its body has run."""
    Execution.objects.create(run_id=ctx.run_id, label="body", pid=os.getpid())
    count = Execution.objects.filter(run_id=ctx.run_id, label="body").count()
    ctx.step(f"branch-{count}", lambda: count)
    ctx.sleep(0.05)  # the run executes again after this, and takes another branch
    return "never"


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


# Values that cannot be stored: each must fail the run that produces them, with a message.
BAD_VALUES: dict[str, Callable[[int], Any]] = {
    "object": lambda size: object(),
    "set": lambda size: {1, 2, 3},
    "nan": lambda size: float("nan"),
    "nul": lambda size: "before\x00after",
    "deep": _nested,
    "huge": lambda size: "x" * size,
}


@durable.workflow(name="reliability.bad_step_result")
def bad_step_result(ctx: durable.Context, kind: str, size: int = 0) -> None:
    ctx.step("bad", BAD_VALUES[kind], size)


@durable.workflow(name="reliability.bad_result")
def bad_result(ctx: durable.Context, kind: str, size: int = 0) -> object:
    ctx.step("fine", lambda: 1)
    return BAD_VALUES[kind](size)


@durable.workflow(name="reliability.bad_value")
def bad_value(ctx: durable.Context, kind: str, size: int = 0) -> None:
    ctx.set_value("bad", BAD_VALUES[kind](size))


@durable.workflow(name="reliability.huge_error")
def huge_error(ctx: durable.Context, size: int) -> None:
    def body() -> None:
        raise ValueError("x" * size)

    ctx.step("fails", body)


@durable.workflow(name="reliability.recurses")
def recurses(ctx: durable.Context) -> None:
    def down(depth: int) -> int:
        return down(depth + 1) + 1

    down(0)


class StepInterrupted(BaseException):
    """Not an ``Exception``: what some libraries raise (timeouts, cancellation scopes)."""


@durable.workflow(name="reliability.raises_base_exception")
def raises_base_exception(ctx: durable.Context) -> None:
    def body() -> None:
        raise StepInterrupted("a step body raised a BaseException")

    ctx.step("interrupted", body)


@durable.workflow(name="reliability.raises_keyboard_interrupt")
def raises_keyboard_interrupt(ctx: durable.Context) -> None:
    def body() -> None:
        raise KeyboardInterrupt("raised by a step, not by Ctrl-C")

    ctx.step("interrupted", body)


@durable.workflow(name="reliability.busy_past_deadline", timeout=60)
def busy_past_deadline(ctx: durable.Context, steps: int, seconds_each: float) -> int:
    """``steps`` short steps, each ``seconds_each`` long on the test clock; it never waits."""
    from django_durable.testing import skip

    for index in range(steps):

        def body(index: int = index) -> int:
            Execution.objects.create(run_id=ctx.run_id, label=f"tick-{index}", pid=os.getpid())
            skip(seconds_each)  # a slow body, without a real sleep
            return index

        ctx.step(f"tick-{index}", body)
    return steps


# --- the state machine (test_state_machine.py): no time, no randomness ---------------------


@durable.workflow(name="reliability.sm_steps")
def sm_steps(ctx: durable.Context, count: int) -> int:
    return sum(ctx.step(f"step-{index}", lambda index=index: index) for index in range(count))


@durable.workflow(name="reliability.sm_receives")
def sm_receives(ctx: durable.Context, count: int) -> list:
    received = [ctx.recv("go") for _ in range(count)]
    ctx.step("after", lambda: len(received))
    return received


@durable.workflow(name="reliability.sm_waits_event")
def sm_waits_event(ctx: durable.Context, name: str) -> object:
    event = ctx.wait_for_event(name)
    return ctx.step("after", lambda: event.data)


@durable.workflow(name="reliability.sm_fails")
def sm_fails(ctx: durable.Context) -> None:
    ctx.step("before", lambda: 1)

    def body() -> None:
        raise ValueError("always fails")

    ctx.step("fails", body)


@durable.workflow(name="reliability.sm_fails_once")
def sm_fails_once(ctx: durable.Context) -> str:
    """Fails the first time its step runs, succeeds when retried."""

    def body() -> str:
        Execution.objects.create(run_id=ctx.run_id, label="once", pid=os.getpid())
        if Execution.objects.filter(run_id=ctx.run_id, label="once").count() == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    ctx.step("before", lambda: 1)
    return ctx.step("once", body)


@durable.workflow(name="reliability.sm_sleeps")
def sm_sleeps(ctx: durable.Context) -> str:
    try:
        ctx.sleep(3600)
    except durable.Cancelled:
        with ctx.shield():
            ctx.step("cleanup", lambda: "cleaned")
        raise
    return "woke"


@durable.workflow(name="reliability.sm_parent")
def sm_parent(ctx: durable.Context, count: int) -> list:
    handles = [ctx.start_child(sm_steps, index) for index in range(count)]
    return ctx.gather(*handles)


# --- a worker that lost its lease, between two operations (test_lease_lost.py) -------------


def _hold_in_workflow_code(run_id: str) -> None:
    """Wait while the ``SideEffect`` named by ``DURABLE_TEST_GATE`` exists (the test's gate).

    Workflow code, not a step: nothing is written here, so the first write after the gate
    is the next operation's. A worker started without the variable passes at once.
    """
    gate = os.environ.get("DURABLE_TEST_GATE")
    if not gate:
        return
    Execution.objects.create(run_id=run_id, label=f"gate-{gate}", pid=os.getpid())
    deadline = time.monotonic() + 120
    while SideEffect.objects.filter(label=gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test never opened the gate {gate!r}")
        time.sleep(0.02)


@durable.workflow(name="reliability.held_then_sleeps")
def held_then_sleeps(ctx: durable.Context) -> list[int]:
    """A step, a gate in workflow code, a sleep, a step: who wrote each says who ran it."""
    first = ctx.step("first", _plain, ctx.run_id, "first", 0.0)
    _hold_in_workflow_code(ctx.run_id)
    ctx.sleep(0.2)
    second = ctx.step("second", _plain, ctx.run_id, "second", 0.0)
    return [first, second]
