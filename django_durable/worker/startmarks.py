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
        self.alias = alias
        self.cond = threading.Condition()
        self._vouch = vouch
        self._due: list[tuple[float, int, _Mark]] = []
        self._order = itertools.count()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def defer(self, claim: Claim, position: int, kind: str, name: str) -> _Mark | None:
        """Put off the start record of the body at ``position``, or return ``None``."""
        if self.delay <= 0 or not self._vouch(claim.run_id, self.delay):
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
            entry = (time.monotonic() + self.delay, next(self._order), mark)
            heapq.heappush(self._due, entry)
            if self._due[0] is entry:  # earlier than what the thread waits for
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
                while self._due and self._due[0][2].state is not _State.PENDING:
                    heapq.heappop(self._due)  # settled before its time
                if not self._due:
                    self.cond.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait <= 0:
                    mark = heapq.heappop(self._due)[2]
                    mark.state = _State.WRITING
                    return mark
                self.cond.wait(wait)
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
