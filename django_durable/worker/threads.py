"""The threads that execute a worker's claims, ``concurrency`` of them, fed by a queue.

After each run a thread asks ``follow`` for the run it executes next (one it claimed
itself), and goes back to the queue when there is none."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

from ..core.logfields import run_extra
from ..store.records import Claim

logger = logging.getLogger("django_durable")


class ExecutionThreads:
    """``count`` daemon threads calling ``process(claim)`` for every claim put in, and for
    every claim ``follow(claim)`` returns after it (``follow`` must not raise)."""

    def __init__(
        self,
        count: int,
        process: Callable[[Claim], Any],
        *,
        worker_id: str,
        follow: Callable[[Claim], Claim | None] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._process = process
        self._follow = follow
        self._work: queue.SimpleQueue[Claim | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"durable-run-{n}", daemon=True)
            for n in range(count)
        ]

    def start(self) -> None:
        """Start the threads."""
        for thread in self._threads:
            thread.start()

    def put(self, claim: Claim) -> None:
        """Hand ``claim`` to the next free thread."""
        self._work.put(claim)

    def stop(self, *, join: bool) -> None:
        """Tell every thread to end after its current claim; with ``join``, wait a little."""
        for _ in self._threads:
            self._work.put(None)
        if join:
            for thread in self._threads:
                thread.join(5)

    def _loop(self) -> None:
        """Execute claims until told to stop; close this thread's connections."""
        try:
            while (claim := self._work.get()) is not None:
                while claim is not None:
                    self._execute(claim)
                    claim = self._follow(claim) if self._follow is not None else None
        finally:
            connections.close_all()

    def _execute(self, claim: Claim) -> None:
        try:
            self._process(claim)
        except BaseException:
            # Only a signal would stop a thread here, and signals go to the main thread:
            # a run raised this. Losing the thread would leave the worker claiming runs
            # it never executes.
            logger.exception(
                "Worker %s: run %s raised",
                self.worker_id,
                claim.run_id,
                extra=run_extra(claim.run_id, claim.workflow_name, worker_id=self.worker_id),
            )
