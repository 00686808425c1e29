"""What runs publish and receive, for people: progress, values, messages and streams.

Reads are bounded: a fixed number of queries per page, and never more than a few characters
of a payload.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Max, Q

from ..core.conf import get_settings
from ..models import Message, RunValue, StreamItem
from .documents import PREVIEW_CHARS, VALUE_CHARS, head_document, json_head

# Rows of each kind shown on a run's page.
MAX_KEYS = 100


MAX_MESSAGES = 50


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
