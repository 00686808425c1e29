"""A worker's row in ``WorkerProcess``: registered at start, seen at every heartbeat."""

from __future__ import annotations

import os
import socket
import uuid

from ..core import clock
from ..declarations.registry import registered_workflows
from ..models import WorkerProcess


def new_worker_id() -> str:
    """Return a unique id for a worker: host, process and a random part."""
    host = socket.gethostname()[:32]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def register(worker_id: str, *, queues: list[str], concurrency: int, alias: str) -> None:
    """Record that the worker started, and the workflows its code registers (idempotent: a
    retry finds the row already there)."""
    WorkerProcess.objects.using(alias).update_or_create(
        id=worker_id,
        defaults={
            "hostname": socket.gethostname()[:255],
            "pid": os.getpid(),
            "queues": queues,
            "workflows": sorted(registered_workflows()),
            "concurrency": concurrency,
            # The database's time: other workers compare it with theirs (``alive_since``).
            "started_at": clock.database_time(0),
            "last_seen_at": clock.database_time(0),
        },
    )


def mark_seen(worker_id: str, *, alias: str) -> None:
    """Record that the worker is alive now."""
    WorkerProcess.objects.using(alias).filter(pk=worker_id).update(
        last_seen_at=clock.database_time(0)
    )


def mark_stopped(worker_id: str, *, alias: str) -> None:
    """Record that the worker stopped (its last sighting, too)."""
    now = clock.database_time(0)
    WorkerProcess.objects.using(alias).filter(pk=worker_id).update(stopped_at=now, last_seen_at=now)
