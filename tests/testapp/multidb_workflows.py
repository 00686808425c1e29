"""Workflows of the two-database tests (tests/multidb/): atomic steps that write to "default".

With ``DJANGO_DURABLE["DATABASE"] = "workflows"``, an atomic step's transaction is on
"workflows", and these bodies write ``SideEffect`` rows to "default": not in that
transaction. The first execution of each body pauses after its write, so that a test can
kill the worker there.
"""

from __future__ import annotations

import time

from django.db import transaction

import django_durable as durable

from .models import SideEffect
from .workflows import executed

AT_ONCE = durable.RetryPolicy(max_attempts=2, initial_delay=0, jitter=0)
# Seconds the first execution of a body pauses after its write (the test kills it there).
PAUSE = 60.0


def write_then_pause(run_id: str) -> str:
    """Write a row to "default" outside the step's transaction, then pause the first time."""
    SideEffect.objects.create(run_id=run_id, label="split")
    if executed(run_id, "split") == 1:
        time.sleep(PAUSE)
    return "written"


def write_once_then_pause(run_id: str) -> str:
    """Write the row in a transaction of "default" that first checks it is not there yet."""
    info = durable.step_info()
    with transaction.atomic(using="default"):
        # The row is its own marker, keyed by run and step (a unique constraint in real code).
        SideEffect.objects.get_or_create(run_id=run_id, label=f"once:{info.name}")
    if executed(run_id, "once") == 1:
        time.sleep(PAUSE)
    return "written"


@durable.workflow(name="tests.multidb_split_write")
def split_write(ctx: durable.Context) -> str:
    return ctx.step("write", write_then_pause, ctx.run_id, atomic=True)


@durable.workflow(name="tests.multidb_guarded_write")
def guarded_write(ctx: durable.Context) -> str:
    return ctx.step("write", write_once_then_pause, ctx.run_id, atomic=True)


@durable.workflow(name="tests.multidb_failing_write")
def failing_write(ctx: durable.Context) -> int:
    """An atomic step that writes to "default" and fails its first attempt (retried)."""

    def body() -> int:
        SideEffect.objects.create(run_id=ctx.run_id, label="failing")
        if executed(ctx.run_id, "failing") == 1:
            raise RuntimeError("the first attempt fails after its write")
        return SideEffect.objects.filter(run_id=ctx.run_id).count()

    return ctx.step("write", body, atomic=True, retry=AT_ONCE)
