"""How runs, steps and workers read for people; shared by the admin and ``manage.py durable``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from . import serialization
from .conf import get_settings

if TYPE_CHECKING:
    from .models import Run, WorkerProcess


def pretty_json(document: Any) -> str:
    """Return a stored JSON document decoded and indented for reading."""
    return json.dumps(serialization.from_document(document), indent=2, cls=DjangoJSONEncoder)


def preview(document: Any, width: int = 60) -> str:
    """Return a stored JSON document on one line, cut to ``width`` characters."""
    if document is None:
        return ""
    text = json.dumps(serialization.from_document(document), cls=DjangoJSONEncoder)
    return text if len(text) <= width else text[: width - 1] + "…"


def error_summary(error: dict[str, Any] | None) -> str:
    """Return ``Type: message`` of a stored error document ("" when there is none)."""
    if not error:
        return ""
    return f"{error.get('type', 'Error')}: {error.get('message', '')}"


def error_details(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return an error document without its traceback, which is shown on its own."""
    if error is None:
        return None
    return {key: value for key, value in error.items() if key != "traceback"}


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


def run_seconds(run: Run) -> float | None:
    """Return the seconds from a run's first claim to its end (or until now if not finished)."""
    if run.started_at is None:
        return None
    return ((run.finished_at or timezone.now()) - run.started_at).total_seconds()


def alive_since() -> datetime:
    """Return the time after which a worker must have been seen to count as alive."""
    return timezone.now() - timedelta(seconds=3 * get_settings().heartbeat_interval)


def worker_alive(worker: WorkerProcess) -> bool:
    """Return whether a worker is running: not stopped, and heard from within 3 heartbeats."""
    return worker.stopped_at is None and worker.last_seen_at >= alive_since()
