"""How runs, steps and workers read for people; shared by the admin and ``manage.py durable``.

Reads of what runs publish and receive (values, messages, streams, progress) are bounded:
a fixed number of queries per page, and never more than a few characters of a payload.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Max, Q, TextField
from django.db.models.functions import Cast, Left
from django.utils import timezone

from . import serialization
from .conf import get_settings
from .statuses import RunStatus

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


# --- what runs publish and receive --------------------------------------------------------

# The admin reads at most this many characters of a stored JSON document: a megabyte
# value or message must not be loaded (and rendered) to show a table row.
VALUE_CHARS = 2000
PREVIEW_CHARS = 80
# Rows of each kind shown on a run's page.
MAX_KEYS = 100
MAX_MESSAGES = 50


def json_head(field: str, chars: int) -> Left:
    """Return an expression: the JSON of ``field`` as text, cut one character past ``chars``.

    Read with :func:`head_document`, it tells a complete document from a cut one.
    """
    return Left(Cast(field, TextField()), chars + 1)


def head_document(head: str | None, chars: int) -> tuple[bool, Any]:
    """Return ``(True, document)`` for a complete JSON head, ``(False, None)`` for a cut one."""
    if head is None:
        return True, None
    if len(head) > chars:
        return False, None
    return True, json.loads(head)


def head_pretty(head: str | None, chars: int = VALUE_CHARS) -> str:
    """Return a JSON head indented for reading, or its first ``chars`` characters and "…"."""
    complete, document = head_document(head, chars)
    if complete:
        text = pretty_json(document)
        return text if len(text) <= chars else text[: chars - 1] + "…"
    assert head is not None
    return head[: chars - 1] + "…"


def head_preview(head: str | None, width: int = PREVIEW_CHARS) -> str:
    """Return a JSON head on one line, cut to ``width`` characters."""
    if head is None:
        return ""
    complete, document = head_document(head, width)
    if complete:
        return "null" if document is None else preview(document, width)
    return head[: width - 1] + "…"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """A run's ``"progress"`` value, as ``ctx.set_progress`` writes it."""

    done: float | None
    total: float | None
    percent: float | None
    message: str

    @classmethod
    def from_value(cls, value: Any) -> Progress | None:
        """Return the progress a value describes, or ``None`` if it does not look like one."""
        if not isinstance(value, dict):
            return None
        numbers = [value.get(name) for name in ("done", "total", "percent")]
        if all(number is None for number in numbers) or not all(
            number is None or (isinstance(number, int | float) and not isinstance(number, bool))
            for number in numbers
        ):
            return None
        done, total, percent = numbers
        message = value.get("message")
        return cls(
            done=done,
            total=total,
            percent=None if percent is None else max(0.0, min(100.0, float(percent))),
            message=message if isinstance(message, str) else "",
        )

    def describe(self) -> str:
        """Return ``3 / 10 (30.0%) · message``, or what of it is known."""
        if self.total is not None:
            text = f"{_number(self.done)} / {_number(self.total)}"
        else:
            text = _number(self.done) if self.done is not None else ""
        if self.percent is not None:
            text = f"{text} ({self.percent:g}%)" if text else f"{self.percent:g}%"
        return f"{text} · {self.message}" if self.message else text


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


# A set_progress() value is about 100 characters: a "progress" longer than this is not one.
PROGRESS_CHARS = 1000


def progress_by_run(run_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Progress]:
    """Return the newest ``"progress"`` value of each run that has one, in one query."""
    from .models import RunValue

    ids = list(run_ids)
    if not ids:
        return {}
    rows = RunValue.objects.using(get_settings().DATABASE).filter(run_id__in=ids, key="progress")
    newest = rows.values("run_id").annotate(newest=Max("id")).values("newest")
    found = {}
    heads = rows.filter(id__in=newest).values_list("run_id", json_head("value", PROGRESS_CHARS))
    for run_id, head in heads:
        complete, document = head_document(head, PROGRESS_CHARS)
        progress = Progress.from_value(document) if complete else None
        if progress is not None:
            found[run_id] = progress
    return found


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ValueSummary:
    """The newest value of one key; ``head`` is its JSON, cut (see :func:`json_head`)."""

    key: str
    head: str | None
    position: int
    created_at: datetime


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MessageSummary:
    """A message sent to a run; ``head`` is its JSON, cut (see :func:`json_head`)."""

    id: int
    topic: str
    head: str | None
    created_at: datetime
    consumed_at: datetime | None
    consumed_position: int | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StreamSummary:
    """One stream of a run: how many items it holds, and whether it is closed."""

    key: str
    items: int
    closed: bool

    @property
    def last_offset(self) -> int | None:
        """Return the offset of the last item (``None`` for an empty stream)."""
        return self.items - 1 if self.items else None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunChannels:
    """What a run published and received, bounded: read by :func:`run_channels`."""

    progress: Progress | None
    values: list[ValueSummary]
    more_values: bool  # more than MAX_KEYS keys
    messages: list[MessageSummary]  # the newest MAX_MESSAGES, newest first
    message_count: int
    streams: list[StreamSummary]
    more_streams: bool  # more than MAX_KEYS streams


