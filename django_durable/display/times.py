"""Durations and moments for people: ``12.3s``, ``4m 05s``, ``14:25``, ``in 2 days``."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from ..core.clock import database_now
from ..models import Run, WorkerProcess
from ..models.workers import alive_since as _alive_since


def format_duration(seconds: float) -> str:
    """Return seconds as ``0.25ms``, ``850ms``, ``12.3s``, ``4m 05s``, ``2h 03m`` or ``3d 04h``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        milliseconds = seconds * 1000
        return f"{milliseconds:.2f}ms" if milliseconds < 10 else f"{milliseconds:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def run_seconds(run: Run, now: datetime | None = None) -> float | None:
    """Return the seconds from a run's first claim to its end, or to ``now`` if it has not
    ended: the database's time, read here if not given (its ``started_at`` is the
    database's too, and a web host's clock may be minutes off)."""
    if run.started_at is None:
        return None
    end = run.finished_at or now or database_now(run._state.db)
    return (end - run.started_at).total_seconds()


def alive_since() -> datetime:
    """Return the time after which a worker must have been seen to count as alive."""
    return _alive_since()


def worker_alive(worker: WorkerProcess, since: datetime | None = None) -> bool:
    """Return whether a worker is running: not stopped, and heard from within 3 heartbeats.

    ``since`` is :func:`alive_since`, read once for a list of workers (it asks the database).
    """
    return worker.alive_after(since or alive_since())


def relative(moment: datetime, now: datetime | None = None) -> str:
    """Return ``in 5 h``, ``12 min ago``, ``now``: how far ``moment`` is, coarsely."""
    seconds = (moment - (now or timezone.now())).total_seconds()
    amount = abs(seconds)
    if amount < 1:
        return "now"
    if amount < 60:
        text = f"{int(amount)} s"
    elif amount < 3600:
        text = f"{int(amount // 60)} min"
    elif amount < 48 * 3600:
        text = f"{int(amount // 3600)} h"
    else:
        text = f"{int(amount // 86400)} days"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def clock(moment: datetime, now: datetime | None = None) -> str:
    """Return ``14:25`` today, ``6 Dec 14:25`` this year, ``6 Dec 2025 14:25`` otherwise.

    In the current time zone (the admin's, Django's TIME_ZONE by default).
    """
    local, today = timezone.localtime(moment), timezone.localtime(now or timezone.now())
    if local.date() == today.date():
        return local.strftime("%H:%M")
    if local.year == today.year:
        return f"{local.day} {local.strftime('%b %H:%M')}"
    return f"{local.day} {local.strftime('%b %Y %H:%M')}"


def moment(value: datetime, now: datetime | None = None) -> str:
    """Return ``14:25 (12 min ago)``: when, and how far from now."""
    return f"{clock(value, now)} ({relative(value, now)})"
