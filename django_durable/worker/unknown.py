"""Runs of workflows this worker does not register: said once, failed when nobody knows them.

A deploy reaches the workers one after another, and a worker started before its
``workflows.py`` was saved lacks what was added since. Its claim leaves the runs of
workflows it does not know to the workers that know them (``store.claims.claim_runs`` with
``workflows=``). Every so often it looks at the head of its queues for such runs
(``store.unknown``): it logs a warning the first time this process meets a name, and fails
the runs whose workflow no live worker has registered for ``UNKNOWN_WORKFLOW_TIMEOUT``.

"For that long" counts from the latest of: the run becoming ready, the last time a worker
that registers the workflow was heard from (``WorkerProcess.workflows``), and the start of
the longest-running live worker. The last one keeps a worker that comes back alone after
an outage from failing the runs that piled up before the workers that know them are back.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from ..core import clock, serialization
from ..core.conf import get_settings
from ..core.logfields import run_extra
from ..exceptions import WorkflowNotFound
from ..models import WorkerProcess
from ..models.workers import alive_since
from ..store.records import Stray
from ..store.unknown import fail_stray, unknown_heads

logger = logging.getLogger("django_durable")

# The workflow names this process has warned about: once each, whatever its workers and
# polls (the test helpers make a Worker per round).
_warned: set[str] = set()
_warned_lock = threading.Lock()
# When this process began, on its own clock: a worker without a WorkerProcess row
# (``run_once()``, the test helpers) counts as live since then.
_process_started = timezone.now()
# The longest pause between two looks: a warning comes at most this late.
MAX_INTERVAL = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Knowers:
    """What the worker rows say about one workflow name."""

    live: list[WorkerProcess]  # the live workers that register it
    last_seen: datetime | None  # the last time any worker that registers it was heard from


class UnknownWorkflows:
    """Looks for runs of workflows its worker does not register, at most every interval."""

    def __init__(self, *, worker_id: str, queues: list[str], poll_interval: float, alias: str):
        self.worker_id = worker_id
        self.queues = queues
        self.alias = alias
        timeout = get_settings().UNKNOWN_WORKFLOW_TIMEOUT
        self.interval = max(poll_interval, min(MAX_INTERVAL, (timeout or MAX_INTERVAL) / 10))
        self.next_look = 0.0  # monotonic time of the next look; the first is at once

    def look(self, known: Collection[str]) -> int:
        """Warn about and fail the runs at the head of the queues that ``known`` lacks, if it
        is time to look; return how many runs failed."""
        if time.monotonic() < self.next_look:
            return 0
        self.next_look = time.monotonic() + self.interval
        strays = unknown_heads(queues=self.queues, known=sorted(known), alias=self.alias)
        if not strays:
            return 0
        # The database's time: ``last_seen_at`` and ``available_at`` are in it, and this
        # worker's clock may be minutes off.
        now = clock.database_now(self.alias)
        timeout = get_settings().UNKNOWN_WORKFLOW_TIMEOUT
        rows = _worker_rows(now, timeout)
        names = sorted({stray.workflow_name for stray in strays})
        knowers = {name: _knowers(name, rows, now) for name in names}
        for name in names:
            self._warn_once(name, knowers[name], strays, timeout)
        if timeout is None:
            return 0
        cutoff = now - timedelta(seconds=timeout)
        if _watching_since(rows, now) > cutoff:
            return 0
        return sum(
            self._fail(stray, timeout, cutoff)
            for stray in strays
            if _forgotten(knowers[stray.workflow_name], cutoff) and stray.available_at <= cutoff
        )

    def _warn_once(
        self, name: str, knowers: Knowers, strays: Iterable[Stray], timeout: float | None
    ) -> None:
        with _warned_lock:
            if name in _warned:
                return
            _warned.add(name)
        queues = ", ".join(sorted({stray.queue for stray in strays if stray.workflow_name == name}))
        if knowers.live:
            workers = ", ".join(
                f"{worker.id} (queues {', '.join(map(str, worker.queues))})"
                for worker in knowers.live
            )
            logger.warning(
                "Worker %s does not know workflow %r (runs of it are ready in queue %s): it "
                "leaves them to the live workers that know it: %s. Restart this worker with "
                "the code that defines it if it should run them too.",
                self.worker_id,
                name,
                queues,
                workers,
            )
            return
        ends = (
            f"they fail if no live worker knows it for {timeout:g} s "
            "(DJANGO_DURABLE['UNKNOWN_WORKFLOW_TIMEOUT'])"
            if timeout is not None
            else "they wait until one does (DJANGO_DURABLE['UNKNOWN_WORKFLOW_TIMEOUT'] is None)"
        )
        logger.warning(
            "Worker %s does not know workflow %r (runs of it are ready in queue %s), and no "
            "live worker knows it: start or restart a worker whose code defines it; %s.",
            self.worker_id,
            name,
            queues,
            ends,
        )

    def _fail(self, stray: Stray, timeout: float, cutoff: datetime) -> bool:
        if not fail_stray(stray, _error(stray.workflow_name, timeout), ready_before=cutoff):
            return False
        logger.warning(
            "Run %s failed: no live worker registers workflow %r (for %g s)",
            stray.run_id,
            stray.workflow_name,
            timeout,
            extra=run_extra(stray.run_id, stray.workflow_name, worker_id=self.worker_id),
        )
        return True


def _worker_rows(now: datetime, timeout: float | None) -> list[WorkerProcess]:
    """Return the workers alive now, and those heard from within ``timeout``."""
    recent = Q(stopped_at__isnull=True, last_seen_at__gte=alive_since(now))
    if timeout is not None:
        recent |= Q(last_seen_at__gte=now - timedelta(seconds=timeout))
    return list(WorkerProcess.objects.using(get_settings().DATABASE).filter(recent))


def _knowers(name: str, rows: list[WorkerProcess], now: datetime) -> Knowers:
    knowing = [row for row in rows if name in (row.workflows or [])]
    live = [
        row for row in knowing if row.stopped_at is None and row.last_seen_at >= alive_since(now)
    ]
    seen = [max(row.last_seen_at, row.stopped_at or row.last_seen_at) for row in knowing]
    return Knowers(live=live, last_seen=max(seen, default=None))


def _forgotten(knowers: Knowers, cutoff: datetime) -> bool:
    """Return whether no worker has known the workflow since ``cutoff``."""
    return not knowers.live and (knowers.last_seen is None or knowers.last_seen <= cutoff)


def _watching_since(rows: list[WorkerProcess], now: datetime) -> datetime:
    """Return since when workers have been running: the start of the oldest live one."""
    live = [
        row.started_at
        for row in rows
        if row.stopped_at is None and row.last_seen_at >= alive_since(now)
    ]
    # How long ago this process began, by its own clock, on the database's (``now``).
    process_started = now - (timezone.now() - _process_started)
    return min([*live, process_started])


def _error(name: str, timeout: float) -> str:
    """Return the error document of a run failed because nobody registers its workflow."""
    message = (
        f"Workflow {name!r} is unknown: no live worker registers it, and none that did was "
        f"seen for {timeout:g} seconds while this run was ready to start (DJANGO_DURABLE"
        "['UNKNOWN_WORKFLOW_TIMEOUT']). Deploy the code that defines it (an installed app's "
        f"{get_settings().AUTODISCOVER_MODULE!r} module) to the workers, then retry the run."
    )
    info = serialization.error_info(WorkflowNotFound(message))
    return serialization.dumps(info, what="The unknown-workflow error")
