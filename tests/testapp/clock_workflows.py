"""Workflows of the clock tests (tests/reliability/test_clock_skew.py, test_timer_flood.py).

Their steps read the time from the database (``clock_timestamp()`` on PostgreSQL; on
SQLite, which has no clock, the process's), so that a worker whose own clock is minutes off
cannot bend what the test measures.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

from django.db import connection
from django.utils import timezone

import django_durable as durable

from .models import Execution


def database_clock() -> str:
    """Return the database's time now, as ISO text (the process's on SQLite)."""
    if connection.vendor != "postgresql":
        return timezone.now().isoformat()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0].isoformat()


def _woke(run_id: str) -> str:
    Execution.objects.create(run_id=run_id, label="woke", pid=os.getpid())
    return database_clock()


@durable.workflow(name="clock.sleeps_for")
def sleeps_for(ctx: durable.Context, seconds: float) -> list[str]:
    """Sleep ``seconds``; return the database's time before and after."""
    before = ctx.step("before", database_clock)
    ctx.sleep(seconds)
    return [before, ctx.step("woke", _woke, ctx.run_id)]


@durable.workflow(name="clock.sleeps_until")
def sleeps_until(ctx: durable.Context, deadline: str) -> str:
    """Sleep until ``deadline`` (ISO text); return the database's time when it went on."""
    ctx.sleep_until(datetime.fromisoformat(deadline))
    return ctx.step("woke", _woke, ctx.run_id)


def _hold(run_id: str) -> int:
    """Run until the test writes an ``Execution`` row labelled ``release`` for this run."""
    Execution.objects.create(run_id=run_id, label="hold", pid=os.getpid())
    deadline = time.monotonic() + 120
    while not Execution.objects.filter(run_id=run_id, label="release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the step")
        time.sleep(0.05)
    return os.getpid()


@durable.workflow(name="clock.holds")
def holds(ctx: durable.Context) -> int:
    """One step that runs until the test releases it; return the pid that ran it."""
    return ctx.step("hold", _hold, ctx.run_id)
