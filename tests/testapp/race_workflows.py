"""Workflows of the race, message, stream and database-restart tests (tests/reliability).

Some run in worker processes, some in the test process, where a ``Gate`` can hold a step
body until the test has arranged the race it wants. Their results say who did the work
(the thread or the process), so a test can tell whose outcome was stored.
"""

from __future__ import annotations

import os
import threading
import time

import django_durable as durable

# --- gates: hold a step body in the test process -------------------------------------------


class Gate:
    """Holds the first execution of a gated step body until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.passes = 0

    def pass_through(self) -> None:
        self.passes += 1
        if self.passes > 1:
            return  # only the first execution waits: the others are the race's winners
        self.entered.set()
        if not self.opened.wait(60):
            raise TimeoutError("the test never opened the gate")


# By run id. Worker processes have none: their gated steps pass at once.
GATES: dict[str, Gate] = {}


def _gated(run_id: str) -> str:
    gate = GATES.get(run_id)
    if gate is not None:
        gate.pass_through()
    return threading.current_thread().name


@durable.workflow(name="race.gated")
def gated(ctx: durable.Context) -> dict:
    """One gated step; says which thread recorded it and which one finished the run."""
    step = ctx.step("gated", _gated, ctx.run_id)
    return {"step": step, "finished_by": threading.current_thread().name}


# --- waits -----------------------------------------------------------------------------------


@durable.workflow(name="race.recv_one")
def recv_one(ctx: durable.Context, topic: str) -> object:
    return ctx.recv(topic)


@durable.workflow(name="race.wait_one")
def wait_one(ctx: durable.Context, name: str) -> object:
    return ctx.wait_for_event(name).data


# --- cancel vs complete ----------------------------------------------------------------------


@durable.workflow(name="race.child_step")
def child_step(ctx: durable.Context) -> str:
    return ctx.step("work", lambda: "child done")


@durable.workflow(name="race.parent_leaves_child")
def parent_leaves_child(ctx: durable.Context) -> str:
    """Starts a child that waits for ever, then finishes: the child is closed with it."""
    ctx.start_child("tests.child_waits_for_go")
    ctx.step("last", lambda: 1)
    return "done"


@durable.workflow(name="race.parent_waits_child")
def parent_waits_child(ctx: durable.Context) -> object:
    return ctx.run_child(child_step)


# --- messages and streams at scale -----------------------------------------------------------


@durable.workflow(name="race.inbox")
def inbox(ctx: durable.Context, topics: list, per_topic: int) -> dict:
    """Receive ``per_topic`` messages on each topic, in turn; return them in order."""
    received: dict[str, list] = {topic: [] for topic in topics}
    for _ in range(per_topic):
        for topic in topics:
            received[topic].append(ctx.recv(topic))
    return received


@durable.workflow(name="race.stream_writer")
def stream_writer(ctx: durable.Context, count: int, pause: float, every: int) -> int:
    """A step, then a stream item, ``count`` times; a short sleep every ``every`` items.

    The sleep suspends the run: a run whose claims keep ending by a kill would fail after
    MAX_RECOVERIES, and a suspension counts as a normal end of a claim.
    """
    for index in range(count):
        ctx.step(f"work-{index}", lambda index=index: (time.sleep(pause), index)[1])
        ctx.write_stream("out", index)
        if (index + 1) % every == 0:
            ctx.sleep(0.01)
    ctx.close_stream("out")
    return count


# --- database restart ------------------------------------------------------------------------


@durable.workflow(name="race.short")
def short(ctx: durable.Context, number: int) -> dict:
    """Two steps; the first records the process that ran it."""
    pid = ctx.step("pid", os.getpid)
    return {"number": ctx.step("double", lambda: number * 2), "pid": pid}


@durable.workflow(name="race.pairs")
def pairs(ctx: durable.Context, count: int) -> list:
    """``count`` send/recv pairs: each message received, and its echo recorded by a step."""
    received = []
    for _ in range(count):
        message = ctx.recv("pair")
        received.append(ctx.step("echo", lambda message=message: [message, os.getpid()])[0])
    return received
