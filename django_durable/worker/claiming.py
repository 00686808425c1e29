"""Claiming ready runs over a worker's queues: free queues at once, limited ones each under
its own lock (``store.queues``), up to the free slots."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from threading import local

from django.db import close_old_connections, connections

from ..core.conf import queue_limits
from ..store.claims import claim_runs
from ..store.queues import claim_limited
from ..store.records import Claim

_checked = local()  # when this thread last checked its connections


def claim_ready(
    *,
    worker_id: str,
    queues: list[str],
    limit: int,
    lease_seconds: float,
    exclude: Iterable[uuid.UUID],
    workflows: Sequence[str] | None = None,
    probe_keys: bool = True,
    keys_left: Callable[[], None] | None = None,
    alias: str,
) -> list[Claim]:
    """Claim up to ``limit`` ready runs of ``queues``; never those in ``exclude``, and only
    runs of ``workflows`` (the names this worker's code registers), if given.

    ``probe_keys=False`` leaves out runs under a per-key limit, and ``keys_left`` is told
    when such runs were left ready (see ``store.claims``)."""
    exclude = list(exclude)
    limited = {name: limits for name in queues if (limits := queue_limits(name)) is not None}
    free = [name for name in queues if name not in limited]
    claims = []
    if free:
        claims = claim_runs(
            worker_id=worker_id,
            queues=free,
            limit=limit,
            lease_seconds=lease_seconds,
            exclude=exclude,
            workflows=workflows,
            probe_keys=probe_keys,
            keys_left=keys_left,
            alias=alias,
        )
    for name, limits in limited.items():
        if len(claims) >= limit:
            break
        claims += claim_limited(
            name,
            limits,
            worker_id=worker_id,
            limit=limit - len(claims),
            lease_seconds=lease_seconds,
            exclude=exclude,
            workflows=workflows,
            probe_keys=probe_keys,
            keys_left=keys_left,
            alias=alias,
        )
    return claims


def check_connections() -> None:
    """Close this thread's broken or expired connections, as Django does per request.

    At once after a database error, otherwise at most once a second: with
    CONN_HEALTH_CHECKS each check costs the next run a ``SELECT 1``, and a run is much
    cheaper than a request.
    """
    errors = any(
        connection.errors_occurred for connection in connections.all(initialized_only=True)
    )
    now = time.monotonic()
    if errors or now - getattr(_checked, "at", 0.0) >= 1.0:
        close_old_connections()
        _checked.at = now
