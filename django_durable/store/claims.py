"""Claiming runs and holding them: the claim, and the fenced transitions of a claimed run.

Every write a worker makes about a run it holds is *fenced*: it applies only while the
run is still ``running`` under the lease token the worker claimed it with. On PostgreSQL
claims use ``FOR UPDATE SKIP LOCKED`` and times come from the database's ``now()``.
Renewing leases and taking back runs whose lease ran out is ``store.leases``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction

from ..core import clock
from ..core.conf import get_settings
from . import flow
from .checkpoints import load_steps_of
from .dialect import (
    NOW,
    Dialect,
    Raw,
    dialect,
    execute,
    notifying,
)
from .records import Claim, StepRecord

_JSON_COLUMNS = frozenset({"result", "error", "input"})


def run_status(run_id: uuid.UUID, *, alias: str | None = None) -> str | None:
    """Return the run's status (``None`` if there is no such run): one column, no model."""
    d = dialect(alias)
    rows = execute(
        d, "SELECT status FROM durable_run WHERE id = %(run)s", {"run": d.store_uuid(run_id)}
    ).rows
    return str(rows[0][0]) if rows else None


# The columns a claim returns, in the order ``_claim()`` reads them.
_CLAIMED = (
    "id, workflow_name, input, lease_token, attempt, queue, deadline_at, parent_id, depth, "
    "owner_id, cancel_requested_at, cancel_reason, trace_context, forked_from_id"
)


def claim_runs(
    *,
    worker_id: str,
    queues: Sequence[str],
    limit: int,
    lease_seconds: float,
    exclude: Iterable[uuid.UUID] = (),
    workflows: Sequence[str] | None = None,
    probe_keys: bool = True,
    keys_left: Callable[[], None] | None = None,
    alias: str | None = None,
) -> list[Claim]:
    """Claim up to ``limit`` ready runs of ``queues`` for ``worker_id``, best priority first.

    ``exclude`` (the worker's own in-flight runs) is never claimed again, even if their
    lease ran out and they were handed back meanwhile. With ``workflows`` (the names the
    worker's code registers) only runs of those are claimed: the others wait for a worker
    that knows them. One statement: it picks the runs, marks them ``running`` under a new
    lease token, and returns what the engine needs; on PostgreSQL also the records of the
    runs it resumes (SQLite reads them in a second query).

    On PostgreSQL a run under a per-key limit is claimed under its key's lock, so the claim
    first looks for such runs (``store.flow.ready_keys``, a round trip); with
    ``probe_keys=False`` it does not, and claims none of them. With ``keys_left``, the claim
    statement also tells whether it left such runs ready (their keys have room): it calls
    ``keys_left()`` if so, and the caller's next claim is the one that looks for them.
    """
    if workflows is not None and not workflows:
        return []
    d = dialect(alias)
    params: dict[str, Any] = {"worker": worker_id, "limit": limit}
    excluded = [d.store_uuid(run_id) for run_id in exclude]
    report = d.pg and keys_left is not None
    keys = []
    if d.pg and probe_keys:
        keys = flow.ready_keys(d, queues=queues, workflows=workflows, limit=limit)
    sql = _claim_sql(
        d, params, queues, excluded, workflows, lease_seconds, report_keys=report, keyed=bool(keys)
    )
    # The database's now() and this process's clock, paired: the engine's clock runs from
    # the claim, not from when a thread gets to the run (under load that is later, and a
    # retry or a sleep measured from then would come early by the difference). SQLite's
    # time is this process's, read here; PostgreSQL's now() is read before its answer
    # arrives, so the pair is taken after it: the engine's clock may run a little behind
    # the database's, never ahead (a sleep must not end before its deadline).
    local_now, sent_at = clock.now(), clock.monotonic()
    if keys:  # runs under a per-key limit are ready: claim them under their keys' locks
        with transaction.atomic(using=d.connection.alias):
            flow.lock_keys(d, params, keys)
            rows = execute(d, sql, params).rows
    else:
        rows = execute(d, sql, params).rows
    return _claims_of(d, rows, keys_left, local_now, sent_at, alias)