def run_channels(run_id: uuid.UUID) -> RunChannels:
    """Read a run's progress, values, messages and streams in four or five queries."""
    values = latest_values(run_id, MAX_KEYS + 1)
    messages, message_count = recent_messages(run_id, MAX_MESSAGES)
    streams = stream_summaries(run_id, MAX_KEYS + 1)
    return RunChannels(
        progress=progress_by_run([run_id]).get(run_id),
        values=values[:MAX_KEYS],
        more_values=len(values) > MAX_KEYS,
        messages=messages,
        message_count=message_count,
        streams=streams[:MAX_KEYS],
        more_streams=len(streams) > MAX_KEYS,
    )


def latest_values(run_id: uuid.UUID, limit: int) -> list[ValueSummary]:
    """Return the newest value of the first ``limit`` keys of a run, by key, in one query."""
    from .models import RunValue

    rows = RunValue.objects.using(get_settings().DATABASE).filter(run_id=run_id)
    newest = rows.values("key").annotate(newest=Max("id")).values("newest")
    found = (
        rows.filter(id__in=newest)
        .order_by("key")
        .values_list("key", json_head("value", VALUE_CHARS), "position", "created_at")
    )
    return [
        ValueSummary(key=key, head=head, position=position, created_at=created_at)
        for key, head, position, created_at in found[:limit]
    ]


def recent_messages(run_id: uuid.UUID, limit: int) -> tuple[list[MessageSummary], int]:
    """Return the newest ``limit`` messages of a run and how many it has (one or two queries)."""
    from .models import Message

    rows = Message.objects.using(get_settings().DATABASE).filter(run_id=run_id)
    found = rows.order_by("-id").values_list(
        "id",
        "topic",
        json_head("data", PREVIEW_CHARS),
        "created_at",
        "consumed_at",
        "consumed_position",
    )[:limit]
    messages = [
        MessageSummary(
            id=message_id,
            topic=topic,
            head=head,
            created_at=created_at,
            consumed_at=consumed_at,
            consumed_position=position,
        )
        for message_id, topic, head, created_at, consumed_at, position in found
    ]
    count = rows.count() if len(messages) == limit else len(messages)
    return messages, count


def stream_summaries(run_id: uuid.UUID, limit: int) -> list[StreamSummary]:
    """Return the first ``limit`` streams of a run, by key, in one query.

    Offsets are dense and a closing row comes after the last item, so the highest
    offset says how many items a stream holds: no row is counted.
    """
    from .models import StreamItem

    rows = (
        StreamItem.objects.using(get_settings().DATABASE)
        .filter(run_id=run_id)
        .values("key")
        .annotate(top=Max("offset"), closed_at=Max("offset", filter=Q(closes=True)))
        .order_by("key")
    )
    return [
        StreamSummary(
            key=row["key"],
            items=row["top"] + (0 if row["closed_at"] is not None else 1),
            closed=row["closed_at"] is not None,
        )
        for row in rows[:limit]
    ]


def waiting_description(run: Run) -> str:
    """Return what wakes a waiting run, in words: an event or a message ("" otherwise)."""
    if run.status != RunStatus.WAITING or not run.wake_on:
        return ""
    kind, _, name = run.wake_on.partition(":")
    if kind == "e":
        return f"waiting for event {name}"
    if kind == "m":
        return f"waiting for a message on topic {name}" if name else "waiting for a message"
    return ""
