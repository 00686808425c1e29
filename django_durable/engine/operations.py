"""The small values one execution works with: positioned operations, its clock, streams."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from ..core import clock

# Asked before every new operation: a signal to raise (lease lost, cancelled, stopping).
Interrupt = Callable[[], BaseException | None]


class Clock:
    """The database's time, read at claim and advanced by the local monotonic clock.

    ``read_at`` is when ``db_now`` was true on :func:`core.clock.monotonic` (which counts a
    test's skips, so a later skip moves this clock too), at the latest: the claim statement
    read ``db_now`` somewhere between ``sent_at`` and ``read_at``. So the database's time is
    between ``now()`` and ``latest()``, which differ by the claim's round trip (a
    millisecond; more on a loaded machine, where a thread may wait for the processor after
    the answer came). A moment that must not come early uses the bound that keeps it late:
    ``now()`` to say whether a time has come, ``latest()`` to count a duration from now.
    """

    def __init__(self, db_now: datetime, read_at: float, sent_at: float | None = None) -> None:
        self._base = db_now
        self._read_at = read_at
        self._sent_at = read_at if sent_at is None else min(sent_at, read_at)

    def now(self) -> datetime:
        """Return the database's time, or a little earlier (never later)."""
        return self._base + timedelta(seconds=clock.monotonic() - self._read_at)

    def latest(self) -> datetime:
        """Return the database's time, or a little later (never earlier)."""
        return self._base + timedelta(seconds=clock.monotonic() - self._sent_at)

    def after(self, seconds: float) -> datetime:
        """Return the moment ``seconds`` from now: never sooner by the database's clock."""
        return self.latest() + timedelta(seconds=seconds)


@dataclasses.dataclass(slots=True)
class StreamCursor:
    """The next offset of a stream this run writes, and whether it closed it."""

    next_offset: int = 0
    closed: bool = False

    def advance(self, offset: int, kind: str) -> None:
        """Account for a recorded write (``stream``) or close (``close_stream``) at ``offset``."""
        self.next_offset = max(self.next_offset, offset + 1)
        self.closed = self.closed or kind == "close_stream"


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """A durable operation at a position, and its record if one exists."""

    position: int
    kind: str
    name: str
    attempts: int  # attempts recorded before this one
    replayed: bool  # the outcome is recorded; nothing runs


def aware(value: datetime) -> datetime:
    """Return ``value`` if it is an aware datetime (what ``sleep_until`` takes)."""
    if not isinstance(value, datetime):
        raise TypeError("sleep_until() takes a datetime.")
    if timezone.is_naive(value):
        raise ValueError("sleep_until() takes an aware datetime (with a timezone).")
    return value


def raise_signal(value: Any) -> Any:
    """Raise ``value`` if an operation returned a signal (an exception), else return it.

    Operations return their signals instead of raising them, so that nothing is raised
    across the thread boundary of an async workflow.
    """
    if isinstance(value, BaseException):
        raise value
    return value
