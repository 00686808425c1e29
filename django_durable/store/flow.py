"""Flow control per key: the SQL that keeps a key's runs within its limit, and start locks.

A run of a workflow with ``concurrency_key=`` (or ``singleton_key=``) carries its key and
its limit (``flow_key``, ``flow_limit``). The claim takes such a run only while fewer
than ``flow_limit`` runs of the same workflow and key run under a live lease, and ranks a
key's candidates so that one claim never takes more than the key's free slots.

On SQLite one transaction writes at a time, so the claim statement alone is enough. On
PostgreSQL two claimers could each count the same free slot and take two runs of one
key; so a claimer first takes an advisory lock per key it wants (``pg_try_advisory_xact_lock``:
a key another claimer holds is left to it, never waited for) and claims keyed runs only
of the keys it holds, in a later statement of the same transaction, whose snapshot sees
what every earlier holder committed. This is how a limited queue is claimed too
(``store.queues``), one lock per key instead of one per queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .dialect import Dialect, execute

# How many ready keyed runs the probe of a claim reads, per run it may claim (their keys
# are the ones it tries to lock).
PROBE_FACTOR = 4


def busy(d: Dialect, table: str, params: dict[str, Any]) -> str:
    """Return SQL counting the runs of ``table``'s row's key running under a live lease."""
    return (
        "(SELECT count(*) FROM durable_run AS busy WHERE busy.flow_key = "
        f"{table}.flow_key AND busy.workflow_name = {table}.workflow_name "
        f"AND busy.status = 'running' AND busy.lease_expires_at > {d.now(params)})"
    )


def room(d: Dialect, params: dict[str, Any]) -> str:
    """Return the condition a ready run of the claim meets: no limit, or its key has room
    (and on PostgreSQL, the claimer holds its key's lock)."""
    has_room = f"flow_limit > {busy(d, 'durable_run', params)}"
    if not d.pg:
        return f"(flow_limit IS NULL OR {has_room})"
    held = (
        "EXISTS (SELECT 1 FROM unnest(%(held_w)s::text[], %(held_k)s::text[]) AS held(w, k) "
        "WHERE held.w = durable_run.workflow_name AND held.k = durable_run.flow_key)"
    )
    return f"(flow_limit IS NULL OR ({held} AND {has_room}))"


def within_slots(d: Dialect, params: dict[str, Any]) -> str:
    """Return SQL picking, from the candidates ``cand``, those within their key's free slots.

    A key's candidates are ranked in claim order; the first ``flow_limit - running`` are
    taken, so that one claim never fills more slots than the key has.
    """
    rank = (
        "row_number() OVER (PARTITION BY workflow_name, flow_key "
        "ORDER BY priority DESC, available_at, id)"
    )
    return (
        f"SELECT id FROM (SELECT id, workflow_name, flow_key, flow_limit, {rank} AS flow_rank "
        "FROM cand) AS ranked WHERE flow_limit IS NULL "
        f"OR flow_rank <= flow_limit - {busy(d, 'ranked', params)}"
    )


def lock_keys(d: Dialect, params: dict[str, Any], keys: Sequence[tuple[str, str]]) -> None:
    """Take the advisory locks of the keys no other claimer holds, in this transaction;
    set the claim's ``held_w``/``held_k`` parameters to them."""
    sql = (
        "SELECT w, k FROM unnest(%(w)s::text[], %(k)s::text[]) AS wanted(w, k) "
        "WHERE pg_try_advisory_xact_lock(hashtextextended("
        "'django_durable:flow:' || length(w) || ':' || w || ':' || k, 0))"
    )
    rows = execute(d, sql, {"w": [w for w, _ in keys], "k": [k for _, k in keys]}).rows
    params["held_w"] = [str(row[0]) for row in rows]
    params["held_k"] = [str(row[1]) for row in rows]


def _ready(d: Dialect, queues: Sequence[str], params: dict[str, Any], name: str = "q") -> str:
    """Return the condition of a ready keyed run of ``queues`` whose key has room."""
    return (
        "status = 'pending' AND flow_limit IS NOT NULL "
        f"AND {d.any_of('queue', name, sorted(queues), params)} "
        f"AND available_at <= {d.now(params)} AND flow_limit > {busy(d, 'durable_run', params)}"
    )


def left_behind(
    d: Dialect,
    params: dict[str, Any],
    queues: Sequence[str],
    workflows: Sequence[str] | None,
    claimed: str,
) -> str:
    """Return SQL that is true when ready keyed runs with room remain for a later claim
    (PostgreSQL): ready runs of ``queues`` (and ``workflows``) under a per-key limit whose
    key has room, other than those the CTE ``claimed`` took. A claim that leaves them
    (it held none of their keys) says so, and its claimer looks for them with the next
    claim (``ready_keys``), so that an unkeyed claim costs no look of its own."""
    known = ""
    if workflows is not None:
        known = f" AND {d.any_of('workflow_name', 'kwf', sorted(workflows), params)}"
    return (
        f"EXISTS (SELECT 1 FROM durable_run WHERE {_ready(d, queues, params, 'kq')}{known} "
        f"AND id NOT IN (SELECT id FROM {claimed}))"
    )


def ready_keys(
    d: Dialect, *, queues: Sequence[str], workflows: Sequence[str] | None, limit: int
) -> list[tuple[str, str]]:
    """Return the keys of the first ready keyed runs with room, in claim order (PostgreSQL).

    Read through the partial index of ready keyed runs: when no run has a key, it is
    empty, and this costs a plain queue one look-up.
    """
    probe: dict[str, Any] = {"probe": limit * PROBE_FACTOR}
    sql = (
        f"SELECT workflow_name, flow_key FROM durable_run WHERE {_ready(d, queues, probe)} "
        "ORDER BY priority DESC, available_at, id LIMIT %(probe)s"
    )
    if workflows is not None:
        # Outside: inside, the planner may join the index of all runs by workflow.
        known = d.any_of("workflow_name", "wf", sorted(workflows), probe)
        sql = f"SELECT workflow_name, flow_key FROM ({sql}) AS ready WHERE {known}"
    keys: dict[tuple[str, str], None] = {}
    for row in execute(d, sql, probe).rows:
        keys[(str(row[0]), str(row[1]))] = None
    return list(keys)


def lock_start(d: Dialect, workflow_name: str, key: str) -> None:
    """Serialise the starts of one workflow and key until this transaction ends
    (PostgreSQL; SQLite writes one transaction at a time): a singleton or debounced start
    reads the key's runs and then inserts or updates one."""
    if d.pg:
        execute(
            d,
            "SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0))",
            {"lock": f"django_durable:flow-start:{len(workflow_name)}:{workflow_name}:{key}"},
        )
