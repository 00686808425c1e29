"""Telling the process about a run's changes once they are committed: signals and metrics.

Every function here hands its work to ``transaction.on_commit``: it runs when the
transaction that wrote the change commits (at once when the write was in autocommit), and
never for one rolled back. Receivers are called with ``send_robust``: one that raises is
logged (Django logs its traceback, we say which run), and the worker or the request goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.dispatch import Signal

from ..core import serialization, signals, telemetry
from ..core.logfields import run_extra
from ..core.statuses import RunStatus
from ..declarations.registry import registered_workflows
from .records import Claim

logger = logging.getLogger("django_durable")


def runs_started(claims: Iterable[Claim], *, worker_id: str, alias: str) -> None:
    """Announce the runs among ``claims`` that were claimed for the first time."""
    for claim in claims:
        if claim.token != 1:  # claimed before: started then
            continue
        run_id, name, queue = str(claim.run_id), claim.workflow_name, claim.queue

        def started(run_id: str = run_id, name: str = name, queue: str = queue) -> None:
            telemetry.count_started(name, queue)
            _send(signals.run_started, run_id, name, queue=queue, worker_id=worker_id)

        _on_commit(started, alias)


def run_finished(
    *, run_id: Any, workflow_name: str, status: str, error: Any = None, alias: str
) -> None:
    """Announce that a run ended with ``status`` (``error``: its error document, or JSON)."""
    run_id = str(run_id)

    def finished() -> None:
        document = _document(error)
        telemetry.count_finished(workflow_name, str(status))
        _send(signals.run_finished, run_id, workflow_name, status=str(status), error=document)
        if status == RunStatus.FAILED:
            _send(signals.run_failed, run_id, workflow_name, error=document)

    _on_commit(finished, alias)


def step_retried(
    *,
    run_id: Any,
    workflow_name: str,
    step_name: str,
    position: int,
    attempt: int,
    error: Any,
    retry_at: datetime,
    alias: str,
) -> None:
    """Announce that attempt ``attempt`` of a step failed and another comes at ``retry_at``."""
    run_id = str(run_id)

    def retried() -> None:
        _send(
            signals.step_retried,
            run_id,
            workflow_name,
            step_name=step_name,
            position=position,
            attempt=attempt,
            error=_document(error),
            retry_at=retry_at,
        )

    _on_commit(retried, alias)


def run_taken_over(
    *,
    run_id: Any,
    workflow_name: str,
    lost_worker: str | None,
    worker_id: str,
    takeovers: int,
    status: str,
    alias: str,
) -> None:
    """Announce that ``worker_id`` took a run back from ``lost_worker``, whose lease expired."""
    run_id = str(run_id)

    def taken() -> None:
        _send(
            signals.run_taken_over,
            run_id,
            workflow_name,
            lost_worker=lost_worker,
            worker_id=worker_id,
            takeovers=takeovers,
            status=str(status),
        )

    _on_commit(taken, alias)


def _on_commit(announce: Callable[[], None], alias: str) -> None:
    def guarded() -> None:
        try:
            announce()
        except Exception:  # ours, not a receiver's (send_robust keeps those)
            logger.exception("Could not announce a change of a run")

    transaction.on_commit(guarded, using=alias)


def _send(signal: Signal, run_id: str, workflow_name: str, **arguments: Any) -> None:
    """Send ``signal`` for a run; log each receiver that raised."""
    sender = registered_workflows().get(workflow_name)
    responses = signal.send_robust(sender, run_id=run_id, workflow_name=workflow_name, **arguments)
    for receiver, response in responses:
        if isinstance(response, Exception):
            # Django's own line (logger "django.dispatch") has the traceback; this one says
            # which run, for those who read the django_durable logger.
            logger.error(
                "Receiver %s of %s raised for run %s (%s: %s); the run goes on",
                getattr(receiver, "__qualname__", receiver),
                _name(signal),
                run_id,
                type(response).__name__,
                response,
                extra=run_extra(run_id, workflow_name),
            )


def _name(signal: Signal) -> str:
    for name in ("run_started", "run_finished", "run_failed", "step_retried", "run_taken_over"):
        if getattr(signals, name) is signal:
            return f"durable.{name}"
    return "a signal"


def _document(error: Any) -> dict[str, Any] | None:
    """Return an error document as a dict (it may be stored JSON text)."""
    if error is None or isinstance(error, dict):
        return error
    try:
        decoded = serialization.loads(error)
    except ValueError:
        return {"type": "", "message": str(error), "traceback": ""}
    return decoded if isinstance(decoded, dict) else {"message": str(decoded)}
