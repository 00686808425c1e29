"""The heartbeat: renew the leases of the runs in flight, and hear what happened to them.

A thread of the worker's, every ``heartbeat_interval``. A lease the database no longer
gives this worker marks its run lost (another worker owns it); a cancellation asked for
since the claim reaches the run here when no NOTIFY brought it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from django.db import connections

from ..core import clock
from ..store.leases import extend_leases
from .inflight import InFlight
from .presence import mark_seen

logger = logging.getLogger("django_durable")


class Heartbeat:
    """Renews the leases in ``inflight`` (guarded by ``lock``) until stopped."""

    def __init__(
        self,
        worker_id: str,
        inflight: dict[uuid.UUID, InFlight],
        lock: threading.Lock,
        *,
        interval: float,
        lease_seconds: float,
        alias: str,
    ) -> None:
        self.worker_id = worker_id
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.alias = alias
        self._inflight = inflight
        self._lock = lock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="durable-heartbeat", daemon=True)

    def start(self) -> None:
        """Start beating in a thread of its own."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current beat."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()
        connections[self.alias].close()

    def beat(self) -> None:
        """Renew every lease in flight once; note the runs lost or asked to cancel."""
        with self._lock:
            entries = list(self._inflight.values())
        began, skipped = time.monotonic(), clock.skipped()
        try:
            run_ids = [entry.claim.run_id for entry in entries]
            renewal = extend_leases(self.worker_id, run_ids, self.lease_seconds, alias=self.alias)
            mark_seen(self.worker_id, alias=self.alias)
        except Exception:
            logger.warning("Worker %s could not renew its leases", self.worker_id, exc_info=True)
            connections[self.alias].close()
            return
        with self._lock:
            for entry in entries:
                run_id = entry.claim.run_id
                if self._inflight.get(run_id) is not entry:
                    continue  # finished meanwhile
                if run_id in renewal.busy:
                    continue  # locked by another transaction: the next beat renews it
                if run_id not in renewal.held:
                    entry.lost = True
                    continue
                entry.renewed(began, skipped, self.lease_seconds)
                if renewal.held[run_id] is not None:
                    entry.cancel_reason = renewal.held[run_id]
