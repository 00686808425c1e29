"""Which live workers know a run's workflow, in words.

A worker claims only the runs of the workflows its code registers (``WorkerProcess.workflows``):
a run whose workflow no live worker knows waits, and its page says so, and what to do.
"""

from __future__ import annotations

import dataclasses

from ..core.conf import get_settings
from ..models import Run, WorkerProcess
from .times import format_duration

# A run's page names at most this many workers.
MAX_NAMED = 10


@dataclasses.dataclass(frozen=True, slots=True)
class KnownBy:
    """The live workers whose code registers a workflow, and those of them serving a queue."""

    workers: list[WorkerProcess]
    serving: list[WorkerProcess]


def known_by(workflow_name: str, queue: str) -> KnownBy:
    """Return the live workers that register ``workflow_name``, and which serve ``queue``."""
    alive = WorkerProcess.objects.using(get_settings().DATABASE).alive().order_by("id")
    workers = [worker for worker in alive if workflow_name in (worker.workflows or [])]
    serving = [worker for worker in workers if queue in (worker.queues or [])]
    return KnownBy(workers=workers, serving=serving)


def known_by_sentence(run: Run) -> str:
    """Return which live workers know the run's workflow, or that none does and what then."""
    found = known_by(run.workflow_name, run.queue)
    if not found.workers:
        timeout = get_settings().UNKNOWN_WORKFLOW_TIMEOUT
        ends = (
            f"; a ready run fails if none does for {format_duration(timeout)} "
            "(UNKNOWN_WORKFLOW_TIMEOUT)"
            if timeout is not None
            else ""
        )
        return (
            f"No live worker knows workflow `{run.workflow_name}`: start (or restart) a worker "
            f"whose code defines it{ends}."
        )
    named = ", ".join(
        f"{worker.id} (queues {', '.join(map(str, worker.queues or []))})"
        for worker in found.workers[:MAX_NAMED]
    )
    more = len(found.workers) - MAX_NAMED
    text = f"{len(found.workers)} live {_workers(len(found.workers))}: {named}"
    text += f" and {more} more" if more > 0 else ""
    if not found.serving:
        text += f". None of them serves queue `{run.queue}`"
    return text + "."


def _workers(count: int) -> str:
    return "worker" if count == 1 else "workers"
