"""The rounds every worker shares: wake due runs, take back lost ones, start scheduled and
event-triggered runs. Any worker may do them; they are safe to run in several at once."""

from __future__ import annotations

import logging

from ..core import serialization
from ..core.logfields import run_extra
from ..core.statuses import RunStatus
from ..orchestration.schedules import dispatch_due_schedules
from ..orchestration.triggers import dispatch_triggers
from ..store import announce
from ..store.leases import recover_expired_runs, wake_due_runs
from ..store.records import Recovered

logger = logging.getLogger("django_durable")


def maintain(*, worker_id: str, max_recoveries: int, alias: str) -> None:
    """Do one round of the shared work for the durable database ``alias``."""
    woken = wake_due_runs(alias=alias)
    error = lost_error(max_recoveries)
    recovered = recover_expired_runs(max_recoveries=max_recoveries, error=error, alias=alias)
    if woken:
        logger.debug("worker %s woke %d runs", worker_id, woken)
    for run in recovered:
        _announce(run, worker_id=worker_id, error=error, alias=alias)
        extra = run_extra(run.run_id, run.workflow_name, worker_id=worker_id)
        if run.status == RunStatus.FAILED:
            logger.error(
                "Run %s of workflow %r failed: its worker was lost %d times in a row (the "
                "last: worker %s, whose lease expired)",
                run.run_id,
                run.workflow_name,
                run.recoveries,
                run.lost_worker,
                extra=extra,
            )
        else:
            logger.info(
                "Worker %s takes over run %s of workflow %r from worker %s, whose lease "
                "expired (takeover %d in a row); it is ready again",
                worker_id,
                run.run_id,
                run.workflow_name,
                run.lost_worker,
                run.recoveries,
                extra=extra,
            )
    triggered = dispatch_triggers(alias=alias)
    if triggered:
        logger.debug("worker %s started %d event-triggered runs", worker_id, triggered)
    scheduled = dispatch_due_schedules(alias=alias)
    if scheduled:
        logger.debug("worker %s started %d scheduled runs", worker_id, scheduled)


def _announce(run: Recovered, *, worker_id: str, error: str, alias: str) -> None:
    """Announce a run taken back from a lost worker, and its end if it failed for that."""
    announce.run_taken_over(
        run_id=run.run_id,
        workflow_name=run.workflow_name,
        lost_worker=run.lost_worker,
        worker_id=worker_id,
        takeovers=run.recoveries,
        status=run.status,
        alias=alias,
    )
    if run.status == RunStatus.FAILED:
        announce.run_finished(
            run_id=run.run_id,
            workflow_name=run.workflow_name,
            status=RunStatus.FAILED,
            error=error,
            alias=alias,
        )


def lost_error(max_recoveries: int) -> str:
    """Return the error document of a run failed because its workers kept vanishing."""
    message = (
        f"The run's worker was lost more than {max_recoveries} times in a row "
        "(killed, out of memory, stalled past its lease, or unable to write to the "
        "database). Something in the run may crash its worker; see the worker logs. "
        "Raise DJANGO_DURABLE['MAX_RECOVERIES'] to allow more takeovers."
    )
    info = {"type": "django_durable.WorkerLost", "message": message, "traceback": ""}
    return serialization.dumps(info, what="The lost-worker error")
