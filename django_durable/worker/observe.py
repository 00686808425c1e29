"""The workers' gauges, when OpenTelemetry is installed: runs in flight, and queue lag.

``durable.worker.in_flight`` is each live worker's runs in flight; ``durable.queue.lag`` is
the age of the oldest ready run of each queue the workers of this process serve, read from
the database when the metrics are collected (by the exporter's thread).
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections

from ..core import telemetry
from ..store.backlog import ready_lag

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("django_durable")

_workers: weakref.WeakSet[Worker] = weakref.WeakSet()
_lock = threading.Lock()


def watch(worker: Worker) -> None:
    """Report ``worker``'s gauges until ``forget(worker)``."""
    with _lock:
        _workers.add(worker)
    telemetry.add_gauge(
        "durable.worker.in_flight",
        _in_flight,
        unit="{run}",
        description="Runs a worker is executing",
    )
    telemetry.add_gauge(
        "durable.queue.lag",
        _queue_lag,
        unit="s",
        description="How long the oldest ready run of the queue has waited",
    )


def forget(worker: Worker) -> None:
    """Stop reporting ``worker``'s gauges (it stopped)."""
    with _lock:
        _workers.discard(worker)


def _live() -> list[Worker]:
    with _lock:
        return list(_workers)


def _in_flight() -> list[tuple[float, dict[str, Any]]]:
    return [(worker.in_flight, {telemetry.WORKER: worker.id}) for worker in _live()]


def _queue_lag() -> list[tuple[float, dict[str, Any]]]:
    served: dict[str, set[str]] = {}
    for worker in _live():
        served.setdefault(worker.alias, set()).update(worker.queues)
    observed = []
    for alias, queues in served.items():
        try:
            lag = ready_lag(sorted(queues), alias=alias)
        except DatabaseError as exc:  # the database is away: no figure this time
            logger.debug("Could not read the queue lag: %s", exc)
            connection = connections[alias]
            if not connection.in_atomic_block:
                connection.close()  # reconnect next time
            continue
        observed += [(seconds, {telemetry.QUEUE: queue}) for queue, seconds in lag.items()]
    return observed
