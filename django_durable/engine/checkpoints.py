"""The recorded operations of one claimed run: read once, written with a fence."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from django.db import DatabaseError, DataError, IntegrityError, connections

from ..core.statuses import StepStatus
from ..exceptions import AbandonRun, CheckpointRejected, LeaseLost
from ..store import channels
from ..store import checkpoints as stored
from ..store.records import Claim, Row, StepRecord


class StartMark(Protocol):
    """A start record put off until the body has run for a while (see ``StartMarker``)."""

    def settle(self) -> Literal["written", "dropped", "refused"]:
        """The body ended: drop the record if it is not written yet, or wait until it is.

        ``"refused"``: writing it found the run owned by another worker. ``"dropped"``:
        not written (the body ended first, or the database did not answer).
        """


class StartMarker(Protocol):
    """Writes a step's start record only if its body outlasts a delay (the worker's).

    ``defer`` returns ``None`` when it cannot vouch that the claim's lease outlasts the
    delay: the start is then written before the body, as a fence.
    """

    def defer(self, claim: Claim, position: int, kind: str, name: str) -> StartMark | None:
        """Put off the start record of the body at ``position``, or return ``None``."""


class Started:
    """A body may run: its start was recorded, or put off (``mark``) until it runs long."""

    __slots__ = ("_checkpoints", "_mark", "_position")

    def __init__(self, checkpoints: Checkpoints, position: int, mark: StartMark | None) -> None:
        self._checkpoints = checkpoints
        self._position = position
        self._mark = mark

    @property
    def pending(self) -> bool:
        """Whether the start record was put off and not settled yet."""
        return self._mark is not None

    def settle(self) -> None:
        """Call when the body has ended, before its outcome is written: the start record is
        dropped (the checkpoint says it all) or complete, never written after the outcome.

        Raises ``LeaseLost`` if the put-off record found another worker owning the run.
        """
        mark, self._mark = self._mark, None
        if mark is None:
            return
        settled = mark.settle()
        if settled == "dropped":  # the outcome's record counts this execution
            self._checkpoints.uncounted.add(self._position)
        elif settled == "refused":
            raise LeaseLost(
                f"Run {self._checkpoints.claim.run_id} was taken over while the body at "
                f"position {self._position} ran; this worker leaves it."
            )


class Checkpoints:
    """What a run recorded, by position, and the fenced writer for new records."""

    def __init__(
        self,
        claim: Claim,
        records: dict[int, StepRecord],
        alias: str,
        marker: StartMarker | None = None,
    ) -> None:
        self.claim = claim
        self.alias = alias
        self._records = records
        self._marker = marker
        # Positions whose body ran without a start record: their next record counts it.
        self.uncounted: set[int] = set()

    @classmethod
    def load(cls, claim: Claim, alias: str, marker: StartMarker | None = None) -> Checkpoints:
        """Read every record of the claimed run in one query (none on its first claim).

        ``marker`` (the worker's) lets bodies that end quickly skip their start record.
        """
        if claim.records is not None:  # read with the claim (a new run has none)
            return cls(claim, dict(claim.records), alias, marker)
        return cls(claim, stored.load_steps(claim.run_id, alias=alias), alias, marker)

    def get(self, position: int) -> StepRecord | None:
        """Return the record at ``position``, if any."""
        return self._records.get(position)

    def records(self) -> list[StepRecord]:
        """Return every record, in position order."""
        return [self._records[position] for position in sorted(self._records)]

    def has_kind(self, kind: str) -> bool:
        """Return whether any record is of ``kind`` (``"child"``, ``"step"``...)."""
        return any(record.kind == kind for record in self._records.values())

    @property
    def end(self) -> int:
        """Return the position after the last record."""
        return max(self._records, default=-1) + 1

    def take_message(self, topic: str, position: int, name: str) -> str | None:
        """Consume the oldest message on ``topic`` with the recv's checkpoint; return its text.

        ``None`` if no message waits. Raises ``LeaseLost`` if another worker owns the run.
        """
        try:
            taken = channels.take_message(self.claim, topic, position, name, alias=self.alias)
        except (DataError, IntegrityError) as exc:
            raise CheckpointRejected(f"The database refused a message: {exc}", error=exc) from exc
        except DatabaseError as exc:
            raise AbandonRun(f"Could not take a message on {topic!r}: {exc}") from exc
        if taken is False:
            raise LeaseLost(f"Run {self.claim.run_id} was taken over before its recv.")
        if isinstance(taken, str):
            self._records[position] = StepRecord(
                position, "recv", name, str(StepStatus.COMPLETED), taken, None, 1
            )
            return taken
        return None

    def start(self, position: int, kind: str, name: str, *, defer: bool = True) -> Started:
        """Count an execution of the body of the operation at ``position`` before it runs,
        or raise ``LeaseLost`` if another worker owns the run now (the body must not run).

        With ``defer`` and a worker that vouches for its lease, the count is written only if
        the body is still running after ``RECORD_STEP_START_AFTER``: a quick body is counted
        by its checkpoint alone, one write instead of two. Call ``settle()`` on the result
        when the body ends. The record in memory stays as it was (a retrying one keeps the
        errors of earlier attempts for the outcome's record).
        """
        if defer and self._marker is not None and not connections[self.alias].in_atomic_block:
            mark = self._marker.defer(self.claim, position, kind, name)
            if mark is not None:
                return Started(self, position, mark)
        try:
            started = stored.record_start(
                self.claim, position=position, kind=kind, name=name, alias=self.alias
            )
        except DatabaseError as exc:
            raise AbandonRun(f"Could not record the start of {kind} {name!r}: {exc}") from exc
        if not started:
            raise LeaseLost(
                f"Run {self.claim.run_id} was taken over before {kind} {name!r} at position "
                f"{position} could begin; this worker leaves it."
            )
        return Started(self, position, None)

    def write(
        self,
        position: int,
        kind: str,
        name: str,
        status: StepStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        attempts: int = 1,
        duration_ms: float | None = None,
        row: Row | None = None,
    ) -> None:
        """Commit a record (and ``row`` with it), or raise ``LeaseLost`` if another worker
        owns the run now."""
        counts = position in self.uncounted
        self._fenced(
            position,
            kind,
            name,
            lambda: stored.record_step(
                self.claim,
                position=position,
                kind=kind,
                name=name,
                status=status,
                result=result,
                error=error,
                attempts=attempts,
                duration_ms=duration_ms,
                row=row,
                counts=counts,
                alias=self.alias,
            ),
        )
        self.uncounted.discard(position)
        self._records[position] = StepRecord(
            position, kind, name, str(status), result, error, attempts
        )

    def write_rows(
        self, position: int, kind: str, name: str, *, result: str, rows: Sequence[Row]
    ) -> None:
        """Commit a completed record and ``rows`` with it (all or nothing), or raise
        ``LeaseLost`` if another worker owns the run now."""
        self._fenced(
            position,
            kind,
            name,
            lambda: stored.record_step_with_rows(
                self.claim,
                position=position,
                kind=kind,
                name=name,
                result=result,
                rows=rows,
                alias=self.alias,
            ),
        )
        self._records[position] = StepRecord(
            position, kind, name, str(StepStatus.COMPLETED), result, None, 1
        )

    def _fenced(self, position: int, kind: str, name: str, write: Callable[[], bool]) -> None:
        """Run a fenced ``write`` of the record at ``position``, translating what the
        database said: refused data, an unreachable database, or a lost lease."""
        try:
            written = write()
        except (DataError, IntegrityError) as exc:
            # Writing it again would fail again: retrying the run cannot help.
            raise CheckpointRejected(
                f"The database refused the record of {kind} {name!r}: {exc}", error=exc
            ) from exc
        except DatabaseError as exc:
            raise AbandonRun(f"Could not record {kind} {name!r}: {exc}") from exc
        if not written:
            raise LeaseLost(
                f"Run {self.claim.run_id} was taken over before {kind} {name!r} at "
                f"position {position} could be recorded; this worker's result is discarded."
            )
