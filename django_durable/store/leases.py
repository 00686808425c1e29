"""Leases of claimed runs: renewing them, taking back the runs whose lease ran out,
handing back a stopping worker's runs, and waking the runs whose timers are due.

Like every write about a claimed run (``store.claims``), these decide by the database's
``now()``, never a worker's clock: on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` where
several workers may run them at once.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import OperationalError, transaction

from ..core.conf import get_settings
from ..core.statuses import RunStatus
from .claims import reason_asked
from .dialect import LOCK_WAIT_MS, Dialect, dialect, execute, lock_not_available, notify, notifying
from .records import Recovered


def wake_due_runs(*, limit: int = 1000, alias: str | None = None) -> int:
    """Make waiting runs whose wake time has come pending again; return how many."""
    d = dialect(alias)
    params: dict[str, Any] = {"limit": limit}
    now = d.now(params)
    pick = (
        f"SELECT id FROM durable_run WHERE status = 'waiting' AND wake_at <= {now} "
        "ORDER BY wake_at LIMIT %(limit)s"
    )
    sets = (
        "status = 'pending', available_at = wake_at, wake_at = NULL, wake_on = NULL, "
        f"waiting_for = '', updated_at = {now}"
    )
    if d.pg:
        params["channel"] = get_settings().NOTIFY_CHANNEL
        sql = (
            f"WITH due AS ({pick} FOR UPDATE SKIP LOCKED), woken AS (UPDATE durable_run "
            f"SET {sets} FROM due WHERE durable_run.id = due.id RETURNING queue) "
            "SELECT n, pg_notify(%(channel)s, 'q:' || queue) FROM "
            "(SELECT queue, count(*) AS n FROM woken GROUP BY queue) AS per_queue"
        )
        return sum(int(row[0]) for row in execute(d, sql, params).rows)
    return execute(d, f"UPDATE durable_run SET {sets} WHERE id IN ({pick})", params).rowcount


def recover_expired_runs(
    *, max_recoveries: int, error: str, limit: int = 100, alias: str | None = None
) -> list[Recovered]:
    """Take back runs whose lease expired, failing those lost more than ``max_recoveries``.

    Returns what became of each run, and which worker lost it. Rows another transaction
    has locked (a stalled worker inside an atomic step) are skipped until it lets go.
    """
    d = dialect(alias)
    params: dict[str, Any] = {"limit": limit, "max": max_recoveries, "error": error}
    now = d.now(params)
    pick = (
        f"SELECT id, claimed_by FROM durable_run WHERE status = 'running' "
        f"AND lease_expires_at < {now} ORDER BY lease_expires_at LIMIT %(limit)s"
    )
    over = "recoveries >= %(max)s"
    sets = (
        f"status = CASE WHEN {over} THEN '{RunStatus.FAILED}' ELSE '{RunStatus.PENDING}' END, "
        f"error = CASE WHEN {over} THEN {d.param('error', 'jsonb')} ELSE error END, "
        f"finished_at = CASE WHEN {over} THEN {now} ELSE NULL END, "
        "recoveries = recoveries + 1, claimed_by = NULL, lease_expires_at = NULL, "
        f"available_at = {now}, updated_at = {now}"
    )
    changed = "durable_run.id, durable_run.status, durable_run.queue, durable_run.workflow_name"
    if d.pg:
        sql = (
            f"WITH expired AS ({pick} FOR UPDATE SKIP LOCKED) UPDATE durable_run SET {sets} "
            "FROM expired WHERE durable_run.id = expired.id "
            f"RETURNING {changed}, durable_run.recoveries, expired.claimed_by"
        )
        rows = execute(d, sql, params).rows
    else:  # RETURNING gives the new values only: read who held them first, in one writer
        with transaction.atomic(using=d.connection.alias):
            holders = dict(execute(d, pick, params).rows)
            ids = d.in_list("r", list(holders), params)
            sql = (
                f"UPDATE durable_run SET {sets} WHERE id IN ({ids}) "
                f"RETURNING {changed.replace('durable_run.', '')}, recoveries"
            )
            rows = [(*row, holders[row[0]]) for row in execute(d, sql, params).rows] if ids else []
    notify(
        [f"r:{d.read_uuid(r[0])}" if r[1] == RunStatus.FAILED else f"q:{r[2]}" for r in rows],
        alias=alias,
    )
    return [
        Recovered(
            run_id=d.read_uuid(row[0]),
            status=str(row[1]),
            workflow_name=str(row[3]),
            recoveries=int(row[4]),
            lost_worker=None if row[5] is None else str(row[5]),
        )
        for row in rows
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class Renewal:
    """What one renewal of a worker's leases found.

    ``held``: the runs whose lease was renewed, each with the reason it was asked to cancel
    (``None`` if it was not). ``busy``: runs still this worker's that another transaction
    had locked (PostgreSQL), left for the next beat: neither renewed nor lost. Every other
    run asked about is no longer this worker's.
    """

    held: dict[uuid.UUID, str | None]
    busy: frozenset[uuid.UUID] = frozenset()


def extend_leases(
    worker_id: str,
    run_ids: Sequence[uuid.UUID],
    lease_seconds: float,
    *,
    alias: str | None = None,
) -> Renewal:
    """Extend the leases this worker still holds (the heartbeat: how a cancellation reaches
    a run when no NOTIFY does).

    On PostgreSQL a row another transaction has locked is waited for ``LOCK_WAIT_MS`` at
    most, then skipped. A run's own checkpoint locks its row for a moment, many times a
    second in a busy run, and is waited for: skipping it, the heartbeat could miss the run
    beat after beat until its lease ran out under a live worker. A web request that sent a
    run a message inside its own long transaction holds the row until it commits; waiting
    for it, the renewal would let the leases of every other run of this worker run out. A
    skipped run is ``busy``; if its lock outlasts its lease, the run is recovered as any
    run whose lease ran out.
    """
    if not run_ids:
        return Renewal({})
    d = dialect(alias)
    params: dict[str, Any] = {"worker": worker_id}
    ids = d.in_list("r", [d.store_uuid(run_id) for run_id in run_ids], params)
    mine = f"claimed_by = %(worker)s AND status = 'running' AND id IN ({ids})"
    renew = f"lease_expires_at = {d.later(lease_seconds, params)}"
    sql = (
        f"UPDATE durable_run SET {renew} WHERE {mine} "
        "RETURNING id, cancel_requested_at, cancel_reason"
    )
    if not d.pg:
        rows = execute(d, sql, params).rows
    else:
        try:
            with transaction.atomic(using=d.connection.alias):
                execute(d, f"SET LOCAL lock_timeout = '{LOCK_WAIT_MS}ms'", {})
                rows = execute(d, sql, params).rows
        except OperationalError as exc:
            if not lock_not_available(exc):
                raise
            return _renew_skipping_locked(d, mine, renew, params)
    return Renewal({d.read_uuid(row[0]): reason_asked(row[1], row[2]) for row in rows})


def _renew_skipping_locked(d: Dialect, mine: str, renew: str, params: dict[str, Any]) -> Renewal:
    """Renew the leases of the rows ``mine`` names that no other transaction holds locked;
    the others are ``busy`` (PostgreSQL)."""
    # ``seen`` reads the statement's snapshot, ``free`` locks what no one else holds: a row
    # seen as this worker's but not renewed is locked by another transaction (or changed
    # by one that just committed: the next beat sees which).
    sql = (
        f"WITH seen AS (SELECT id FROM durable_run WHERE {mine}), "
        f"free AS (SELECT id FROM durable_run WHERE {mine} FOR NO KEY UPDATE SKIP LOCKED), "
        f"renewed AS (UPDATE durable_run SET {renew} FROM free WHERE durable_run.id = free.id "
        "RETURNING durable_run.id, cancel_requested_at, cancel_reason) "
        "SELECT id, cancel_requested_at, cancel_reason, true FROM renewed UNION ALL "
        "SELECT id, NULL, NULL, false FROM seen WHERE id NOT IN (SELECT id FROM renewed)"
    )
    held: dict[uuid.UUID, str | None] = {}
    busy = set()
    for run_id, requested_at, reason, renewed in execute(d, sql, params).rows:
        if renewed:
            held[d.read_uuid(run_id)] = reason_asked(requested_at, reason)
        else:
            busy.add(d.read_uuid(run_id))
    return Renewal(held, frozenset(busy))


def release_worker_runs(worker_id: str, *, alias: str | None = None) -> int:
    """Hand back every run this worker still holds (it is exiting); return how many."""
    d = dialect(alias)
    params: dict[str, Any] = {"worker": worker_id}
    now = d.now(params)
    sql = (
        "UPDATE durable_run SET status = 'pending', claimed_by = NULL, "
        f"lease_expires_at = NULL, available_at = {now}, updated_at = {now} "
        "WHERE claimed_by = %(worker)s AND status = 'running'"
    )
    if d.pg:
        sql = notifying(d, f"{sql} RETURNING queue", "'q:' || queue", params)
        return len(execute(d, sql, params).rows)
    return execute(d, sql, params).rowcount
