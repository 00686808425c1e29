"""Checkpoints: reading a run's recorded operations, and the fenced write of a new one.

A checkpoint is written only while the worker still holds the run (its lease token): on
PostgreSQL the run row is locked ``FOR SHARE`` so a takeover cannot slip between the
check and the write.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.db import transaction

from ..core.conf import get_settings
from ..core.statuses import StepStatus
from .dialect import Dialect, dialect, execute
from .records import Claim, Row, StepRecord


def load_steps_of(
    run_ids: Sequence[uuid.UUID], *, alias: str | None = None
) -> dict[uuid.UUID, dict[int, StepRecord]]:
    """Return every operation the runs recorded, by run and position, in one query."""
    d = dialect(alias)
    params: dict[str, Any] = {}
    ids = d.in_list("r", [d.store_uuid(run_id) for run_id in run_ids], params)
    rows = execute(
        d,
        "SELECT run_id, position, kind, name, status, result, error, attempts "
        f"FROM durable_step WHERE run_id IN ({ids}) ORDER BY run_id, position",
        params,
    ).rows
    found: dict[uuid.UUID, dict[int, StepRecord]] = {}
    for row in rows:
        found.setdefault(d.read_uuid(row[0]), {})[row[1]] = StepRecord(*row[1:])
    return found


def load_steps(run_id: uuid.UUID, *, alias: str | None = None) -> dict[int, StepRecord]:
    """Return every operation the run recorded, by position, in one query."""
    d = dialect(alias)
    rows = execute(
        d,
        "SELECT position, kind, name, status, result, error, attempts "
        "FROM durable_step WHERE run_id = %(run)s ORDER BY position",
        {"run": d.store_uuid(run_id)},
    ).rows
    return {row[0]: StepRecord(*row) for row in rows}


def record_step(
    claim: Claim,
    *,
    position: int,
    kind: str,
    name: str,
    status: StepStatus,
    result: str | None = None,
    error: str | None = None,
    attempts: int = 1,
    duration_ms: float | None = None,
    row: Row | None = None,
    counts: bool = False,
    alias: str | None = None,
) -> bool:
    """Write a checkpoint if the claim still holds the run; return whether it was written.

    ``counts``: the body ran once more without a start record (see :func:`checkpoint_sql`).

    An unfinished row at the same position (``retrying``, ``waiting``) is replaced; a
    finished one wins. ``row`` is written too, if and only if the checkpoint is: in the
    same statement on PostgreSQL (one round trip), in one transaction on SQLite.
    """
    d = dialect(alias)
    params: dict[str, Any] = {
        "position": position,
        "kind": kind,
        "name": name,
        "status": str(status),
        "result": result,
        "error": error,
        "attempts": attempts,
        "duration": duration_ms,
        "run": d.store_uuid(claim.run_id),
        "token": claim.token,
        "counts": counts,
    }
    if row is None:
        return execute(d, checkpoint_sql(d, params), params).rowcount == 1
    return _record_with_row(d, params, row)


def _record_with_row(d: Dialect, params: dict[str, Any], row: Row) -> bool:
    columns = ["run_id", *row.values, "created_at"]
    placeholders = []
    for column, value in row.values.items():
        params[f"row_{column}"] = value
        placeholders.append(d.param(f"row_{column}", "jsonb" if column in row.json else None))
    placeholders.append(d.now(params))
    quoted = ", ".join(f'"{column}"' for column in columns)
    if d.pg:
        params["channel"] = get_settings().NOTIFY_CHANNEL
        params["payload"] = row.notify or ""
        sql = (
            f"WITH fenced AS ({checkpoint_sql(d, params)} RETURNING run_id), "
            f"written AS (INSERT INTO {row.table} ({quoted}) "
            f"SELECT run_id, {', '.join(placeholders)} FROM fenced RETURNING run_id) "
            "SELECT pg_notify(%(channel)s, %(payload)s) FROM written"
        )
        return len(execute(d, sql, params).rows) == 1
    with transaction.atomic(using=d.connection.alias):
        if execute(d, checkpoint_sql(d, params), params).rowcount != 1:
            return False
        sql = f"INSERT INTO {row.table} ({quoted}) VALUES (%(run)s, {', '.join(placeholders)})"
        execute(d, sql, params)
        return True


def record_step_with_rows(
    claim: Claim,
    *,
    position: int,
    kind: str,
    name: str,
    result: str,
    rows: Sequence[Row],
    alias: str | None = None,
) -> bool:
    """Write a completed checkpoint and ``rows`` with it, all or nothing, if the claim still
    holds the run; return whether they were written.

    The rows go to one table, with the same columns and ``notify``: on PostgreSQL in one
    statement (the columns that differ from row to row as arrays, through ``unnest``) with
    one NOTIFY, on SQLite in one transaction. Without rows this is :func:`record_step`.
    """
    if len(rows) <= 1:
        return record_step(
            claim,
            position=position,
            kind=kind,
            name=name,
            status=StepStatus.COMPLETED,
            result=result,
            row=rows[0] if rows else None,
            alias=alias,
        )
    shape = _shape(rows[0])
    if any(_shape(row) != shape for row in rows):
        raise ValueError("The rows of one checkpoint go to one table, with the same columns.")
    d = dialect(alias)
    params: dict[str, Any] = {
        "position": position,
        "kind": kind,
        "name": name,
        "status": str(StepStatus.COMPLETED),
        "result": result,
        "error": None,
        "attempts": 1,
        "duration": None,
        "run": d.store_uuid(claim.run_id),
        "token": claim.token,
    }
    if d.pg:
        return _record_rows_pg(d, params, rows)
    return _record_rows_sqlite(d, params, rows)


def _shape(row: Row) -> tuple[str, list[str], frozenset[str], str | None]:
    return row.table, list(row.values), row.json, row.notify


# The array type of a column whose values differ from row to row, by Python type.
ARRAY_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean[]"),  # before int: a bool is an int
    (int, "bigint[]"),
    (float, "double precision[]"),
    (str, "text[]"),
)


def _array_type(column: str, values: list[Any]) -> str:
    for python_type, sql_type in ARRAY_TYPES:
        if all(value is None or isinstance(value, python_type) for value in values):
            return sql_type
    found = sorted({type(value).__name__ for value in values})
    raise TypeError(f"Column {column!r}: no array type for values of type {found}.")


def _record_rows_pg(d: Dialect, params: dict[str, Any], rows: Sequence[Row]) -> bool:
    first = rows[0]
    selected = []
    unnested = []
    for column, value in first.values.items():
        column_values = [row.values[column] for row in rows]
        cast = "::jsonb" if column in first.json else ""
        if all(other == value for other in column_values):  # one parameter for every row
            params[f"row_{column}"] = value
            selected.append(d.param(f"row_{column}", "jsonb" if cast else None))
            continue
        params[f"rows_{column}"] = column_values
        unnested.append(f"%(rows_{column})s::{_array_type(column, column_values)}")
        selected.append(f"u.c{len(unnested) - 1}{cast}")
    if not unnested:  # the same row N times: still N rows
        params["rows_n"] = list(range(len(rows)))
        unnested.append("%(rows_n)s::bigint[]")
    aliases = ", ".join(f"c{index}" for index in range(len(unnested)))
    quoted = ", ".join(f'"{column}"' for column in ["run_id", *first.values, "created_at"])
    params["channel"] = get_settings().NOTIFY_CHANNEL
    params["payload"] = first.notify or ""
    sql = (
        f"WITH fenced AS ({checkpoint_sql(d, params)} RETURNING run_id), "
        f"written AS (INSERT INTO {first.table} ({quoted}) "
        f"SELECT fenced.run_id, {', '.join(selected)}, {d.now(params)} "
        f"FROM fenced, unnest({', '.join(unnested)}) AS u({aliases}) RETURNING 1), "
        "counted AS (SELECT count(*) AS n FROM written) "
        "SELECT n, pg_notify(%(channel)s, %(payload)s) FROM counted WHERE n > 0"
    )
    return len(execute(d, sql, params).rows) == 1


def _record_rows_sqlite(d: Dialect, params: dict[str, Any], rows: Sequence[Row]) -> bool:
    first = rows[0]
    columns = ["run_id", *first.values, "created_at"]
    quoted = ", ".join(f'"{column}"' for column in columns)
    names = ", ".join(f"%(row_{column})s" for column in columns)
    sql = f"INSERT INTO {first.table} ({quoted}) VALUES ({names})"
    checkpoint = checkpoint_sql(d, params)  # sets params["now"]: one time for every row
    with transaction.atomic(using=d.connection.alias):
        if execute(d, checkpoint, params).rowcount != 1:
            return False
        values = [
            {"row_run_id": params["run"], "row_created_at": params["now"]}
            | {f"row_{column}": value for column, value in row.values.items()}
            for row in rows
        ]
        with d.connection.cursor() as cursor:
            cursor.executemany(sql, values)
        return True


def checkpoint_sql(d: Dialect, params: dict[str, Any]) -> str:
    """Return the fenced checkpoint upsert of :func:`record_step` (no RETURNING).

    ``params["counts"]`` true: the write also counts an execution of the body, whose start
    was not recorded (it ended before ``RECORD_STEP_START_AFTER``), as
    :func:`record_start` would have.
    """
    params["counts"] = bool(params.get("counts"))
    return (
        "INSERT INTO durable_step (run_id, position, kind, name, status, result, error, "
        "attempts, executions, duration_ms, recorded_at) "
        f"SELECT id, {d.param('position', 'integer')}, {d.param('kind', 'varchar')}, "
        f"{d.param('name', 'varchar')}, {d.param('status', 'varchar')}, "
        f"{d.param('result', 'jsonb')}, {d.param('error', 'jsonb')}, "
        f"{d.param('attempts', 'integer')}, "
        f"CASE WHEN {d.param('counts', 'boolean')} THEN 1 END, "
        f"{d.param('duration', 'double precision')}, "
        f"{d.now(params)} FROM durable_run "
        "WHERE id = %(run)s AND lease_token = %(token)s AND status = 'running'"
        f"{' FOR SHARE' if d.pg else ''} "
        "ON CONFLICT (run_id, position) DO UPDATE SET kind = excluded.kind, "
        "name = excluded.name, status = excluded.status, "
        "result = excluded.result, error = excluded.error, attempts = excluded.attempts, "
        "executions = CASE WHEN excluded.executions IS NULL THEN durable_step.executions "
        "ELSE COALESCE(durable_step.executions, durable_step.attempts) + 1 END, "
        "duration_ms = excluded.duration_ms, recorded_at = excluded.recorded_at "
        "WHERE durable_step.status IN ('retrying', 'waiting', 'running')"
    )


def record_start(
    claim: Claim, *, position: int, kind: str, name: str, alias: str | None = None
) -> bool:
    """Count an execution of a step's body before it begins; return whether it was written.

    Fenced like a checkpoint, so a worker that lost the run does not run the body. A new
    position gets a ``running`` record with one execution; a record still unfinished there
    (``running``: a worker was lost in the body; ``retrying``) counts one more, keeping
    what it says. On PostgreSQL the commit does not wait for the disk: a worker killed
    loses nothing of it, a database crash may lose the count of one execution.
    """
    d = dialect(alias)
    params: dict[str, Any] = {
        "position": position,
        "kind": kind,
        "name": name,
        "run": d.store_uuid(claim.run_id),
        "token": claim.token,
    }
    # Only where the statement commits alone: inside a caller's transaction (an atomic
    # test) the setting would last until that transaction's commit.
    lazy = d.pg and not d.connection.in_atomic_block
    fence = (
        "WHERE id = %(run)s AND lease_token = %(token)s AND status = 'running'"
        + (" AND set_config('synchronous_commit', 'off', true) = 'off'" if lazy else "")
        + (" FOR SHARE" if d.pg else "")
    )
    sql = (
        "INSERT INTO durable_step (run_id, position, kind, name, status, attempts, "
        "executions, recorded_at) "
        f"SELECT id, {d.param('position', 'integer')}, {d.param('kind', 'varchar')}, "
        f"{d.param('name', 'varchar')}, 'running', 0, 1, {d.now(params)} "
        f"FROM durable_run {fence} "
        "ON CONFLICT (run_id, position) DO UPDATE SET "
        "executions = COALESCE(durable_step.executions, durable_step.attempts) + 1 "
        "WHERE durable_step.status IN ('retrying', 'running')"
    )
    return execute(d, sql, params).rowcount == 1


def rewind(run_id: uuid.UUID, position: int, *, alias: str | None = None) -> int:
    """Undo the run's operations at ``position`` and after, so they run again.

    Their records go, and with them what they wrote: values and stream items are deleted,
    messages they took are handed back (the next recv receives them again). Events they
    emitted were already seen and stay; ``ctx.emit_event`` emits under an idempotency key
    per position, so running it again emits nothing new. Returns the records deleted.
    """
    d = dialect(alias)
    params = {"run": d.store_uuid(run_id), "position": position}
    at_or_after = "run_id = %(run)s AND position >= %(position)s"
    execute(d, f"DELETE FROM durable_value WHERE {at_or_after}", params)
    execute(d, f"DELETE FROM durable_stream WHERE {at_or_after}", params)
    execute(
        d,
        "UPDATE durable_message SET consumed_at = NULL, consumed_position = NULL "
        "WHERE run_id = %(run)s AND consumed_position >= %(position)s",
        params,
    )
    return execute(d, f"DELETE FROM durable_step WHERE {at_or_after}", params).rowcount
