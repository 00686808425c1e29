"""The recorded operations of one claimed run: read once, written with a fence."""

from __future__ import annotations

from django.db import DatabaseError, DataError, IntegrityError

from . import db, db_channels
from .exceptions import AbandonRun, CheckpointRejected, LeaseLost
from .statuses import StepStatus


class Checkpoints:
    """What a run recorded, by position, and the fenced writer for new records."""

    def __init__(self, claim: db.Claim, records: dict[int, db.StepRecord], alias: str) -> None:
        self.claim = claim
        self.alias = alias
        self._records = records

    @classmethod
    def load(cls, claim: db.Claim, alias: str) -> Checkpoints:
        """Read every record of the claimed run in one query (none on its first claim)."""
        if claim.records is not None:  # read with the claim (a new run has none)
            return cls(claim, dict(claim.records), alias)
        return cls(claim, db.load_steps(claim.run_id, alias=alias), alias)

    def get(self, position: int) -> db.StepRecord | None:
        """Return the record at ``position``, if any."""
        return self._records.get(position)

    def records(self) -> list[db.StepRecord]:
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
            taken = db_channels.take_message(self.claim, topic, position, name, alias=self.alias)
        except (DataError, IntegrityError) as exc:
            raise CheckpointRejected(f"The database refused a message: {exc}", error=exc) from exc
        except DatabaseError as exc:
            raise AbandonRun(f"Could not take a message on {topic!r}: {exc}") from exc
        if taken is False:
            raise LeaseLost(f"Run {self.claim.run_id} was taken over before its recv.")
        if isinstance(taken, str):
            self._records[position] = db.StepRecord(
                position, "recv", name, str(StepStatus.COMPLETED), taken, None, 1
            )
            return taken
        return None

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
        row: db.Row | None = None,
    ) -> None:
        """Commit a record (and ``row`` with it), or raise ``LeaseLost`` if another worker
        owns the run now."""
        try:
            written = db.record_step(
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
        self._records[position] = db.StepRecord(
            position, kind, name, str(status), result, error, attempts
        )
