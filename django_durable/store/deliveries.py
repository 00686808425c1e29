"""The SQL of event-triggered workflows: deliveries written with each event, read in batches.

Storing an event writes, in the same transaction, a ``TriggerDelivery`` row for every
workflow the registry says ``trigger_on_event``s its name. The dispatcher
(``orchestration.triggers``) reads a workflow's oldest deliveries and deletes them in the
transaction that starts their run.
"""

from __future__ import annotations

from typing import Any

from ..declarations.registry import triggered_by
from .dialect import Dialect, execute, notifying


def notify_key(workflow_name: str) -> str:
    """Return the NOTIFY payload sent when ``workflow_name`` gets a delivery."""
    return f"t:{workflow_name}"


def record_deliveries(d: Dialect, event_id: int, name: str) -> int:
    """Write a delivery of event ``event_id`` for each workflow it triggers; return how many.

    Called in the transaction that stores the event: both commit, or neither. On
    PostgreSQL, workers are notified on commit (a hint; they also poll).
    """
    names = sorted(wf.name for wf in triggered_by(name))
    if not names:
        return 0
    params: dict[str, Any] = {"event": event_id}
    rows = []
    for index, workflow_name in enumerate(names):
        params[f"w{index}"] = workflow_name
        rows.append(f"(%(w{index})s, %(event)s, {d.now(params)})")
    sql = (
        "INSERT INTO durable_trigger_delivery (workflow_name, event_id, created_at) "
        f"VALUES {', '.join(rows)}"
    )
    if d.pg:
        sql = notifying(d, f"{sql} RETURNING workflow_name", "'t:' || workflow_name", params)
    execute(d, sql, params)
    return len(names)


def pending_workflow_names(d: Dialect) -> list[str]:
    """Return the workflows with pending deliveries: one index probe per name."""
    sql = (
        "WITH RECURSIVE pending(name) AS ("
        "SELECT min(workflow_name) FROM durable_trigger_delivery UNION ALL "
        "SELECT (SELECT min(workflow_name) FROM durable_trigger_delivery "
        "WHERE workflow_name > pending.name) FROM pending WHERE pending.name IS NOT NULL) "
        "SELECT name FROM pending WHERE name IS NOT NULL"
    )
    return [row[0] for row in execute(d, sql, {}).rows]


def lock_workflow(d: Dialect, name: str) -> bool:
    """Take the workflow's dispatch lock for this transaction, if no one holds it."""
    if not d.pg:
        return True  # SQLite: this transaction is the only writer
    # A statement of its own: a statement's snapshot is taken when it starts, so a read
    # in the same statement could miss what the previous holder committed.
    [(held,)] = execute(
        d,
        "SELECT pg_try_advisory_xact_lock(hashtextextended(%(key)s, 0))",
        {"key": f"django_durable:t:{name}"},
    ).rows
    return bool(held)


def oldest_deliveries(
    d: Dialect, workflow_name: str, *, limit: int, batch_timeout: float
) -> list[tuple[Any, ...]]:
    """Return the oldest ``limit`` events delivered to the workflow, in event order.

    Each row is ``(id, name, data, source, type, created_at, due)``: ``due`` is 1 when the
    delivery is older than ``batch_timeout`` seconds.
    """
    params: dict[str, Any] = {"workflow": workflow_name, "limit": limit}
    due = d.later(-batch_timeout, params, "due")
    return execute(
        d,
        "SELECT e.id, e.name, e.data, e.source, e.type, e.created_at, "
        f"CASE WHEN t.created_at <= {due} THEN 1 ELSE 0 END "
        "FROM durable_trigger_delivery t JOIN durable_event e ON e.id = t.event_id "
        "WHERE t.workflow_name = %(workflow)s ORDER BY t.event_id LIMIT %(limit)s",
        params,
    ).rows


def delete_deliveries(d: Dialect, workflow_name: str, event_ids: list[int]) -> None:
    """Delete the workflow's deliveries of ``event_ids`` (their run has started)."""
    params: dict[str, Any] = {"workflow": workflow_name}
    execute(
        d,
        "DELETE FROM durable_trigger_delivery WHERE workflow_name = %(workflow)s "
        f"AND event_id IN ({d.in_list('e', event_ids, params)})",
        params,
    )
