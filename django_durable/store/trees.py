"""The SQL of runs and their children: cancelling a tree of runs, waking a waiting parent.

Locks are always taken parent before child (a run, then its children, then theirs), so
a cancellation and a child finishing at the same time cannot deadlock, and a parent that
suspends on a child cannot miss it finishing: the child locks the parent row before it
writes its own outcome, and the parent updates its own row before it looks at the child.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from ..core import serialization
from ..core.statuses import RunStatus
from . import announce, wakes
from .checkpoints import rewind as rewind_records
from .dialect import Dialect, dialect, execute, notify

_TERMINAL = ", ".join(f"'{status}'" for status in sorted(RunStatus.terminal()))


def lock_run(d: Dialect, run_id: uuid.UUID) -> bool:
    """Lock a run row until the transaction ends (PostgreSQL); return whether it exists."""
    lock = " FOR NO KEY UPDATE" if d.pg else ""
    rows = execute(
        d, f"SELECT id FROM durable_run WHERE id = %(run)s{lock}", {"run": d.store_uuid(run_id)}
    )
    return bool(rows.rows)


def wake_parent(d: Dialect, parent_id: uuid.UUID, child_id: uuid.UUID) -> None:
    """Make ``parent_id`` pending if it waits for ``child_id`` (call with the parent locked),
    alone or among the things of a ``first_of``."""
    wakes.wake_run_on(d, parent_id, f"c:{child_id}")


def child_finished(d: Dialect, child_id: uuid.UUID) -> bool:
    """Return whether the child run is in a terminal state."""
    rows = execute(
        d,
        f"SELECT 1 FROM durable_run WHERE id = %(run)s AND status IN ({_TERMINAL})",
        {"run": d.store_uuid(child_id)},
    ).rows
    return bool(rows)


def _tree(d: Dialect, run_id: uuid.UUID, *, only_cancel_policy: bool) -> list[tuple[Any, ...]]:
    """Return ``(id, parent_id, status, lease_token, queue, workflow_name)`` of the run's
    descendants.

    Parents come before their children. With ``only_cancel_policy``, only the children
    whose ``parent_close`` is ``cancel`` (and all of theirs) are included.
    """
    policy = " AND parent_close = 'cancel'" if only_cancel_policy else ""
    sql = (
        "WITH RECURSIVE tree(id, depth) AS ("
        f"SELECT id, 1 FROM durable_run WHERE parent_id = %(run)s{policy} "
        "UNION ALL SELECT r.id, tree.depth + 1 FROM durable_run r "
        "JOIN tree ON r.parent_id = tree.id) "
        "SELECT r.id, r.parent_id, r.status, r.lease_token, r.queue, r.workflow_name FROM tree "
        "JOIN durable_run r ON r.id = tree.id ORDER BY tree.depth, r.id"
    )
    return execute(d, sql, {"run": d.store_uuid(run_id)}).rows


def _cancel_rows(d: Dialect, rows: list[tuple[Any, ...]], reason: str) -> int:
    """Cancel the runs of ``rows`` (already locked, parents first); return how many changed.

    A run that never started is cancelled at once. Any other unfinished run is asked to
    stop: it raises Cancelled at its next durable operation, and a waiting one is woken
    so that it gets there (and runs its cleanup).
    """
    error = serialization.dumps(
        {"type": "django_durable.exceptions.Cancelled", "message": reason, "traceback": ""},
        what="A cancellation",
    )
    changed = 0
    payloads: list[str] = []
    for run_id, parent_id, status, token, queue, workflow_name in rows:
        if status in RunStatus.terminal():
            continue
        run = d.read_uuid(run_id)
        params: dict[str, Any] = {"run": d.store_uuid(run), "reason": reason[:255], "error": error}
        now = d.now(params)
        if status == RunStatus.PENDING and int(token) == 0:
            sql = (
                f"UPDATE durable_run SET status = 'cancelled', finished_at = {now}, "
                f"error = {d.param('error', 'jsonb')}, cancel_requested_at = {now}, "
                f"cancel_reason = %(reason)s, updated_at = {now} "
                "WHERE id = %(run)s AND status = 'pending' AND lease_token = 0"
            )
            if execute(d, sql, params).rowcount:
                if parent_id is not None:
                    wake_parent(d, d.read_uuid(parent_id), run)
                announce.run_finished(
                    run_id=run,
                    workflow_name=workflow_name,
                    status=RunStatus.CANCELLED,
                    error=error,
                    alias=d.connection.alias,
                )
                payloads.append(f"r:{run}")
                changed += 1
                continue
            # Claimed since it was read: ask it to stop instead.
        sql = (
            f"UPDATE durable_run SET cancel_requested_at = COALESCE(cancel_requested_at, {now}), "
            "cancel_reason = CASE WHEN cancel_requested_at IS NULL THEN %(reason)s "
            "ELSE cancel_reason END, "
            "status = CASE WHEN status = 'waiting' THEN 'pending' ELSE status END, "
            f"available_at = CASE WHEN status = 'waiting' THEN {now} ELSE available_at END, "
            "wake_on = CASE WHEN status = 'waiting' THEN NULL ELSE wake_on END, "
            "waiting_for = CASE WHEN status = 'waiting' THEN '' ELSE waiting_for END, "
            "wake_at = CASE WHEN status = 'waiting' THEN NULL ELSE wake_at END, "
            f"updated_at = {now} WHERE id = %(run)s AND status NOT IN ({_TERMINAL})"
        )
        execute(d, sql, params)
        payloads += [f"x:{run}", f"q:{queue}"]
        changed += 1
    notify(payloads, alias=d.connection.alias)
    return changed


def _lock_rows(d: Dialect, rows: list[tuple[Any, ...]]) -> None:
    if d.pg:
        for row in rows:  # parents before children, as everywhere
            lock_run(d, d.read_uuid(row[0]))


def cancel_tree(run_id: uuid.UUID, reason: str, *, alias: str | None = None) -> int | None:
    """Cancel a run and every run under it; return how many changed (``None``: no such run).

    A run that already finished is left alone, and so are its children: those still
    running were abandoned on purpose (``parent_close="abandon"``); cancel them directly.
    """
    d = dialect(alias)
    select = (
        "SELECT id, parent_id, status, lease_token, queue, workflow_name FROM durable_run "
        "WHERE id = %(run)s"
    )
    with transaction.atomic(using=d.connection.alias):
        found = execute(d, select, {"run": d.store_uuid(run_id)}).rows
        if not found:
            return None
        parent_id = found[0][1]
        if parent_id is not None:  # parent before child: cancelling the run may wake it
            lock_run(d, d.read_uuid(parent_id))
        lock_run(d, run_id)
        own = execute(d, select, {"run": d.store_uuid(run_id)}).rows
        if not own:  # pruned meanwhile
            return None
        if own[0][2] in RunStatus.terminal():
            return 0  # a finished run's children were settled by its parent_close policy
        descendants = _tree(d, run_id, only_cancel_policy=False)
        _lock_rows(d, descendants)
        return _cancel_rows(d, own + descendants, reason)


def rewind(run_id: uuid.UUID, position: int, *, alias: str | None = None) -> int:
    """Rewind the run to ``position`` (see ``checkpoints.rewind``) and cancel the children it
    started there or later: running its code again starts them anew. Call it with the
    run locked; returns the records deleted."""
    d = dialect(alias)
    deleted = rewind_records(run_id, position, alias=alias)
    rows = execute(
        d,
        "SELECT id, parent_id, status, lease_token, queue, workflow_name FROM durable_run "
        f"WHERE parent_id = %(run)s AND parent_position >= %(position)s "
        f"AND status NOT IN ({_TERMINAL}) ORDER BY id",
        {"run": d.store_uuid(run_id), "position": position},
    ).rows
    for row in rows:
        tree = [row, *_tree(d, d.read_uuid(row[0]), only_cancel_policy=False)]
        _lock_rows(d, tree)
        _cancel_rows(d, tree, "the operation that started it ran again")
    return deleted


def close_children(run_id: uuid.UUID, *, alias: str | None = None) -> int:
    """Cancel the unfinished children that a finished run's ``parent_close`` policy ends."""
    d = dialect(alias)
    children = _tree(d, run_id, only_cancel_policy=True)
    if not children:
        return 0
    _lock_rows(d, children)
    return _cancel_rows(d, children, "its parent run finished")


def cancel_marker_position(run_id: uuid.UUID, *, alias: str | None = None) -> int | None:
    """Return the position where the run first raised Cancelled, if it did."""
    d = dialect(alias)
    rows = execute(
        d,
        "SELECT MIN(position) FROM durable_step WHERE run_id = %(run)s AND kind = 'cancel'",
        {"run": d.store_uuid(run_id)},
    ).rows
    return None if not rows or rows[0][0] is None else int(rows[0][0])