def finish_and_claim(
    finished: Claim,
    values: dict[str, Any],
    *,
    worker_id: str,
    queues: Sequence[str],
    lease_seconds: float,
    exclude: Iterable[uuid.UUID],
    workflows: Sequence[str],
    keys_left: Callable[[], None] | None = None,
    alias: str | None = None,
) -> tuple[bool, list[Claim]]:
    """Store a run's last outcome and claim the next run, in one statement (PostgreSQL).

    ``values`` are applied as ``update_claimed_run(finished, values, notify="run")`` would,
    fenced the same way; the claim is ``claim_runs(limit=1, probe_keys=False)``'s, which
    takes no run under a per-key limit. Return whether the outcome was stored, and the
    claim. The two share the statement's snapshot, so the claim cannot see the outcome:
    it never needs to (the finished run is not ready, and it freed no key's slot, as the
    claim takes no keyed run). One round trip and one commit less per run than the two
    statements, for the worker whose slots are all busy (``Worker.process``).
    """
    d = dialect(alias)
    params: dict[str, Any] = {"worker": worker_id, "limit": 1}
    excluded = [d.store_uuid(run_id) for run_id in exclude]
    claim = _claim_sql(
        d,
        params,
        queues,
        excluded,
        workflows,
        lease_seconds,
        report_keys=keys_left is not None,
        keyed=False,
    )
    update = _update_sql(d, finished, values, params)
    params["channel"] = get_settings().NOTIFY_CHANNEL
    stored = ", ".join(["NULL", "''"] + ["NULL"] * (_ROW_WIDTH - 2))
    sql = (
        f"WITH outcome AS ({update} RETURNING id), "
        "told AS (SELECT pg_notify(%(channel)s, 'r:' || id::text) FROM outcome), "
        f"{claim.removeprefix('WITH ')} UNION ALL SELECT {stored} FROM told"
    )
    local_now, sent_at = clock.now(), clock.monotonic()
    rows = execute(d, sql, params).rows
    claimed = [row for row in rows if row[0] is not None or row[1] != ""]
    was_stored = len(claimed) < len(rows)
    return was_stored, _claims_of(d, claimed, keys_left, local_now, sent_at, alias)


def _claims_of(
    d: Dialect,
    rows: list[tuple[Any, ...]],
    keys_left: Callable[[], None] | None,
    local_now: datetime,
    sent_at: float,
    alias: str | None,
) -> list[Claim]:
    """Return the claims of the rows a claim statement sent at ``sent_at`` returned (see
    ``claim_runs``)."""
    records: dict[uuid.UUID, dict[int, StepRecord]] = {}
    read_at = sent_at  # SQLite: this process's own time, read before the statement
    if d.pg:
        read_at = clock.monotonic()
        if keys_left is not None and any(row[0] is None for row in rows):
            keys_left()
        records, rows, stale = _split(d, rows)
    else:
        stale = [d.read_uuid(row[0]) for row in rows if _resumed(row)]
    if stale:  # read now: after the claim, so every record written before it is there
        records |= load_steps_of(stale, alias=alias)
    claims = [
        _claim(d, row, records, row[14] if d.pg else local_now, read_at, sent_at) for row in rows
    ]
    # SQLite's RETURNING order is unspecified; keep the claim order stable anyway.
    return sorted(claims, key=lambda claim: claim.run_id)


