"""The SQL of pruning: deleting finished runs and every row that belongs to them.

Django's deletion would fetch every run of a batch as a model (the run's own foreign keys,
``parent`` and ``forked_from``, keep it off the fast path) and spell each id out in each
statement. Here a batch is a handful of statements, each with one array of ids on
PostgreSQL (prepared once), so a prune spends little of the machine its workers share.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from .dialect import Dialect, execute

# Rows that belong to a run and go with it (their foreign key to the run cascades).
OWNED = (
    ("durable_step", "run_id"),
    ("durable_value", "run_id"),
    ("durable_stream", "run_id"),
    ("durable_message", "run_id"),
    ("durable_run_token", "run_id"),
    ("durable_wake_key", "run_id"),
    ("durable_callback", "run_id"),
)
# Rows that name a run and outlive it (their foreign key is set to NULL).
NAMING = (
    ("durable_run", "parent_id"),
    ("durable_run", "forked_from_id"),
    ("durable_event", "run_id"),
)
SQLITE_CHUNK = 500  # ids per IN list on SQLite, under its limit of bound parameters


def delete_runs(d: Dialect, run_ids: Sequence[uuid.UUID]) -> int:
    """Delete the runs ``run_ids`` and the rows they own; return how many runs went.

    Call it in a transaction that has locked the runs. Rows naming them lose the name.
    """
    ids = [d.store_uuid(run_id) for run_id in run_ids]
    for table, column in NAMING:
        _each(d, f"UPDATE {table} SET {column} = NULL WHERE {{match}}", column, ids)
    for table, column in OWNED:
        _each(d, f"DELETE FROM {table} WHERE {{match}}", column, ids)
    return _each(d, "DELETE FROM durable_run WHERE {match}", "id", ids)


def _each(d: Dialect, template: str, column: str, ids: list[Any]) -> int:
    """Run ``template`` with ``{match}`` as ``column`` among ``ids``; return the rows changed."""
    if d.pg:
        match = f"{column} = ANY(%(ids)s::uuid[])"
        return execute(d, template.format(match=match), {"ids": ids}).rowcount
    changed = 0
    for start in range(0, len(ids), SQLITE_CHUNK):
        params: dict[str, Any] = {}
        match = f"{column} IN ({d.in_list('r', ids[start : start + SQLITE_CHUNK], params)})"
        changed += execute(d, template.format(match=match), params).rowcount
    return changed
