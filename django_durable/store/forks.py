"""The SQL of forks: copying a run's first records, and what they wrote, into a new run.

A fork's records below ``from_step`` are the original's, copied as they are (a replay
returns them); so are the values and stream items those operations wrote, so that a
reader of the fork sees its progress from the start. Messages are not copied: the ones
the original took are in its copied ``recv`` records, and nothing takes them again.
"""

from __future__ import annotations

import uuid
from typing import Any

from .dialect import dialect, execute

# The columns of each table copied as they are (the run id is the fork's).
_STEP_COLUMNS = (
    "position, kind, name, status, result, error, attempts, executions, duration_ms, recorded_at"
)
_VALUE_COLUMNS = "key, value, position, created_at"
_STREAM_COLUMNS = 'key, "offset", value, closes, position, created_at'


def copy_records(
    original: uuid.UUID, fork: uuid.UUID, from_step: int, *, alias: str | None = None
) -> int:
    """Copy the original's records below ``from_step``, and the values and stream items
    they wrote, to ``fork``; return how many records were copied.

    The caller checked that every one of them is finished, and holds the original locked.
    """
    d = dialect(alias)
    params: dict[str, Any] = {
        "original": d.store_uuid(original),
        "fork": d.store_uuid(fork),
        "position": from_step,
    }
    copied = 0
    for table, columns in (
        ("durable_step", _STEP_COLUMNS),
        ("durable_value", _VALUE_COLUMNS),
        ("durable_stream", _STREAM_COLUMNS),
    ):
        # In id order: a value's history (newest wins) keeps its order in the copy.
        order = "position" if table == "durable_step" else "id"
        count = execute(
            d,
            f"INSERT INTO {table} (run_id, {columns}) SELECT %(fork)s, {columns} FROM {table} "
            f"WHERE run_id = %(original)s AND position < %(position)s ORDER BY {order}",
            params,
        ).rowcount
        if table == "durable_step":
            copied = count
    return copied
