"""Talking to runs from application code: events, messages, values and streams.

Writes join the caller's ``transaction.atomic()`` block: what a rolled-back request
emitted or sent never existed, and runs are woken only when the transaction commits.
Waiting reads (``get_value(timeout=)``, ``read_stream(follow=True)``) sleep until a
NOTIFY on PostgreSQL, polling as the fallback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.models import Max

from . import db, db_channels, serialization
from .client import _alias, _get, _seconds, _uuid
from .exceptions import RunNotFound
from .models import Run, RunStatus, RunValue, StreamItem
from .notify import AsyncWaiter, Waiter, await_until, wait_until
from .registry import check_name

# Stream items read per query.
STREAM_BATCH = 500


def _text(value: str | None, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 255:
        raise ValueError(f"{what} must be a string of at most 255 characters.")
    return value


# --- events ----------------------------------------------------------------------------


def emit_event(
    name: str,
    data: Any = None,
    source: str | None = None,
    type: str | None = None,
    *,
    idempotency_key: str | None = None,
) -> int:
    """Emit event ``name``; every run waiting for it resumes, and later waiters see it too.

    Returns the event's id. ``source`` and ``type`` describe it (as in CloudEvents); the
    same ``idempotency_key`` emits once (the first event's id is returned).
    """
    check_name(name, "event")
    text = serialization.dumps(data, what=f"The data of event {name!r}")
    return db_channels.insert_event(
        name,
        text,
        source=_text(source, "source="),
        type=_text(type, "type="),
        idempotency_key=None
        if idempotency_key is None
        else _text(idempotency_key, "idempotency_key="),
        alias=_alias(),
    )


async def aemit_event(
    name: str,
    data: Any = None,
    source: str | None = None,
    type: str | None = None,
    *,
    idempotency_key: str | None = None,
) -> int:
    """Emit event ``name`` (async)."""
    return await sync_to_async(emit_event)(
        name, data, source, type, idempotency_key=idempotency_key
    )


# --- messages --------------------------------------------------------------------------


def send(
    run_id: Any, message: Any, topic: str | None = None, idempotency_key: str | None = None
) -> int:
    """Deliver ``message`` to a run; it is kept until the run's ``recv(topic)`` takes it.

    Returns the message's id; the same ``idempotency_key`` stores one message. Raises
    ``RunNotFound`` for an unknown run.
    """
    name = "" if topic is None else check_name(topic, "message topic")
    if idempotency_key is not None:
        _text(idempotency_key, "idempotency_key=")
    text = serialization.dumps(message, what="The message")
    message_id = db_channels.insert_message(
        _uuid(run_id), name, text, idempotency_key=idempotency_key, alias=_alias()
    )
    if message_id is None:
        raise RunNotFound.of(run_id)
    return message_id


async def asend(
    run_id: Any, message: Any, topic: str | None = None, idempotency_key: str | None = None
) -> int:
    """Deliver ``message`` to a run (async)."""
    return await sync_to_async(send)(run_id, message, topic, idempotency_key)


# --- values ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class VersionedValue:
    """A value a run published, with its version (newer versions have larger numbers)."""

    version: int
    value: Any


def _newest(run: Run, key: str, after: int | None) -> VersionedValue | None:
    """Return the newest value of ``key`` (newer than ``after``), if there is one."""
    rows = RunValue.objects.using(_alias()).filter(run_id=run.pk, key=key)
    row = rows.order_by("-id").only("id", "value").first()
    if row is None or (after is not None and row.pk <= after):
        return None
    return VersionedValue(row.pk, row.get_value())


def _watched(run: Run, key: str, after: int | None) -> tuple[VersionedValue | None] | None:
    newest = _newest(run, key, after)
    if newest is not None or run_finished(run):
        # A run that finished without a newer value will never write one: stop waiting.
        return (newest,)
    return None


def watch_value(
    run_id: Any, key: str, *, after: int | None = None, timeout: float | timedelta | None = None
) -> VersionedValue | None:
    """Return the newest value of ``key`` with a version above ``after`` (any, if ``None``).

    Waits up to ``timeout`` for one to be written; returns ``None`` if none was (or the
    run finished without). A frontend follows a value by passing the version it has.
    """
    run = _get(run_id)
    seconds = 0.0 if timeout is None else _seconds(timeout)
    found = _newest(run, key, after)
    if found is not None or seconds <= 0:
        return found
    keys = [f"v:{run.pk}", f"r:{run.pk}"]
    try:
        return wait_until(lambda: _watched(run, key, after), keys=keys, timeout=seconds)[0]
    except TimeoutError:
        return None


async def awatch_value(
    run_id: Any, key: str, *, after: int | None = None, timeout: float | timedelta | None = None
) -> VersionedValue | None:
    """Return the newest value of ``key`` above version ``after``, waiting (async)."""
    run = await sync_to_async(_get)(run_id)
    seconds = 0.0 if timeout is None else _seconds(timeout)
    found = await sync_to_async(_newest)(run, key, after)
    if found is not None or seconds <= 0:
        return found
    check = sync_to_async(lambda: _watched(run, key, after))
    keys = [f"v:{run.pk}", f"r:{run.pk}"]
    try:
        return (await await_until(check, keys=keys, timeout=seconds))[0]
    except TimeoutError:
        return None


def get_value(
    run_id: Any, key: str, timeout: float | timedelta | None = None, default: Any = None
) -> Any:
    """Return the newest value the run published under ``key``, or ``default``.

    With ``timeout``, wait up to that long for the key to be set (``default`` if it is
    not, or if the run finishes without setting it). Raises ``RunNotFound``.
    """
    found = watch_value(run_id, key, timeout=timeout)
    return default if found is None else found.value


async def aget_value(
    run_id: Any, key: str, timeout: float | timedelta | None = None, default: Any = None
) -> Any:
    """Return the newest value under ``key``, waiting up to ``timeout`` (async)."""
    found = await awatch_value(run_id, key, timeout=timeout)
    return default if found is None else found.value


def get_values(run_id: Any) -> dict[str, Any]:
    """Return the newest value of every key the run published."""
    run = _get(run_id)
    rows = RunValue.objects.using(_alias()).filter(run_id=run.pk)
    newest = rows.values("key").annotate(newest=Max("id")).values("newest")
    return {row.key: row.get_value() for row in rows.filter(id__in=newest).order_by("key")}


async def aget_values(run_id: Any) -> dict[str, Any]:
    """Return the newest value of every key the run published (async)."""
    return await sync_to_async(get_values)(run_id)


# --- streams ---------------------------------------------------------------------------

# A follower quiet this long gives its database connection back while it waits.
RELEASE_IDLE_SECONDS = 1.0


def stream_batch(run: Run, key: str, offset: int) -> list[StreamItem]:
    """Return up to STREAM_BATCH rows of stream ``key`` from ``offset`` (closing row included)."""
    return list(
        StreamItem.objects.using(_alias())
        .filter(run_id=run.pk, key=key, offset__gte=offset)
        .order_by("offset")[:STREAM_BATCH]
    )


def run_status(run: Run) -> str:
    """Return the run's status now (``Run.DoesNotExist`` if it was deleted)."""
    status = db.run_status(run.pk, alias=_alias())
    if status is None:
        raise Run.DoesNotExist(f"Run {run.pk} no longer exists.")
    return status


def run_finished(run: Run) -> bool:
    """Return whether ``run`` is in a terminal state now."""
    return run_status(run) in RunStatus.terminal()


@dataclasses.dataclass(frozen=True, slots=True)
class StreamPoll:
    """What following a stream found: items, its close, the run's end, or a quiet spell."""

    kind: Literal["items", "closed", "ended", "idle"]
    items: tuple[StreamItem, ...] = ()
    status: str = ""


class _Follow:
    """The state of one follower; shared by the sync and async loops."""

    def __init__(self, offset: int, follow: bool, max_seconds: float | None, idle: float | None):
        self.offset = offset
        self.follow = follow
        self.stop_at = None if max_seconds is None else time.monotonic() + max_seconds
        self.idle = idle
        self.quiet_since = time.monotonic()

    def fetch(self, run: Run, key: str) -> tuple[str, list[StreamItem]]:
        # The status first: what was written before the run ended is in the batch after.
        status = run_status(run) if self.follow else ""
        return status, stream_batch(run, key, self.offset)

    def read(self, status: str, batch: list[StreamItem]) -> tuple[list[StreamPoll], bool, bool]:
        """Return what to report, whether to stop, and whether to read again at once."""
        polls = []
        items = tuple(item for item in batch if not item.closes)
        if items:
            polls.append(StreamPoll("items", items))
            self.offset = items[-1].offset + 1
            self.quiet_since = time.monotonic()
        if len(items) < len(batch):
            return [*polls, StreamPoll("closed")], True, False
        if len(batch) == STREAM_BATCH:
            return polls, False, True
        if not self.follow:
            return polls, True, False
        if status in RunStatus.terminal():
            return [*polls, StreamPoll("ended", status=status)], True, False
        if self.stop_at is not None and time.monotonic() >= self.stop_at:
            return polls, True, False
        if self.idle is not None and time.monotonic() - self.quiet_since >= self.idle:
            polls.append(StreamPoll("idle"))
            self.quiet_since = time.monotonic()
        return polls, False, False

    def pause(self) -> float | None:
        """Return the longest sleep before the time limit or the next idle report."""
        limits = [self.idle] if self.idle is not None else []
        if self.stop_at is not None:
            limits.append(max(0.0, self.stop_at - time.monotonic()))
        return min(limits) if limits else None

    def releasing(self) -> bool:
        """Return whether the follower has been quiet long enough to free its connection."""
        return time.monotonic() - self.quiet_since >= RELEASE_IDLE_SECONDS


def _release_connection() -> None:
    connection = connections[_alias()]
    if not connection.in_atomic_block:
        connection.close()


def poll_stream(
    run: Run,
    key: str,
    offset: int = 0,
    *,
    follow: bool = False,
    max_seconds: float | None = None,
    idle: float | None = None,
) -> Iterator[StreamPoll]:
    """Read stream ``key`` from ``offset``; with ``follow``, keep reading as it grows.

    Stops at the stream's close, the run's end, or after ``max_seconds``; reports a quiet
    spell every ``idle`` seconds. A follower quiet for a second gives back its database
    connection while it waits (one open follower must not hold one for its whole life).
    """
    state = _Follow(offset, follow, max_seconds, idle)
    with Waiter([f"s:{run.pk}", f"r:{run.pk}"]) if follow else contextlib.nullcontext() as waiter:
        while True:
            polls, stop, again = state.read(*state.fetch(run, key))
            yield from polls
            if stop:
                return
            if again:
                continue
            if state.releasing():
                _release_connection()
            assert isinstance(waiter, Waiter)
            if polls and polls[0].kind == "items":
                waiter.reset()
            waiter.sleep(state.pause())


async def apoll_stream(
    run: Run,
    key: str,
    offset: int = 0,
    *,
    follow: bool = False,
    max_seconds: float | None = None,
    idle: float | None = None,
) -> AsyncIterator[StreamPoll]:
    """Async twin of :func:`poll_stream`: waits on the event loop, holding no thread."""
    state = _Follow(offset, follow, max_seconds, idle)

    def fetch() -> tuple[str, list[StreamItem]]:
        fetched = state.fetch(run, key)
        if state.releasing():
            _release_connection()
        return fetched

    waiter = AsyncWaiter([f"s:{run.pk}", f"r:{run.pk}"]) if follow else None
    with waiter or contextlib.nullcontext():
        while True:
            polls, stop, again = state.read(*(await sync_to_async(fetch)()))
            for poll in polls:
                yield poll
            if stop:
                return
            if again:
                continue
            assert waiter is not None
            if polls and polls[0].kind == "items":
                waiter.reset()
            await waiter.asleep(state.pause())


def stream_items(
    run_id: Any,
    key: str,
    offset: int = 0,
    follow: bool = False,
    *,
    timeout: float | timedelta | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(offset, value)`` of stream ``key`` from ``offset``, in order.

    With ``follow``, wait for new items until the stream is closed, the run finishes, or
    ``timeout`` passes. Raises ``RunNotFound`` at once for an unknown run.
    """
    if offset < 0:
        raise ValueError("offset= cannot be negative.")
    run = _get(run_id)
    seconds = None if timeout is None else _seconds(timeout)
    polls = poll_stream(run, key, offset, follow=follow, max_seconds=seconds)
    return ((item.offset, item.get_value()) for poll in polls for item in poll.items)


def read_stream(
    run_id: Any,
    key: str,
    offset: int = 0,
    follow: bool = False,
    *,
    timeout: float | timedelta | None = None,
) -> Iterator[Any]:
    """Yield the values of stream ``key`` from ``offset``, in order.

    With ``follow``, block for new values until the stream is closed, the run ends, or
    ``timeout`` passes.
    """
    return (value for _, value in stream_items(run_id, key, offset, follow, timeout=timeout))


async def astream_items(
    run_id: Any,
    key: str,
    offset: int = 0,
    follow: bool = False,
    *,
    timeout: float | timedelta | None = None,
) -> AsyncIterator[tuple[int, Any]]:
    """Yield ``(offset, value)`` of stream ``key`` (async; holds no thread while waiting)."""
    if offset < 0:
        raise ValueError("offset= cannot be negative.")
    run = await sync_to_async(_get)(run_id)
    seconds = None if timeout is None else _seconds(timeout)
    async for poll in apoll_stream(run, key, offset, follow=follow, max_seconds=seconds):
        for item in poll.items:
            yield item.offset, item.get_value()


async def aread_stream(
    run_id: Any,
    key: str,
    offset: int = 0,
    follow: bool = False,
    *,
    timeout: float | timedelta | None = None,
) -> AsyncIterator[Any]:
    """Yield the values of stream ``key`` from ``offset`` (async)."""
    async for _, value in astream_items(run_id, key, offset, follow, timeout=timeout):
        yield value
