"""Workflows of the step timeout tests (tests/engine/test_step_timeouts.py).

A body that overruns waits on a gate the test opens (never on the clock), so that the
tests say what happened, not how fast. ``key`` names a test's gates; every body counts
its executions (``Execution`` rows, written from the body's own thread).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

import django_durable as durable

from .models import Execution
from .workflows import executed

# The first attempt waits on GATES[key] (its own fallback: FALLBACK seconds), then marks
# ENDED[key]: the abandoned body reached its end.
GATES: defaultdict[str, threading.Event] = defaultdict(threading.Event)
ENDED: defaultdict[str, threading.Event] = defaultdict(threading.Event)
# A body that blocks the event loop says here that it began.
STARTED: defaultdict[str, threading.Event] = defaultdict(threading.Event)
# An async body cancelled at its deadline says so here.
CANCELLED: defaultdict[str, threading.Event] = defaultdict(threading.Event)
# The connection (wrapper) a body's helper thread used, to check that it was closed.
CONNECTIONS: dict[str, BaseDatabaseWrapper] = {}
FALLBACK = 20.0
SHORT = 0.2  # seconds: the timeout of the steps that overrun here
AGAIN = durable.RetryPolicy(max_attempts=2, initial_delay=0, jitter=0)
LATER = durable.RetryPolicy(max_attempts=2, initial_delay=3600, jitter=0)
ONCE = durable.RetryPolicy(max_attempts=1)


def slow_first(run_id: str, key: str) -> str:
    """Overrun on the first attempt (until the test opens the gate), return at once later."""
    info = durable.step_info()
    executed(run_id, f"attempt-{info.attempt}")
    if info.attempt > 1:
        return "fresh"
    CONNECTIONS[key] = connections[DEFAULT_DB_ALIAS]  # this thread's own
    try:
        GATES[key].wait(FALLBACK)
        return "late"
    finally:
        ENDED[key].set()


def always_slow(run_id: str, key: str) -> str:
    executed(run_id, "slow")
    GATES[key].wait(FALLBACK)
    return "late"


@durable.workflow(name="tests.timeout_retried")
def timeout_retried(ctx: durable.Context, key: str, policy: str = "again") -> str:
    retry = AGAIN if policy == "again" else LATER
    return ctx.step("slow", slow_first, ctx.run_id, key, timeout=SHORT, retry=retry)


@durable.workflow(name="tests.timeout_exhausted")
def timeout_exhausted(ctx: durable.Context, key: str, catch: bool = False) -> str:
    try:
        return ctx.step("slow", always_slow, ctx.run_id, key, timeout=SHORT, retry=AGAIN)
    except durable.StepTimeout as exc:
        if not catch:
            raise
        ctx.sleep(0.01)  # a suspension: the next execution replays the failed step
        return f"caught: {exc}"


@durable.step(timeout=timedelta(milliseconds=200), retry=AGAIN)
def declared_slow(run_id: str, key: str) -> str:
    return slow_first(run_id, key)


@durable.workflow(name="tests.timeout_declared")
def timeout_declared(ctx: durable.Context, key: str) -> str:
    return declared_slow(ctx.run_id, key)


@durable.workflow(name="tests.timeout_in_time")
def timeout_in_time(ctx: durable.Context) -> dict:
    """A step well within its timeout: its result is kept, and replayed after a sleep."""

    def quick() -> dict:
        executed(ctx.run_id, "quick")
        info = durable.step_info()
        left = info.time_left()
        return {"timeout": info.timeout, "left": left is not None and 0 < left <= 60}

    found = ctx.step("quick", quick, timeout=60)
    ctx.sleep(0.01)
    return found


async def _async_slow_first(run_id: str, key: str) -> str:
    info = durable.step_info()
    await sync_to_async(executed)(run_id, f"attempt-{info.attempt}")
    if info.attempt > 1:
        return "fresh"
    try:
        await asyncio.sleep(FALLBACK)
    except asyncio.CancelledError:
        CANCELLED[key].set()
        raise
    return "late"


async def _async_blocking_first(run_id: str, key: str) -> str:
    """Block the event loop (no await) past the deadline on the first attempt."""
    if durable.step_info().attempt > 1:
        return "fresh"
    STARTED[key].set()
    GATES[key].wait(FALLBACK)
    return "late"


@durable.workflow(name="tests.timeout_async")
async def timeout_async(ctx: durable.AsyncContext, key: str, kind: str = "async") -> str:
    body = {"async": _async_slow_first, "plain": slow_first, "blocking": _async_blocking_first}
    return await ctx.step("slow", body[kind], ctx.run_id, key, timeout=SHORT, retry=AGAIN)


def _reserve(run_id: str) -> str:
    executed(run_id, "reserve")
    return "reserved"


def _undo(run_id: str, result: str) -> None:
    executed(run_id, f"undo-{result}")


@durable.workflow(name="tests.timeout_saga")
def timeout_saga(ctx: durable.Context, key: str) -> str:
    with ctx.saga() as saga:
        saga.step("reserve", _reserve, ctx.run_id, compensate=lambda r: _undo(ctx.run_id, r))
        saga.step("charge", always_slow, ctx.run_id, key, timeout=SHORT, retry=ONCE)
    return "unreachable"


@durable.workflow(name="tests.timeout_async_saga")
async def timeout_async_saga(ctx: durable.AsyncContext, key: str) -> str:
    async with ctx.saga() as saga:
        await saga.step("reserve", _reserve, ctx.run_id, compensate=lambda r: _undo(ctx.run_id, r))
        await saga.step("charge", always_slow, ctx.run_id, key, timeout=SHORT, retry=ONCE)
    return "unreachable"


BAD_TIMEOUTS = {
    "text": "5",
    "zero": 0,
    "negative": -1,
    "nan": float("nan"),
    "infinite": float("inf"),
    "empty_timedelta": timedelta(0),
    "bool": True,
}


@durable.workflow(name="tests.timeout_invalid")
def timeout_invalid(ctx: durable.Context, bad: str) -> str:
    if bad == "atomic":
        return ctx.step("atomic-one", _reserve, ctx.run_id, atomic=True, timeout=5)
    return ctx.step("bad-one", _reserve, ctx.run_id, timeout=BAD_TIMEOUTS[bad])


def released(run_id: str) -> bool:
    return Execution.objects.filter(run_id=run_id, label="release").exists()


def overruns_in_a_worker(run_id: str) -> str:
    """First attempt: wait (polling the database) until the test writes "release"."""
    info = durable.step_info()
    executed(run_id, f"attempt-{info.attempt}")
    if info.attempt > 1:
        return "fresh"
    deadline = time.monotonic() + 60
    while not released(run_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    executed(run_id, "abandoned-end")
    return "late"


@durable.workflow(name="tests.timeout_in_worker")
def timeout_in_worker(ctx: durable.Context) -> str:
    return ctx.step("slow", overruns_in_a_worker, ctx.run_id, timeout=0.5, retry=AGAIN)