def _claim_sql(
    d: Dialect,
    params: dict[str, Any],
    queues: Sequence[str],
    excluded: list[Any],
    workflows: Sequence[str] | None,
    lease_seconds: float,
    *,
    report_keys: bool = False,
    keyed: bool = True,
) -> str:
    """Return the claim: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, one writer on SQLite.

    The workflow names are a filter on the rows the ready index yields, not a way in:
    runs of unknown workflows are rare and short-lived (a deploy), so the scan stays the
    claim's index scan, skipping them. So is flow control (``store.flow``): a run under a
    per-key limit is a candidate while its key has room (on PostgreSQL, of a key whose
    lock the claimer holds: ``held_w``/``held_k``, empty unless it took some), and of a
    key's candidates only as many as its free slots are taken.

    The order is the ready index's own (priority, then age), with nothing after it: the
    runs one statement made ready share one ``available_at`` (an event's waiters, a
    flood of timers due at once), and ordering those ties by id would read and sort the
    whole group at every claim, so waking N runs cost O(N^2). Ties come in the index's
    order: insertion order on SQLite, roughly write order on PostgreSQL.

    ``report_keys`` (PostgreSQL) adds a row of NULLs when ready keyed runs with room were
    left (``flow.left_behind``): an index probe in the same round trip.

    Without ``keyed`` (PostgreSQL: the claim holds no key's lock, so it may take no run
    under a per-key limit) the candidates are the runs under none, read through their own
    index (``durable_run_ready_plain``): the runs queued behind a full key are not passed.
    """
    keyed = keyed or not d.pg  # SQLite needs no key locks: its claim tests every key's room
    if d.pg and keyed:  # an unused list would not bind (DEBUG's query log)
        params.setdefault("held_w", [])
        params.setdefault("held_k", [])
    cand = (
        "SELECT id, workflow_name, flow_key, flow_limit, priority, available_at "
        "FROM durable_run WHERE status = 'pending' "
        f"AND queue IN ({d.in_list('q', queues, params)}) "
        f"AND available_at <= {d.now(params)}"
    )
    if excluded:
        cand += f" AND id NOT IN ({d.in_list('x', excluded, params)})"
    if workflows is not None:
        cand += f" AND {d.any_of('workflow_name', 'wf', sorted(workflows), params)}"
    cand += f" AND {flow.room(d, params)}" if keyed else " AND flow_limit IS NULL"
    cand += " ORDER BY priority DESC, available_at LIMIT %(limit)s"
    pick = flow.within_slots(d, params)
    sets = (
        "status = 'running', claimed_by = %(worker)s, lease_token = lease_token + 1, "
        f"lease_expires_at = {d.later(lease_seconds, params)}, "
        f"started_at = COALESCE(started_at, {d.now(params)}), updated_at = {d.now(params)}"
    )
    if not d.pg:
        return (
            f"WITH cand AS ({cand}) UPDATE durable_run SET {sets} WHERE id IN ({pick}) "
            f"RETURNING {_CLAIMED}"
        )
    qualified = ", ".join(f"durable_run.{column}" for column in _CLAIMED.split(", "))
    claimed = (
        f"UPDATE durable_run SET {sets} FROM picked WHERE durable_run.id = picked.id "
        f"RETURNING {qualified}, {d.now(params)} AS db_now"
    )
    sql = (
        f"WITH cand AS ({cand} FOR UPDATE SKIP LOCKED), picked AS ({pick}), "
        f"claimed AS ({claimed}) {_WITH_RECORDS}"
    )
    if report_keys:
        left = flow.left_behind(d, params, queues, workflows, "claimed")
        sql += f" UNION ALL SELECT {', '.join(['NULL'] * _ROW_WIDTH)} WHERE {left}"
    return sql


def _resumed(row: tuple[Any, ...]) -> bool:
    """Return whether a claimed run may have records: claimed before, or a fork (copied)."""
    return int(row[3]) > 1 or row[13] is not None


# PostgreSQL: the claimed runs, then the records of those it resumes, in the same round
# trip. The claim runs in the worker's loop, one at a time, and a batch woken by one event
# is all resumed runs: a second round trip per claim would cost every one of them.
#
# The records are read in the statement's snapshot, which can predate the run's row as
# the claim locked it (FOR UPDATE follows a row updated since, if it is still ready). They
# are complete when no claim came between: records are written only under a lease, by the
# holder of the token the snapshot shows, and that holder's last write committed before
# the run became ready again (its fenced write holds the run row until it commits). So a
# run whose token moved (``seen``, the row in the snapshot, is one claim behind) gets no
# records here, and ``claim_runs`` reads its records again after the claim.
#
# A run's row is its claim's columns, the database's time and ``fresh``; a record's row is
# the run's id, NULLs, and the record's columns; the row saying that keyed runs were left
# (``report_keys``) is all NULLs.
_STEP = "position, kind, name, status, result, error, attempts"  # StepRecord's fields
_RUN_WIDTH = len(_CLAIMED.split(", ")) + 2  # the claim's columns, db_now, fresh
_ROW_WIDTH = _RUN_WIDTH + len(_STEP.split(", "))
_FRESH = "claimed.lease_token = seen.lease_token + 1"
_WITH_RECORDS = (
    f"SELECT claimed.*, {_FRESH}, {', '.join(['NULL'] * len(_STEP.split(', ')))} "
    "FROM claimed LEFT JOIN durable_run AS seen ON seen.id = claimed.id "
    f"UNION ALL SELECT claimed.id, {', '.join(['NULL'] * (_RUN_WIDTH - 1))}, "
    f"{', '.join(f'step.{column}' for column in _STEP.split(', '))} "
    f"FROM claimed JOIN durable_run AS seen ON seen.id = claimed.id AND {_FRESH} "
    "JOIN durable_step AS step ON step.run_id = claimed.id "
    "WHERE claimed.lease_token > 1 OR claimed.forked_from_id IS NOT NULL"
)


