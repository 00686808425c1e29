"""The time django-durable goes by: the real time, moved forward by tests.

``django_durable.testing.time_machine()`` lets a test move this clock forward
(``skip(timedelta(days=3))``), so that a run sleeping three days becomes due at once. The
offset is the process's, read by every thread: the timers of the in-process worker, the
engine's ``ctx.now()``, and the SQL, which adds it to the database's ``now()``.

Outside such a test nothing is skipped: :func:`skipped` is ``0.0``, callers take their
usual path and the SQL text does not change (``now()`` on PostgreSQL, so its prepared
statements stay the same).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, Value
from django.db.models.functions import Now
from django.utils import timezone

from .conf import get_settings

_skipped = 0.0  # seconds a test moved the clock forward


def skipped() -> float:
    """Return how many seconds a test moved the clock forward (``0.0`` outside tests)."""
    return _skipped


def now() -> datetime:
    """Return the current time, moved forward by what a test skipped."""
    if _skipped:
        return timezone.now() + timedelta(seconds=_skipped)
    return timezone.now()


def monotonic() -> float:
    """Return ``time.monotonic()`` moved forward by what a test skipped.

    The difference of two readings is the time that passed between them as the engine
    sees it: real seconds plus any skip in between.
    """
    return time.monotonic() + _skipped


def set_skipped(seconds: float) -> None:
    """Move the clock to ``seconds`` ahead of the real time (``django_durable.testing``)."""
    global _skipped
    _skipped = float(seconds)


def database_now(alias: str | None = None) -> datetime:
    """Return the durable database's current time, as a value to decide with.

    PostgreSQL's ``now()`` (so that hosts whose clocks drift agree); on SQLite, which has no
    clock of its own, this process's. Both follow a test clock moved forward. Inside a
    transaction, PostgreSQL's ``now()`` is the time the transaction began.
    """
    connection = connections[alias or get_settings().DATABASE]
    if connection.vendor != "postgresql":
        return now()
    with connection.cursor() as cursor:
        if _skipped:
            cursor.execute("SELECT now() + make_interval(secs => %s)", [_skipped])
        else:
            cursor.execute("SELECT now()")
        value: datetime = cursor.fetchone()[0]
    return value


def database_time(offset: float = 0.0, alias: str | None = None) -> Any:
    """Return the database's time plus ``offset`` seconds, as a value for a query.

    On PostgreSQL an expression of ``now()`` the database computes (so web hosts' and
    workers' clocks may drift); on SQLite, which has no clock of its own, this process's
    time. Both follow a test clock moved forward (``django_durable.testing.skip``).
    """
    connection = connections[alias or get_settings().DATABASE]
    if connection.vendor != "postgresql":
        return now() + timedelta(seconds=offset)
    offset += _skipped
    if not offset:
        return Now()
    return ExpressionWrapper(
        Now() + Value(timedelta(seconds=offset), output_field=DurationField()),
        output_field=DateTimeField(),
    )
