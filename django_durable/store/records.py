"""What the store hands the engine: a claimed run, its recorded operations, rows to write."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

from ..core import clock


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    """A run a worker holds: what the engine needs to execute it."""

    run_id: uuid.UUID
    workflow_name: str
    input: str
    token: int
    attempt: int
    queue: str
    deadline_at: datetime | None
    db_now: datetime
    # The run's records, read with the claim (``None``: not read yet).
    records: dict[int, StepRecord] | None = None
    parent_id: uuid.UUID | None = None
    depth: int = 0
    owner_id: Any = None
    # Set when durable.cancel() was asked for this run before or while it was claimed.
    cancel_reason: str | None = None
    # The OpenTelemetry context stored when the run was started (JSON text or a dict).
    trace_context: Any = None
    # When ``db_now`` was true, on this process's clock: ``time.monotonic()`` plus what a
    # test skipped (``core.clock.skipped()``), taken when the claim statement was answered.
    read_at: float = dataclasses.field(default_factory=lambda: clock.monotonic())
    # The same clock when the claim statement was sent (``None``: as ``read_at``). The
    # database read ``db_now`` in between: it was at most this much earlier.
    sent_at: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """A row written with a checkpoint, only if the checkpoint is: a stream item, a value.

    ``values`` maps column to value (``run_id`` and ``created_at`` are added); ``json``
    names the JSON columns; ``notify`` is sent on PostgreSQL when the row is written.
    """

    table: str
    values: dict[str, Any]
    json: frozenset[str] = frozenset()
    notify: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StepRecord:
    """A recorded durable operation, as loaded for replay."""

    position: int
    kind: str
    name: str
    status: str
    result: str | None
    error: str | None
    attempts: int


@dataclasses.dataclass(frozen=True, slots=True)
class Stray:
    """A ready run of a workflow the worker that found it does not register."""

    run_id: uuid.UUID
    workflow_name: str
    queue: str
    available_at: datetime
    parent_id: uuid.UUID | None


@dataclasses.dataclass(frozen=True, slots=True)
class Recovered:
    """A run taken back from a worker whose lease on it expired."""

    run_id: uuid.UUID
    status: str  # pending again, or failed (lost too many times)
    workflow_name: str
    recoveries: int  # takeovers in a row, this one included
    lost_worker: str | None  # the worker that held it
