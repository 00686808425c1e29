"""Runs of workflows a worker does not register: found at the head of its queues, and failed
once no live worker has registered their workflow for ``UNKNOWN_WORKFLOW_TIMEOUT``.

The claim never takes them (it names the workflows the worker knows), so they gather at the
head of their queue, in claim order. Looking at the head only keeps this one index scan of
a bounded number of rows, however long the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction

from ..core.statuses import RunStatus
from . import announce
from .dialect import dialect, execute, notify
from .records import Stray
from .trees import close_children, lock_run, wake_parent


def unknown_heads(
    *, queues: Sequence[str], known: Sequence[str], limit: int = 200, alias: str | None = None
) -> list[Stray]:
    """Return the runs among the first ``limit`` ready ones of ``queues`` (in the order the
    claim takes them) whose workflow is not in ``known``."""
    d = dialect(alias)
    params: dict[str, Any] = {"limit": limit}
    head = (
        "SELECT id, workflow_name, queue, available_at, parent_id FROM durable_run "
        f"WHERE status = 'pending' AND queue IN ({d.in_list('q', queues, params)}) "
        f"AND available_at <= {d.now(params)} "
        "ORDER BY priority DESC, available_at, id LIMIT %(limit)s"
    )
    unknown = d.any_of("workflow_name", "wf", sorted(known), params, negate=True)
    rows = execute(d, f"SELECT * FROM ({head}) AS head WHERE {unknown}", params).rows
    return [
        Stray(
            run_id=d.read_uuid(row[0]),
            workflow_name=str(row[1]),
            queue=str(row[2]),
            available_at=d.read_datetime(row[3]) or datetime.min,
            parent_id=None if row[4] is None else d.read_uuid(row[4]),
        )
        for row in rows
    ]


def fail_stray(
    stray: Stray, error: str, *, ready_before: datetime, alias: str | None = None
) -> bool:
    """Fail a run of a workflow nobody registers, if it is still pending and was ready
    before ``ready_before``; wake its parent and close its children, as any ending does."""
    d = dialect(alias)
    params: dict[str, Any] = {
        "run": d.store_uuid(stray.run_id),
        "name": stray.workflow_name,
        "before": d.store_datetime(ready_before),
        "error": error,
    }
    now = d.now(params)
    sql = (
        f"UPDATE durable_run SET status = 'failed', error = {d.param('error', 'jsonb')}, "
        f"finished_at = {now}, updated_at = {now}, claimed_by = NULL, "
        "lease_expires_at = NULL, recoveries = 0 "
        "WHERE id = %(run)s AND status = 'pending' AND workflow_name = %(name)s "
        "AND available_at <= %(before)s"
    )
    with transaction.atomic(using=d.connection.alias):
        if stray.parent_id is not None:
            lock_run(d, stray.parent_id)  # parent before child, as everywhere
        if execute(d, sql, params).rowcount != 1:
            return False
        if stray.parent_id is not None:
            wake_parent(d, stray.parent_id, stray.run_id)
        close_children(stray.run_id, alias=d.connection.alias)
        notify([f"r:{stray.run_id}"], alias=d.connection.alias)
        announce.run_finished(
            run_id=stray.run_id,
            workflow_name=stray.workflow_name,
            status=RunStatus.FAILED,
            error=error,
            alias=d.connection.alias,
        )
    return True
