"""The SQL of callbacks: made with a run's checkpoint, settled once from outside.

Settling locks the callback's run before it touches the callback, and a run suspending on
a callback updates its own row before it looks at the callback: one of them always sees
what the other committed, so no completion is missed (as with messages). A callback
leaves ``pending`` once, by a compare-and-set: completed, failed, or expired.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime
from typing import Any

from django.db import transaction

from ..core.statuses import CallbackStatus, RunStatus
from . import trees, wakes
from .dialect import Dialect, dialect, execute


@dataclasses.dataclass(frozen=True, slots=True)
class CallbackRow:
    """A callback as stored; ``value`` and ``error`` are JSON text."""

    id: uuid.UUID
    run_id: uuid.UUID
    status: str
    value: str | None
    error: str | None
    expires_at: datetime | None
    settled_at: datetime | None


def create(
    run_id: uuid.UUID,
    position: int,
    new_id: uuid.UUID,
    expires_at: datetime | None,
    *,
    alias: str | None = None,
) -> tuple[uuid.UUID, datetime | None]:
    """Insert the callback the run makes at ``position``; return its id and expiry.

    A run rewound past its ``ctx.callback()`` (a workflow retry) gets the callback it made
    there before, settled or not: the outside system may already hold its URL.
    """
    d = dialect(alias)
    params: dict[str, Any] = {
        "id": d.store_uuid(new_id),
        "run": d.store_uuid(run_id),
        "position": position,
        "expires": d.store_datetime(expires_at),
    }
    inserted = execute(
        d,
        "INSERT INTO durable_callback (id, run_id, position, status, expires_at, created_at) "
        f"VALUES (%(id)s, %(run)s, %(position)s, 'pending', %(expires)s, {d.now(params)}) "
        "ON CONFLICT (run_id, position) DO NOTHING RETURNING id",
        params,
    ).rows
    if inserted:
        return new_id, expires_at
    [(found, expires)] = execute(
        d,
        "SELECT id, expires_at FROM durable_callback "
        "WHERE run_id = %(run)s AND position = %(position)s",
        params,
    ).rows
    return d.read_uuid(found), d.read_datetime(expires)


def get(callback_id: uuid.UUID, *, alias: str | None = None) -> CallbackRow | None:
    """Return the callback, if it exists."""
    d = dialect(alias)
    rows = execute(
        d,
        "SELECT id, run_id, status, value, error, expires_at, settled_at FROM durable_callback "
        "WHERE id = %(id)s",
        {"id": d.store_uuid(callback_id)},
    ).rows
    if not rows:
        return None
    row = rows[0]
    return CallbackRow(
        id=d.read_uuid(row[0]),
        run_id=d.read_uuid(row[1]),
        status=str(row[2]),
        value=_text(row[3]),
        error=_text(row[4]),
        expires_at=d.read_datetime(row[5]),
        settled_at=d.read_datetime(row[6]),
    )


def _text(value: Any) -> str | None:
    # Django reads jsonb as text; a decoded document is written back, just in case.
    return value if value is None or isinstance(value, str) else json.dumps(value)


def settled(d: Dialect, callback_id: uuid.UUID) -> bool:
    """Return whether the callback left ``pending`` (completed, failed or expired)."""
    return bool(
        execute(
            d,
            "SELECT 1 FROM durable_callback WHERE id = %(id)s AND status <> 'pending'",
            {"id": d.store_uuid(callback_id)},
        ).rows
    )


def expire(callback_id: uuid.UUID, *, alias: str | None = None) -> bool:
    """Mark a pending callback whose time has passed expired; return whether it now is.

    A fact of time, not of a claim: any worker may record it, lease or not. Once it is
    recorded, completing the callback is refused, so its waiter and the outside system
    agree on what happened.
    """
    d = dialect(alias)
    params: dict[str, Any] = {"id": d.store_uuid(callback_id)}
    now = d.now(params)
    execute(
        d,
        f"UPDATE durable_callback SET status = 'expired', settled_at = {now} "
        f"WHERE id = %(id)s AND status = 'pending' AND expires_at <= {now}",
        params,
    )
    rows = execute(d, "SELECT status FROM durable_callback WHERE id = %(id)s", params).rows
    return bool(rows) and rows[0][0] == CallbackStatus.EXPIRED


def settle(
    callback_id: uuid.UUID,
    status: CallbackStatus,
    *,
    value: str | None = None,
    error: str | None = None,
    alias: str | None = None,
) -> str | None:
    """Complete or fail a pending callback and wake its run if it waits for it.

    Returns ``None`` when done, else why not: ``"not_found"``, ``"completed"`` or
    ``"failed"`` (settled before), ``"expired"`` or ``"run_finished"``. Joins the
    caller's transaction: the run is woken when it commits.
    """
    d = dialect(alias)
    params: dict[str, Any] = {
        "id": d.store_uuid(callback_id),
        "status": str(status),
        "value": value,
        "error": error,
    }
    now = d.now(params)
    with transaction.atomic(using=d.connection.alias):
        found = execute(d, "SELECT run_id FROM durable_callback WHERE id = %(id)s", params).rows
        if not found:
            return "not_found"
        run_id = d.read_uuid(found[0][0])
        trees.lock_run(d, run_id)  # the run row first, as a suspending run takes it
        refused = _refusal(d, params)
        if refused is not None:
            return refused
        updated = execute(
            d,
            f"UPDATE durable_callback SET status = %(status)s, "
            f"value = {d.param('value', 'jsonb')}, error = {d.param('error', 'jsonb')}, "
            f"settled_at = {now} WHERE id = %(id)s AND status = 'pending' "
            f"AND (expires_at IS NULL OR expires_at > {now})",
            params,
        ).rowcount
        if updated != 1:  # expired by its waiter meanwhile
            return _refusal(d, params) or str(CallbackStatus.EXPIRED)
        wakes.wake_run_on(d, run_id, f"cb:{callback_id}")
    return None


def _refusal(d: Dialect, params: dict[str, Any]) -> str | None:
    """Return why the callback cannot be settled now, or ``None`` if it can."""
    now = d.now(params)
    [(status, expired, run_status)] = execute(
        d,
        f"SELECT c.status, CASE WHEN c.expires_at <= {now} THEN 1 ELSE 0 END, r.status "
        "FROM durable_callback c JOIN durable_run r ON r.id = c.run_id WHERE c.id = %(id)s",
        params,
    ).rows
    if status != CallbackStatus.PENDING:
        return str(status)
    if expired:
        return str(CallbackStatus.EXPIRED)
    if run_status in RunStatus.terminal():
        return "run_finished"
    return None
