"""The SQL of events, messages, values and streams, and of suspending a run on a wait.

No wake-up can be lost between a run deciding to wait and something arriving:

- events: the emitter and a run suspending on that name take the same PostgreSQL advisory
  lock (per name), so one of them always sees the other's committed row;
- messages: the sender locks the run row as it inserts, and a suspending run updates
  its own row before checking for messages, so they serialise on that row.

A run waiting for the first of several things has the keys of ``wakes`` instead of one
``wake_on``; the same locks are taken for each (see ``wakes``).

SQLite runs one writing transaction at a time, which gives the same guarantee.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime
from typing import Any

from django.db import transaction

from ..core.conf import get_settings
from ..core.statuses import RunStatus
from ..exceptions import RunFinished
from . import callbacks, trees, wakes
from .checkpoints import checkpoint_sql
from .claims import update_claimed_run
from .deliveries import record_deliveries
from .dialect import Dialect, dialect, execute, notifying
from .records import Claim


@dataclasses.dataclass(frozen=True, slots=True)
class EventRow:
    """An emitted event as stored."""

    id: int
    name: str
    data: str | None
    source: str
    type: str
    time: datetime


def _lock_event_name(d: Dialect, name: str) -> None:
    """Serialise, per event name, emitters with runs that suspend waiting for it."""
    if d.pg:
        execute(
            d,
            "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))",
            {"key": f"django_durable:e:{name}"},
        )


_FINISHED = frozenset(str(status) for status in RunStatus.terminal())
_TERMINAL = ", ".join(f"'{status}'" for status in sorted(_FINISHED))

_WAKE_SET = (
    "status = 'pending', wake_on = NULL, wake_at = NULL, waiting_for = '', "
    "available_at = {now}, updated_at = {now}"
)


def _wake_update(d: Dialect, where: str, params: dict[str, Any]) -> str:
    """Return the UPDATE that makes matching waiting runs pending."""
    set_clause = _WAKE_SET.format(now=d.now(params))
    return f"UPDATE durable_run SET {set_clause} WHERE status = 'waiting' AND {where}"


def _wake_sql(d: Dialect, where: str, params: dict[str, Any]) -> str:
    """Return SQL that makes matching waiting runs pending and notifies their queues."""
    sql = _wake_update(d, where, params)
    if d.pg:
        return notifying(d, f"{sql} RETURNING queue", "'q:' || queue", params)
    return sql


# --- events ----------------------------------------------------------------------------


def insert_event(
    name: str,
    data: str | None,
    *,
    source: str = "",
    type: str = "",
    run_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    alias: str | None = None,
) -> int:
    """Store an event and wake the runs waiting for it; return its id.

    Runs in the caller's transaction: nothing is visible, and nobody is woken, until it
    commits. An ``idempotency_key`` already used returns the first event's id.
    """
    d = dialect(alias)
    with transaction.atomic(using=d.connection.alias):
        _lock_event_name(d, name)
        params: dict[str, Any] = {
            "name": name,
            "data": data,
            "source": source,
            "type": type,
            "run": None if run_id is None else d.store_uuid(run_id),
            "key": idempotency_key,
        }
        inserted = execute(
            d,
            "INSERT INTO durable_event (name, data, source, type, run_id, idempotency_key, "
            f"created_at) VALUES (%(name)s, {d.param('data', 'jsonb')}, %(source)s, %(type)s, "
            f"%(run)s, %(key)s, {d.now(params)}) ON CONFLICT (name, idempotency_key) "
            "WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
            params,
        ).rows
        if not inserted:  # emitted before under this name and key
            [(first,)] = execute(
                d,
                "SELECT id FROM durable_event WHERE name = %(name)s AND idempotency_key = %(key)s",
                params,
            ).rows
            return int(first)
        event_id = inserted[0][0]
        record_deliveries(d, int(event_id), name)
        _wake_event_waiters(d, name)
    return int(event_id)


def _wake_event_waiters(d: Dialect, name: str) -> None:
    """Make the runs waiting for event ``name`` pending: alone, or in a first_of."""
    wake: dict[str, Any] = {"wake_on": f"e:{name}"}
    if not d.pg:
        execute(d, _wake_update(d, "wake_on = %(wake_on)s", wake), wake)
        execute(d, wakes.wake_any_of(d, wake), wake)
        return
    # One round trip: the two UPDATEs touch different runs (their wake_on differs).
    wake["channel"] = get_settings().NOTIFY_CHANNEL
    sql = (
        f"WITH single AS ({_wake_update(d, 'wake_on = %(wake_on)s', wake)} RETURNING queue), "
        f"any_of AS ({wakes.wake_any_of(d, wake)} RETURNING queue) "
        "SELECT pg_notify(%(channel)s, 'q:' || queue) FROM "
        "(SELECT queue FROM single UNION ALL SELECT queue FROM any_of) AS woken"
    )
    execute(d, sql, wake)


def latest_event(name: str, after: int, *, alias: str | None = None) -> EventRow | None:
    """Return the newest event named ``name`` with an id above ``after``, if any."""
    d = dialect(alias)
    rows = execute(
        d,
        "SELECT id, name, data, source, type, created_at FROM durable_event "
        "WHERE name = %(name)s AND id > %(after)s ORDER BY id DESC LIMIT 1",
        {"name": name, "after": after},
    ).rows
    if not rows:
        return None
    row = rows[0]
    time = d.read_datetime(row[5])
    assert time is not None
    return EventRow(int(row[0]), row[1], row[2], row[3], row[4], time)


def newest_event_since(
    name: str, after: int, *, alias: str | None = None
) -> tuple[EventRow, datetime] | None:
    """Return the newest event ``name`` above ``after`` and when the first of those came."""
    newest = latest_event(name, after, alias=alias)
    if newest is None:
        return None
    d = dialect(alias)
    [(first,)] = execute(
        d,
        "SELECT created_at FROM durable_event WHERE name = %(name)s AND id > %(after)s "
        "ORDER BY id LIMIT 1",
        {"name": name, "after": after},
    ).rows
    came = d.read_datetime(first)
    assert came is not None
    return newest, came


# --- messages --------------------------------------------------------------------------


def insert_message(
    run_id: uuid.UUID,
    topic: str,
    data: str | None,
    *,
    idempotency_key: str | None = None,
    alias: str | None = None,
) -> int | None:
    """Store a message for a run and wake it if it waits on ``topic``; return the id.

    Returns ``None`` if the run does not exist; raises ``RunFinished`` if it has finished
    (nothing is stored: no ``recv`` would ever take it). The same idempotency key stores
    one message (the id of the first is returned, also once the run has finished).
    """
    d = dialect(alias)
    params: dict[str, Any] = {
        "run": d.store_uuid(run_id),
        "topic": topic,
        "data": data,
        "key": idempotency_key,
        "wake_on": f"m:{topic}",
    }
    if d.pg:
        status, message_id = _insert_message_pg(d, params)
    else:
        status, message_id = _insert_message_sqlite(d, params)
    if status is None:
        return None
    if message_id is None:  # the key was used: the first message stands
        rows = execute(
            d,
            "SELECT id FROM durable_message WHERE run_id = %(run)s AND idempotency_key = %(key)s",
            params,
        ).rows
        if not rows:  # not stored, and no key: the run had finished
            raise RunFinished(f"Run {run_id} has finished ({status}): the message is not stored.")
        message_id = rows[0][0]
    return int(message_id)


def _message_insert(d: Dialect, params: dict[str, Any], source: str) -> str:
    return (
        "INSERT INTO durable_message (run_id, topic, data, idempotency_key, created_at) "
        f"SELECT id, %(topic)s, {d.param('data', 'jsonb')}, %(key)s, {d.now(params)} "
        f"FROM {source} ON CONFLICT (run_id, idempotency_key) "
        "WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id"
    )


def _insert_message_pg(d: Dialect, params: dict[str, Any]) -> tuple[str | None, int | None]:
    """Lock the run row, insert, wake and notify: one statement, one round trip (and one
    more for a run that waits in a first_of).

    The row lock serialises the send with a suspending run (which updates its row, then
    looks for messages). The statement's snapshot may predate a suspension that committed
    while the lock was awaited, so the wake tests the *locked* row, which is the newest
    version: the UPDATE then finds its snapshot's version superseded and, under READ
    COMMITTED, re-checks the newest one against the join to ``locked`` and updates it.
    A ``status = 'waiting'`` test on the updated table itself would be made against the
    old version, and the wake-up lost.
    """
    params["channel"] = get_settings().NOTIFY_CHANNEL
    now = d.now(params)
    sql = (
        "WITH locked AS (SELECT id, status, wake_on FROM durable_run WHERE id = %(run)s "
        "FOR NO KEY UPDATE), "
        f"inserted AS ({_message_insert(d, params, f'locked WHERE status NOT IN ({_TERMINAL})')}), "
        f"woken AS (UPDATE durable_run SET {_WAKE_SET.format(now=now)} FROM locked "
        "WHERE durable_run.id = locked.id AND locked.status = 'waiting' "
        "AND locked.wake_on = %(wake_on)s RETURNING durable_run.queue), "
        "notified AS (SELECT pg_notify(%(channel)s, 'q:' || queue) FROM woken) "
        "SELECT (SELECT status FROM locked), (SELECT id FROM inserted), "
        "(SELECT count(*) FROM notified), (SELECT wake_on FROM locked)"
    )
    [(status, message_id, _, wake_on)] = execute(d, sql, params).rows
    if message_id is not None and wake_on == wakes.ANY:
        # In a first_of: its keys are tested by a statement that sees them (see wakes).
        wakes.wake_run_on(d, d.read_uuid(params["run"]), params["wake_on"])
    return status, message_id


def _insert_message_sqlite(d: Dialect, params: dict[str, Any]) -> tuple[str | None, int | None]:
    """Insert and wake in one transaction (SQLite runs one writer at a time)."""
    with transaction.atomic(using=d.connection.alias):
        found = execute(d, "SELECT status FROM durable_run WHERE id = %(run)s", params).rows
        if not found:
            return None, None
        status = str(found[0][0])
        if status in _FINISHED:
            return status, None
        inserted = execute(d, _message_insert(d, params, "durable_run WHERE id = %(run)s"), params)
        if inserted.rows:
            wake = _wake_sql(d, f"id = %(run)s AND {wakes.waits_on_key('%(run)s')}", params)
            execute(d, wake, params)
    return status, inserted.rows[0][0] if inserted.rows else None


def take_message(
    claim: Claim, topic: str, position: int, name: str, *, alias: str | None = None
) -> str | bool | None:
    """Take the oldest unconsumed message on ``topic`` for the ``recv`` at ``position``.

    The message is marked consumed in the transaction that writes the recv's fenced
    checkpoint: a worker that lost the run takes nothing. Returns the checkpoint's JSON
    text, ``None`` if no message is waiting, ``False`` if the lease was lost. On
    PostgreSQL it is one statement (one round trip), on SQLite one transaction.
    """
    d = dialect(alias)
    params: dict[str, Any] = {
        "run": d.store_uuid(claim.run_id),
        "token": claim.token,
        "topic": topic,
        "position": position,
        "name": name,
    }
    oldest = (
        "SELECT id, data FROM durable_message WHERE run_id = %(run)s AND topic = %(topic)s "
        "AND consumed_at IS NULL ORDER BY id LIMIT 1"
    )
    if d.pg:
        return _take_message_pg(d, oldest, params)
    with transaction.atomic(using=d.connection.alias):
        rows = execute(d, oldest, params).rows
        if not rows:
            return None
        message_id, data = int(rows[0][0]), rows[0][1]
        result = f'{{"id":{message_id},"message":{data if data is not None else "null"}}}'
        checkpoint = {**params, "kind": "recv", "status": "completed", "result": result}
        checkpoint.update(error=None, attempts=1, duration=None)
        if execute(d, checkpoint_sql(d, checkpoint), checkpoint).rowcount != 1:
            return False
        params.update(id=message_id)
        execute(
            d,
            f"UPDATE durable_message SET consumed_at = {d.now(params)}, "
            "consumed_position = %(position)s WHERE id = %(id)s",
            params,
        )
        return result


def _take_message_pg(d: Dialect, oldest: str, params: dict[str, Any]) -> str | bool | None:
    now = d.now(params)
    sql = (
        f"WITH message AS ({oldest} FOR UPDATE), "
        "fenced AS (INSERT INTO durable_step (run_id, position, kind, name, status, result, "
        "attempts, recorded_at) SELECT r.id, %(position)s::integer, 'recv', %(name)s::varchar, "
        "'completed', jsonb_build_object('id', message.id, 'message', message.data), 1, "
        f"{now} "
        "FROM durable_run r, message WHERE r.id = %(run)s AND r.lease_token = %(token)s "
        "AND r.status = 'running' FOR SHARE OF r "
        "ON CONFLICT (run_id, position) DO UPDATE SET status = excluded.status, "
        "result = excluded.result, error = NULL, attempts = excluded.attempts, "
        "recorded_at = excluded.recorded_at "
        "WHERE durable_step.status IN ('retrying', 'waiting') RETURNING result), "
        f"consumed AS (UPDATE durable_message SET consumed_at = {now}, "
        "consumed_position = %(position)s FROM message, fenced "
        "WHERE durable_message.id = message.id RETURNING durable_message.id) "
        "SELECT (SELECT count(*) FROM message), (SELECT result FROM fenced), "
        "(SELECT count(*) FROM consumed)"
    )
    [(found, result, _)] = execute(d, sql, params).rows
    if not found:
        return None
    if result is None:
        return False
    return result if isinstance(result, str) else json.dumps(result)


def oldest_message(
    run_id: uuid.UUID, topic: str, *, alias: str | None = None
) -> tuple[int, str | None, datetime] | None:
    """Return the id, data and time of the oldest message ``recv(topic)`` would take."""
    d = dialect(alias)
    rows = execute(
        d,
        "SELECT id, data, created_at FROM durable_message WHERE run_id = %(run)s "
        "AND topic = %(topic)s AND consumed_at IS NULL ORDER BY id LIMIT 1",
        {"run": d.store_uuid(run_id), "topic": topic},
    ).rows
    if not rows:
        return None
    data = rows[0][1]
    sent = d.read_datetime(rows[0][2])
    assert sent is not None
    return (
        int(rows[0][0]),
        data if data is None or isinstance(data, str) else json.dumps(data),
        sent,
    )


def consume_message(message_id: int, position: int, *, alias: str | None = None) -> bool:
    """Mark a message taken by the operation at ``position``; ``False`` if it was taken.

    Call it in the transaction that writes that operation's fenced checkpoint.
    """
    d = dialect(alias)
    params: dict[str, Any] = {"id": message_id, "position": position}
    sql = (
        f"UPDATE durable_message SET consumed_at = {d.now(params)}, "
        "consumed_position = %(position)s WHERE id = %(id)s AND consumed_at IS NULL"
    )
    return execute(d, sql, params).rowcount == 1


def _has_message(d: Dialect, run_id: uuid.UUID, topic: str) -> bool:
    return bool(
        execute(
            d,
            "SELECT 1 FROM durable_message WHERE run_id = %(run)s AND topic = %(topic)s "
            "AND consumed_at IS NULL LIMIT 1",
            {"run": d.store_uuid(run_id), "topic": topic},
        ).rows
    )


# --- suspending on a wait --------------------------------------------------------------


def suspend_waiting(
    claim: Claim,
    values: dict[str, Any],
    *,
    wake_on: str,
    floor: int = 0,
    keys: tuple[tuple[str, int], ...] = (),
    alias: str | None = None,
) -> bool | None:
    """Suspend a claimed run until ``wake_on`` arrives, unless it already has.

    ``wake_on`` is ``e:<event name>``, ``m:<message topic>``, ``c:<child run id>`` or
    ``cb:<callback id>``; or ``f:any`` for the first of ``keys``, ``(wake_on, floor)``
    pairs (``ctx.first_of``), which become the run's wake keys.

    ``values`` are the columns of the waiting run. Returns ``True`` if the run now waits,
    ``None`` if what it waits for arrived meanwhile (the run is pending again, to be
    replayed at once), ``False`` if this worker no longer held the run.
    """
    d = dialect(alias)
    waits = list(keys) if wake_on == wakes.ANY else [(wake_on, floor)]
    with transaction.atomic(using=d.connection.alias):
        # Always in the same order: two runs suspending on the same names cannot deadlock.
        for name in sorted({key[2:] for key, _ in waits if key.startswith("e:")}):
            _lock_event_name(d, name)
        if not update_claimed_run(claim, {**values, "wake_on": wake_on}, alias=alias):
            return False
        if wake_on == wakes.ANY:
            wakes.replace_keys(d, claim.run_id, [key for key, _ in waits])
        if not any(_arrived(d, claim, key, after) for key, after in waits):
            return True
        wake: dict[str, Any] = {"run": d.store_uuid(claim.run_id), "wake_on": wake_on}
        execute(d, _wake_sql(d, "id = %(run)s AND wake_on = %(wake_on)s", wake), wake)
    return None


def _arrived(d: Dialect, claim: Claim, key: str, floor: int) -> bool:
    """Return whether what ``key`` names is there (checked after the run row is updated)."""
    kind, _, name = key.partition(":")
    if kind == "e":
        return latest_event(name, floor, alias=d.connection.alias) is not None
    if kind == "c":  # the child locks this run before it writes its end
        return trees.child_finished(d, uuid.UUID(name))
    if kind == "cb":  # whoever settles it locks this run first, too
        return callbacks.settled(d, uuid.UUID(name))
    return _has_message(d, claim.run_id, name)
