"""How far behind the queues are: the age of each queue's oldest ready run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from .dialect import dialect, execute


def ready_lag(queues: Sequence[str], *, alias: str | None = None) -> dict[str, float]:
    """Return, per queue, how many seconds its oldest ready run has waited (0: none waits).

    Ready means pending and available now, whether or not a worker knows its workflow.
    """
    if not queues:
        return {}
    d = dialect(alias)
    params: dict[str, Any] = {}
    now = d.now(params)
    oldest = "EXTRACT(EPOCH FROM now() - MIN(available_at))" if d.pg else "MIN(available_at)"
    sql = (
        f"SELECT queue, {oldest} FROM durable_run WHERE status = 'pending' "
        f"AND queue IN ({d.in_list('q', list(queues), params)}) AND available_at <= {now} "
        "GROUP BY queue"
    )
    lag = dict.fromkeys(queues, 0.0)
    for queue, value in execute(d, sql, params).rows:
        if d.pg:
            lag[queue] = max(0.0, float(value))
            continue
        since = d.read_datetime(value)
        if since is not None:
            lag[queue] = max(0.0, (timezone.now() - since).total_seconds())
    return lag
