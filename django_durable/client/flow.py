"""Starting a run under flow control: a singleton's existing run, a debounced pending run.

``@durable.workflow(singleton_key=...)`` returns the unfinished run of the key instead of
starting another; ``debounce=`` gives a start's input to the key's pending run (not yet
claimed, still in its window) and moves its start to the end of a new window. Both read
the key's runs and then write one, so the starts of a key are serialised while they do:
an advisory lock on PostgreSQL (``store.flow.lock_start``), the one writer on SQLite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core import clock
from ..core.statuses import RunStatus
from ..models import Run
from ..store.dialect import dialect
from ..store.flow import lock_start

if TYPE_CHECKING:
    from ..declarations.specs import FlowSpec


def existing_run(run: Run, spec: FlowSpec | None, *, alias: str) -> Run | None:
    """Return the run a start of ``run`` (unsaved) gives way to, or ``None`` to insert it.

    Call inside the transaction that inserts ``run``: the key's lock is held until it ends.
    """
    if spec is None or run.flow_key is None or not (spec.singleton or spec.debounce):
        return None
    lock_start(dialect(alias), run.workflow_name, run.flow_key)
    runs = Run.objects.using(alias).filter(workflow_name=run.workflow_name, flow_key=run.flow_key)
    if spec.singleton:
        unfinished = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING)
        return runs.filter(status__in=unfinished).order_by("created_at", "id").first()
    # Not yet claimed, and its window still open: a run the claim may be taking now is
    # skipped (a row lock on PostgreSQL; the claim's FOR UPDATE SKIP LOCKED skips it back).
    pending = (
        runs.select_for_update()
        .filter(status=RunStatus.PENDING, lease_token=0, available_at__gt=clock.database_time(0))
        .order_by("-created_at", "-id")
        .first()
    )
    if pending is None:
        return None
    pending.input = run.input
    pending.available_at = run.available_at
    pending.deadline_at = run.deadline_at
    pending.updated_at = clock.database_time(0)
    pending.save(using=alias, update_fields=["input", "available_at", "deadline_at", "updated_at"])
    pending.refresh_from_db(using=alias, fields=["available_at", "deadline_at", "updated_at"])
    return pending
