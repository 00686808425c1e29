"""Streams runs write, read from application code in order, following them if asked to.

A follower sleeps until a NOTIFY on PostgreSQL, polling as the fallback, and gives its
database connection back while it is quiet.
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

from ..core.durations import optional_seconds
from ..core.statuses import RunStatus
from ..models import Run, StreamItem
from ..store.notify import AsyncWaiter, Waiter
from .lookup import db_alias, get_row, run_status

# Stream items read per query.
STREAM_BATCH = 500


# A follower quiet this long gives its database connection back while it waits.
RELEASE_IDLE_SECONDS = 1.0


def stream_batch(run: Run, key: str, offset: int) -> list[StreamItem]:
    """Return up to STREAM_BATCH rows of stream ``key`` from ``offset`` (closing row included)."""
    return list(
        StreamItem.objects.using(db_alias())
        .filter(run_id=run.pk, key=key, offset__gte=offset)
        .order_by("offset")[:STREAM_BATCH]
    )


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
    connection = connections[db_alias()]
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


def _check_offset(offset: int) -> None:
    if offset < 0:
        raise ValueError("offset= cannot be negative.")


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
    _check_offset(offset)
    run = get_row(run_id)
    seconds = optional_seconds(timeout, "timeout=")
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
    _check_offset(offset)
    run = await sync_to_async(get_row)(run_id)
    seconds = optional_seconds(timeout, "timeout=")
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
