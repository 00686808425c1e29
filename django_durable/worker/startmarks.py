"""Start records put off: a step's start is written only if its body outlasts a delay.

Before a step's body runs, the worker used to write a record that it began (fenced by the
lease, counting the execution), then the checkpoint when it ended: two writes per step.
Most bodies end within milliseconds, and for them the checkpoint says everything the start
record would. So when the worker can vouch that the run's lease outlasts the delay
(``RECORD_STEP_START_AFTER``; no other worker can take a run before its lease ends), the
body runs at once and this thread writes the start record only if the body is still running
when the delay has passed. The step's thread settles the mark when the body ends: a mark
not yet written is dropped, one being written is waited for, so a start record is never
written after the step's outcome.

The thread is woken only when it waits for nothing (no mark at all) and otherwise sleeps
until the first mark is due, taking every mark due by then, settled or not, in one turn:
marks settled before their time stay in the heap until then. Dropping them as soon as the
thread woke emptied the heap between two quick steps, and each next step had to wake the
thread again (three steps in four on a busy worker, measured). A turn comes at most once
per ``SLACK`` of the delay, so a record may be written that much late: the lease the
worker vouches for covers the delay and that slack.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from enum import Enum
from typing import Literal

from django.db import connections

from ..store.checkpoints import record_start
from ..store.records import Claim

logger = logging.getLogger("django_durable")

SLACK = 0.1  # a start record may be written this share of the delay late


class _State(Enum):
    PENDING = "pending"  # waiting for its time
    CANCELLED = "cancelled"  # the body ended first: never written
    WRITING = "writing"
    WRITTEN = "written"
    REFUSED = "refused"  # another worker owns the run
    FAILED = "failed"  # the database did not answer: the checkpoint will decide


class _Mark:
    __slots__ = ("claim", "kind", "marks", "name", "position", "state")

    def __init__(self, marks: StartMarks, claim: Claim, position: int, kind: str, name: str):
        self.marks = marks
        self.claim = claim
        self.position = position
        self.kind = kind
        self.name = name
        self.state = _State.PENDING

    def settle(self) -> Literal["written", "dropped", "refused"]:
        """Drop the record if not written yet, or wait until it is (see ``StartMark``)."""
        with self.marks.cond:
            if self.state is _State.PENDING:
                self.state = _State.CANCELLED
            while self.state is _State.WRITING:
                self.marks.cond.wait()
            if self.state is _State.WRITTEN:
                return "written"
            return "refused" if self.state is _State.REFUSED else "dropped"


class StartMarks:
    """One thread of a worker that writes the start records of bodies that run long.

    ``vouch(run_id, seconds)`` says whether the worker's lease on the run lasts at least
    ``seconds`` more; when it cannot say so, ``defer`` declines and the start is written
    before the body, as before.
    """

    def __init__(
        self, *, delay: float, alias: str, vouch: Callable[[uuid.UUID, float], bool]
    ) -> None:
        self.delay = delay
        self.slack = delay * SLACK
        self.alias = alias
        self.cond = threading.Condition()
        self._vouch = vouch
        self._due: list[tuple[float, int, _Mark]] = []
        self._order = itertools.count()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def defer(self, claim: Claim, position: int, kind: str, name: str) -> _Mark | None:
        """Put off the start record of the body at ``position``, or return ``None``."""
        if self.delay <= 0 or not self._vouch(claim.run_id, self.delay + self.slack):
            return None
        mark = _Mark(self, claim, position, kind, name)
        with self.cond:
            if self._stopped:
                return None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="durable-start-marks", daemon=True
                )
                self._thread.start()
            waits_for_nothing = not self._due  # else it wakes at a mark due before this one
            heapq.heappush(self._due, (time.monotonic() + self.delay, next(self._order), mark))
            if waits_for_nothing:
                self.cond.notify_all()
        return mark

    def stop(self) -> None:
        """Stop the thread (the runs have ended); marks still pending are dropped."""
        with self.cond:
            self._stopped = True
            self.cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _next(self) -> _Mark | None:
        """Wait for the next mark whose time has come; ``None`` once stopped."""
        with self.cond:
            while not self._stopped:
                if not self._due:
                    self.cond.wait()
                    continue
                due, _, mark = self._due[0]
                now = time.monotonic()
                if due <= now:
                    heapq.heappop(self._due)
                    if mark.state is _State.PENDING:
                        mark.state = _State.WRITING
                        return mark
                    continue  # settled before its time
                self.cond.wait(max(due - now, self.slack))
            return None

    def _loop(self) -> None:
        try:
            while (mark := self._next()) is not None:
                self._write(mark)
        finally:
            connections[self.alias].close()

    def _write(self, mark: _Mark) -> None:
        try:
            written = record_start(
                mark.claim,
                position=mark.position,
                kind=mark.kind,
                name=mark.name,
                alias=self.alias,
            )
            state = _State.WRITTEN if written else _State.REFUSED
        except Exception:
            logger.warning(
                "Could not record the start of %s %r of run %s",
                mark.kind,
                mark.name,
                mark.claim.run_id,
                exc_info=True,
            )
            connections[self.alias].close()
            state = _State.FAILED
        with self.cond:
            mark.state = state
            self.cond.notify_all()
