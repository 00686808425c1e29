"""Claiming from a limited queue without exceeding its limits, across every worker.

A limited queue (``DJANGO_DURABLE["QUEUES"]``, read by ``core.queue_limits``) is claimed
under a lock of its own (an advisory lock on PostgreSQL; SQLite runs one writing
transaction at a time), counting what runs and what started before claiming more.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import OperationalError, transaction

from ..core.queue_limits import QueueLimits
from .claims import claim_runs
from .dialect import LOCK_WAIT_MS, Dialect, dialect, execute, lock_not_available
from .records import Claim

logger = logging.getLogger("django_durable")


def claim_limited(
    queue: str,
    limits: QueueLimits,
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    exclude: Iterable[uuid.UUID],
    workflows: Sequence[str] | None = None,
    probe_keys: bool = True,
    keys_left: Callable[[], None] | None = None,
    alias: str,
) -> list[Claim]:
    """Claim up to ``limit`` runs of a limited queue without exceeding its limits (only of
    ``workflows``, if given).

    Claims nothing this time if another claimer has held the queue's lock for longer than
    ``LOCK_WAIT_MS`` (see ``_lock``): the caller's next round tries again.
    """
    d = dialect(alias)
    try:
        with transaction.atomic(using=alias):
            if d.pg:
                _lock(d, queue)
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
                probe_keys=probe_keys,
                keys_left=keys_left,
                alias=alias,
            )
    except OperationalError as exc:
        if not lock_not_available(exc):
            raise
        logger.debug("Queue %r: its claim lock is held by another claimer; next round", queue)
        return []


# A claimer holds its queue's lock for a few short statements. One that stalls holding it
# (a frozen or swapped-out process, a network that went quiet) must not stall the loops of
# every other worker of the queue, and with them the claims of all their queues: they wait
# LOCK_WAIT_MS, then leave the queue to their next round.


def _lock(d: Dialect, queue: str) -> None:
    """Take the queue's lock for this transaction, waiting at most ``LOCK_WAIT_MS``.

    One statement: the subquery (kept apart by ``OFFSET 0``) sets ``lock_timeout`` for
    this transaction before the lock is asked for. ``SET LOCAL`` ends with the transaction,
    so nothing leaks to the next user of a pooled connection.
    """
    execute(
        d,
        "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0)) FROM "
        "(SELECT set_config('lock_timeout', %(wait)s, true) OFFSET 0) AS timeout",
        {"key": f"django_durable:queue:{queue}", "wait": f"{LOCK_WAIT_MS}ms"},
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
