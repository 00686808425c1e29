"""The recorded operations of one claimed run: read once, written with a fence."""

from __future__ import annotations

from django.db import DatabaseError, DataError, IntegrityError

from ..core.statuses import StepStatus
from ..exceptions import AbandonRun, CheckpointRejected, LeaseLost
from ..store import channels
from ..store import checkpoints as stored
from ..store.records import Claim, Row, StepRecord


class Checkpoints:
    """What a run recorded, by position, and the fenced writer for new records."""

    def __init__(self, claim: Claim, records: dict[int, StepRecord], alias: str) -> None:
        self.claim = claim
        self.alias = alias
        self._records = records

    @classmethod
    def load(cls, claim: Claim, alias: str) -> Checkpoints:
        """Read every record of the claimed run in one query (none on its first claim)."""
        if claim.records is not None:  # read with the claim (a new run has none)
            return cls(claim, dict(claim.records), alias)
        return cls(claim, stored.load_steps(claim.run_id, alias=alias), alias)

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

    def start(self, position: int, kind: str, name: str) -> None:
        """Count an execution of the body of the operation at ``position`` before it runs,
        or raise ``LeaseLost`` if another worker owns the run now (the body must not run).

        The record in memory stays as it was (a retrying one keeps the errors of earlier
        attempts for the outcome's record).
        """
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
        try:
            written = stored.record_step(
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
                alias=self.alias,
            )
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
        self._records[position] = StepRecord(
            position, kind, name, str(status), result, error, attempts
        )
