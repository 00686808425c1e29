"""Queue limits: how many runs of a queue may run at once, and start per period.

Configured in ``DJANGO_DURABLE["QUEUES"]``, e.g.
``{"emails": {"concurrency": 5, "rate_limit": "100/m"}}``. The limits hold across every
worker: a limited queue is claimed under a lock of its own (an advisory lock on
PostgreSQL; SQLite runs one writing transaction at a time), counting what runs and what
started before claiming more.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from . import db
from .conf import get_settings

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclasses.dataclass(frozen=True, slots=True)
class QueueLimits:
    """The limits of one queue (``None``: no limit of that kind)."""

    concurrency: int | None = None
    rate: int | None = None  # runs started ...
    per_seconds: float | None = None  # ... per this many seconds


def parse_rate(text: str) -> tuple[int, float]:
    """Parse ``"100/m"`` (or ``"5/10s"``) into (count, seconds)."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"{text!r} is not a rate like '100/m', '5/10s' or '1000/h'.")
    count, every, unit = int(match.group(1)), match.group(2), match.group(3)
    return count, (int(every) if every else 1) * _UNIT_SECONDS[unit]


def parse_limits(name: str, options: Mapping[str, Any]) -> QueueLimits:
    """Validate one queue's options (``ImproperlyConfigured`` if wrong)."""
    where = f"DJANGO_DURABLE['QUEUES'][{name!r}]"
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict.")
    unknown = sorted(set(options) - {"concurrency", "rate_limit"})
    if unknown:
        raise ImproperlyConfigured(f"{where} has unknown keys: {', '.join(unknown)}.")
    concurrency = options.get("concurrency")
    if concurrency is not None and not (isinstance(concurrency, int) and concurrency >= 1):
        raise ImproperlyConfigured(f"{where}['concurrency'] must be a whole number >= 1.")
    rate = per = None
    if options.get("rate_limit") is not None:
        try:
            rate, per = parse_rate(options["rate_limit"])
        except ValueError as exc:
            raise ImproperlyConfigured(f"{where}['rate_limit']: {exc}") from exc
    return QueueLimits(concurrency=concurrency, rate=rate, per_seconds=per)


def limits_of(queue: str) -> QueueLimits | None:
    """Return the limits of ``queue``, if it has any."""
    options = get_settings().QUEUES.get(queue)
    return None if options is None else parse_limits(queue, options)


def claim_limited(
    queue: str,
    limits: QueueLimits,
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    exclude: Iterable[uuid.UUID],
    alias: str,
) -> list[db.Claim]:
    """Claim up to ``limit`` runs of a limited queue without exceeding its limits."""
    d = db.dialect(alias)
    with transaction.atomic(using=alias):
        if d.pg:
            db.execute(
                d,
                "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))",
                {"key": f"django_durable:queue:{queue}"},
            )
        allowed = min(limit, *_room(d, queue, limits))
        if allowed <= 0:
            return []
        return db.claim_runs(
            worker_id=worker_id,
            queues=[queue],
            limit=allowed,
            lease_seconds=lease_seconds,
            exclude=exclude,
            alias=alias,
        )


def _room(d: db.Dialect, queue: str, limits: QueueLimits) -> list[int]:
    """Return how many more runs each limit of the queue lets start now."""
    room = []
    if limits.concurrency is not None:
        rows = db.execute(
            d,
            "SELECT count(*) FROM durable_run WHERE queue = %(queue)s AND status = 'running'",
            {"queue": queue},
        ).rows
        room.append(limits.concurrency - int(rows[0][0]))
    if limits.rate is not None and limits.per_seconds is not None:
        params: dict[str, Any] = {"queue": queue}
        since = d.later(-limits.per_seconds, params)
        rows = db.execute(
            d,
            f"SELECT count(*) FROM durable_run WHERE queue = %(queue)s AND started_at > {since}",
            params,
        ).rows
        room.append(limits.rate - int(rows[0][0]))
    return room
