"""Storing how an execution ended: fenced updates of the run the worker claimed.

A finished run wakes its parent if it waits for it and closes its children (parent row
locked first, as everywhere); a suspended one waits for its time, event, message or child,
unless that arrived while it got there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction

from ..core import serialization
from ..core.statuses import RunStatus
from ..engine.execution import Outcome
from ..store import announce, channels, claims, trees
from ..store.claims import released_values
from ..store.dialect import NOW, Raw, dialect
from ..store.records import Claim

logger = logging.getLogger("django_durable")


class OutcomeStore:
    """Writes outcomes for one worker; ``hint_wake`` and ``give_up`` are the worker's."""

    def __init__(
        self,
        alias: str,
        *,
        worker_id: str,
        db_now: Callable[[], datetime],
        hint_wake: Callable[[datetime], None],
        give_up: Callable[[Claim], None],
    ) -> None:
        self.alias = alias
        self.worker_id = worker_id
        self._db_now = db_now
        self._hint_wake = hint_wake
        self._give_up = give_up

    def store(
        self,
        claim: Claim,
        outcome: Outcome,
        *,
        fold: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Write the outcome with a fenced update (and delete rewound records).

        ``fold``, if given, stores a final outcome that touches no other run in its stead
        (and claims the next run in the same statement: ``Worker._folding``).
        """
        ended = {**released_values(), "wake_at": None, "wake_on": None, "waiting_for": ""}
        kind = outcome.kind
        if kind == "abandoned":
            self._give_up(claim)
            return
        if kind in ("completed", "failed", "cancelled"):
            status = {
                "completed": RunStatus.COMPLETED,
                "failed": RunStatus.FAILED,
                "cancelled": RunStatus.CANCELLED,
            }[kind]
            values = {
                **ended,
                "status": status,
                "result": outcome.result,
                "error": outcome.error,
                "finished_at": NOW,
            }
            stored = self._finish(claim, values, children=outcome.children, fold=fold)
        elif kind == "released":
            values = {**ended, "status": RunStatus.PENDING, "available_at": NOW}
            stored = claims.update_claimed_run(claim, values, notify="queue", alias=self.alias)
        else:  # suspended, or retry of the whole workflow
            stored = self._suspend(claim, outcome, ended)
        if stored and kind in ("completed", "failed", "cancelled"):
            announce.run_finished(
                run_id=claim.run_id,
                workflow_name=claim.workflow_name,
                status=kind,
                error=outcome.error,
                alias=self.alias,
            )
        if not stored:
            logger.warning(
                "Run %s was taken over by another worker; this worker's %s outcome is discarded",
                claim.run_id,
                kind,
            )
        elif kind == "failed":
            logger.warning(
                "Worker %s: run %s of workflow %r failed: %s",
                self.worker_id,
                claim.run_id,
                claim.workflow_name,
                _said(outcome.error),
            )

    def _finish(
        self,
        claim: Claim,
        values: dict[str, Any],
        *,
        children: bool,
        fold: Callable[[dict[str, Any]], bool] | None,
    ) -> bool:
        """End a run for good; wake its parent if it waits for it; close its children."""
        if claim.parent_id is None and not children:  # one statement: nothing else to touch
            if fold is not None:
                return fold(values)
            return claims.update_claimed_run(claim, values, notify="run", alias=self.alias)
        with transaction.atomic(using=self.alias):
            d = dialect(self.alias)
            if claim.parent_id is not None:
                trees.lock_run(d, claim.parent_id)  # parent before child, as everywhere
            stored = claims.update_claimed_run(claim, values, notify="run", alias=self.alias)
            if stored:
                if claim.parent_id is not None:
                    trees.wake_parent(d, claim.parent_id, claim.run_id)
                trees.close_children(claim.run_id, alias=self.alias)
        return stored

    def _suspend(self, claim: Claim, outcome: Outcome, ended: dict[str, Any]) -> bool:
        values: dict[str, Any] = {**ended, "waiting_for": outcome.reason[:255]}
        if outcome.kind == "retry":
            values.update(attempt=claim.attempt + 1, error=outcome.error)
        wake_at = outcome.wake_at
        due = wake_at is not None and wake_at <= self._db_now()
        if due:  # no need to wait for the next maintenance round
            values.update(status=RunStatus.PENDING, available_at=wake_at)
        elif outcome.shielded:
            values.update(status=RunStatus.WAITING, wake_at=wake_at)
        else:
            # A cancellation asked for meanwhile wakes the run at once, so that it stops.
            values.update(
                status=Raw(
                    "CASE WHEN cancel_requested_at IS NULL THEN 'waiting' ELSE 'pending' END"
                ),
                available_at=Raw(
                    "CASE WHEN cancel_requested_at IS NULL THEN available_at ELSE NOW() END"
                ),
                wake_at=wake_at,
            )
        if outcome.wake_on is not None and not due:
            return self._suspend_waiting(claim, values, outcome)
        with transaction.atomic(using=self.alias):
            stored = claims.update_claimed_run(
                claim, values, notify="queue" if due else None, alias=self.alias
            )
            if stored and outcome.kind == "retry" and outcome.rewind_to is not None:
                trees.rewind(claim.run_id, outcome.rewind_to, alias=self.alias)
        if stored and wake_at is not None and not due:
            self._hint_wake(wake_at)
        return stored

    def _suspend_waiting(self, claim: Claim, values: dict[str, Any], outcome: Outcome) -> bool:
        """Suspend on an event or message, unless it arrived while the run got here."""
        assert outcome.wake_on is not None
        waiting = channels.suspend_waiting(
            claim,
            values,
            wake_on=outcome.wake_on,
            floor=outcome.floor,
            keys=outcome.keys,
            alias=self.alias,
        )
        if waiting is None:  # it arrived: the run is pending again, claim it soon
            self._hint_wake(self._db_now())
            return True
        if waiting and outcome.wake_at is not None:
            self._hint_wake(outcome.wake_at)
        return waiting


def _said(error: str | None) -> str:
    """Return an error document as ``Type: first line of the message``, for a log line."""
    try:
        info = serialization.loads(error) if error else {}
    except ValueError:
        info = {}
    kind = str(info.get("type") or "Error").rsplit(".", 1)[-1]
    lines = str(info.get("message") or "").strip().splitlines()
    message = lines[0] if lines else ""
    return f"{kind}: {message[:300]}" if message else kind
