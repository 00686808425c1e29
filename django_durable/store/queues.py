"""Claiming from a limited queue without exceeding its limits, across every worker.

A limited queue (``DJANGO_DURABLE["QUEUES"]``, read by ``core.queue_limits``) is claimed
under a lock of its own (an advisory lock on PostgreSQL; SQLite runs one writing
transaction at a time), counting what runs and what started before claiming more.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import transaction

from ..core.queue_limits import QueueLimits
from .claims import claim_runs
from .dialect import Dialect, dialect, execute
from .records import Claim


def claim_limited(
    queue: str,
    limits: QueueLimits,
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    exclude: Iterable[uuid.UUID],
    workflows: Sequence[str] | None = None,
    alias: str,
) -> list[Claim]:
    """Claim up to ``limit`` runs of a limited queue without exceeding its limits (only of
    ``workflows``, if given)."""
    d = dialect(alias)
    with transaction.atomic(using=alias):
        if d.pg:
            execute(
                d,
                "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))",
                {"key": f"django_durable:queue:{queue}"},
            )
        allowed = min(limit, *_room(d, queue, limits))
        if allowed <= 0:
            return []
        return claim_runs(
            worker_id=worker_id,
            queues=[queue],
            limit=allowed,
            lease_seconds=lease_seconds,
            exclude=exclude,
            workflows=workflows,
            alias=alias,
        )


def _room(d: Dialect, queue: str, limits: QueueLimits) -> list[int]:
    """Return how many more runs each limit of the queue lets start now."""
    room = []
    if limits.concurrency is not None:
        rows = execute(
            d,
            "SELECT count(*) FROM durable_run WHERE queue = %(queue)s AND status = 'running'",
            {"queue": queue},
        ).rows
        room.append(limits.concurrency - int(rows[0][0]))
    if limits.rate is not None and limits.per_seconds is not None:
        params: dict[str, Any] = {"queue": queue}
        since = d.later(-limits.per_seconds, params)
        rows = execute(
            d,
            f"SELECT count(*) FROM durable_run WHERE queue = %(queue)s AND started_at > {since}",
            params,
        ).rows
        room.append(limits.rate - int(rows[0][0]))
    return room
