"""The SQL of waking a run that waits for one of several things (``ctx.first_of``).

A run has one ``wake_on``. One that waits for the first of several things has ``wake_on =
'f:any'`` and a ``durable_wake_key`` row per thing, in the ``wake_on`` form (``e:<event>``,
``m:<topic>``, ``c:<child run id>``, ``cb:<callback id>``), written in the transaction
that suspends it, and replaced by its next such suspension. Whatever wakes a single wait on
a key also wakes these runs:

- an event finds them by key, through the index on ``key``, under the lock on its name;
- a message, a child's end or a callback knows its run: it locks the run row, then tests
  the run's keys in a statement of its own, whose snapshot sees a suspension that
  committed while the lock was awaited (the statement that took the lock does not).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from .dialect import Dialect, execute, notify

ANY = "f:any"  # the wake_on of a run waiting in first_of

_WAKE_SET = (
    "status = 'pending', wake_on = NULL, wake_at = NULL, waiting_for = '', "
    "available_at = {now}, updated_at = {now}"
)


def waits_on_key(run: str) -> str:
    """Return SQL true when the waiting run ``run`` (a column or parameter) waits on
    ``%(wake_on)s``, alone or among the keys of a first_of."""
    return (
        f"(wake_on = %(wake_on)s OR (wake_on = '{ANY}' AND EXISTS (SELECT 1 FROM "
        f"durable_wake_key k WHERE k.run_id = {run} AND k.key = %(wake_on)s)))"
    )


def wake_run_on(d: Dialect, run_id: uuid.UUID, key: str) -> bool:
    """Make ``run_id`` pending if it waits on ``key`` (call with the run row locked);
    return whether it did."""
    params: dict[str, Any] = {"run": d.store_uuid(run_id), "wake_on": key}
    now = d.now(params)
    rows = execute(
        d,
        f"UPDATE durable_run SET {_WAKE_SET.format(now=now)} WHERE id = %(run)s "
        f"AND status = 'waiting' AND {waits_on_key('%(run)s')} RETURNING queue",
        params,
    ).rows
    notify([f"q:{row[0]}" for row in rows], alias=d.connection.alias)
    return bool(rows)


def wake_any_of(d: Dialect, params: dict[str, Any]) -> str:
    """Return the UPDATE that wakes the first_of runs with the key ``%(wake_on)s``."""
    return (
        f"UPDATE durable_run SET {_WAKE_SET.format(now=d.now(params))} "
        f"WHERE status = 'waiting' AND wake_on = '{ANY}' AND id IN "
        "(SELECT run_id FROM durable_wake_key WHERE key = %(wake_on)s)"
    )


def replace_keys(d: Dialect, run_id: uuid.UUID, keys: Sequence[str]) -> None:
    """Make ``keys`` the run's wake keys (in the transaction that suspends it)."""
    params: dict[str, Any] = {"run": d.store_uuid(run_id)}
    execute(d, "DELETE FROM durable_wake_key WHERE run_id = %(run)s", params)
    for key in dict.fromkeys(keys):
        execute(
            d,
            "INSERT INTO durable_wake_key (run_id, key) VALUES (%(run)s, %(key)s)",
            {**params, "key": key},
        )


def clear_keys(d: Dialect, run_id: uuid.UUID) -> None:
    """Delete the run's wake keys: its first_of is over (they only take room now)."""
    execute(d, "DELETE FROM durable_wake_key WHERE run_id = %(run)s", {"run": d.store_uuid(run_id)})