def _split(
    d: Dialect, rows: list[tuple[Any, ...]]
) -> tuple[dict[uuid.UUID, dict[int, StepRecord]], list[tuple[Any, ...]], list[uuid.UUID]]:
    """Split the claim's rows (PostgreSQL): return the records by run and position, the
    runs' rows, and the resumed runs whose records must be read again (not ``fresh``)."""
    runs = [row for row in rows if row[1] is not None]
    steps = (row for row in rows if row[1] is None and row[0] is not None)
    records: dict[uuid.UUID, dict[int, StepRecord]] = {}
    for row in sorted(steps, key=lambda row: row[_RUN_WIDTH]):
        step = StepRecord(*row[_RUN_WIDTH:])
        records.setdefault(d.read_uuid(row[0]), {})[step.position] = step
    stale = [d.read_uuid(row[0]) for row in runs if _resumed(row) and not row[_RUN_WIDTH - 1]]
    return records, runs, stale


def _claim(
    d: Dialect,
    row: tuple[Any, ...],
    records: dict[uuid.UUID, dict[int, StepRecord]],
    db_now: datetime,
    read_at: float,
    sent_at: float,
) -> Claim:
    """Return the claim of one row the claim statement returned."""
    run_id = d.read_uuid(row[0])
    return Claim(
        run_id=run_id,
        workflow_name=row[1],
        input=row[2],
        token=int(row[3]),
        attempt=int(row[4]),
        queue=row[5],
        deadline_at=d.read_datetime(row[6]),
        db_now=db_now,
        records=records.get(run_id, {}),
        parent_id=None if row[7] is None else d.read_uuid(row[7]),
        depth=int(row[8]),
        owner_id=row[9],
        cancel_reason=reason_asked(row[10], row[11]),
        trace_context=row[12],
        read_at=read_at,
        sent_at=sent_at,
    )


def update_claimed_run(
    claim: Claim,
    values: dict[str, Any],
    *,
    notify: str | None = None,
    alias: str | None = None,
) -> bool:
    """Apply ``values`` to the run if the claim still holds it; return whether it did.

    ``values`` maps column to value: ``NOW`` is the database's time, JSON columns take
    JSON text. ``notify="run"`` tells waiting clients the run changed, ``"queue"`` wakes
    workers of its queue (PostgreSQL NOTIFY, delivered on commit).
    """
    d = dialect(alias)
    params: dict[str, Any] = {}
    sql = _update_sql(d, claim, values, params)
    if d.pg and notify:
        payload = "'r:' || id::text" if notify == "run" else "'q:' || queue"
        sql = notifying(d, f"{sql} RETURNING id, queue", payload, params)
        return len(execute(d, sql, params).rows) == 1
    return execute(d, sql, params).rowcount == 1


def _update_sql(d: Dialect, claim: Claim, values: dict[str, Any], params: dict[str, Any]) -> str:
    """Return the fenced ``UPDATE`` of ``update_claimed_run``, its parameters put in ``params``."""
    params.update(run=d.store_uuid(claim.run_id), token=claim.token)
    sets = []
    for column, value in values.items():
        if value is NOW:
            sets.append(f"{column} = {d.now(params)}")
            continue
        if isinstance(value, Raw):
            sets.append(f"{column} = {value.replace('NOW()', d.now(params))}")
            continue
        if isinstance(value, datetime):
            value = d.store_datetime(value)
        params[f"v_{column}"] = value
        sql_type = "jsonb" if column in _JSON_COLUMNS else None
        sets.append(f"{column} = {d.param(f'v_{column}', sql_type)}")
    return (
        f"UPDATE durable_run SET {', '.join(sets)} "
        "WHERE id = %(run)s AND lease_token = %(token)s AND status = 'running'"
    )


def released_values() -> dict[str, Any]:
    """Return the columns that end a claim: no worker, no lease, no recoveries pending."""
    return {"claimed_by": None, "lease_expires_at": None, "recoveries": 0, "updated_at": NOW}


def reason_asked(requested_at: Any, reason: Any) -> str | None:
    """Return why a run was asked to cancel, or ``None`` if it was not."""
    return None if requested_at is None else str(reason or "")


def cancel_reason(run_id: uuid.UUID, *, alias: str | None = None) -> str | None:
    """Return why the run was asked to cancel, or ``None`` if it was not."""
    d = dialect(alias)
    rows = execute(
        d,
        "SELECT cancel_requested_at, cancel_reason FROM durable_run WHERE id = %(run)s",
        {"run": d.store_uuid(run_id)},
    ).rows
    return reason_asked(*rows[0]) if rows else None
