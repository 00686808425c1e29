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


def _waiting_keyed(d: Dialect, queues: Sequence[str], params: dict[str, Any], name: str) -> str:
    """Return the condition of a ready run of ``queues`` under a per-key limit (its key's
    room not tested)."""
    # An IN list, as in the claim: one queue is then ``queue = $1``, and the index of ready
    # keyed runs gives them in claim order (``= ANY(array)`` would read them all to sort).
    return (
        "status = 'pending' AND flow_limit IS NOT NULL "
        f"AND queue IN ({d.in_list(name, sorted(queues), params)}) "
        f"AND available_at <= {d.now(params)}"
    )


def _known(d: Dialect, workflows: Sequence[str] | None, params: dict[str, Any], name: str) -> str:
    """Return `` AND`` the workflow being one of ``workflows`` (nothing if None)."""
    if workflows is None:
        return ""
    return f" AND {d.any_of('workflow_name', name, sorted(workflows), params)}"


# How many ready keyed runs a claim reads in claim order looking for keys with room. A
# hot key (one key, its slots full, thousands of runs queued behind them) fills this head
# with runs that cannot start: past it, the keys are looked at one by one instead
# (``_keys_with_room``), so that no claim reads every run queued behind a full key.
HEAD = 64


def left_behind(
    d: Dialect,
    params: dict[str, Any],
    queues: Sequence[str],
    workflows: Sequence[str] | None,
    claimed: str,
) -> str:
    """Return SQL that is true when ready keyed runs with room may remain for a later
    claim (PostgreSQL): ready runs of ``queues`` (and ``workflows``) under a per-key limit,
    other than those the CTE ``claimed`` took, whose key has room. A claim that leaves them
    (it held none of their keys) says so, and its claimer looks for them with the next
    claim (``ready_keys``), so that an unkeyed claim costs no look of its own.

    It reads at most ``HEAD`` of them: when that many are ready, it says "maybe" without
    testing their keys, and the next claim's look goes key by key.
    """
    head = (
        "SELECT workflow_name, flow_key, flow_limit FROM durable_run "
        f"WHERE {_waiting_keyed(d, queues, params, 'kq')}{_known(d, workflows, params, 'kwf')} "
        f"AND id NOT IN (SELECT id FROM {claimed}) LIMIT {HEAD}"
    )
    # A full head first: it answers without testing a key (PostgreSQL evaluates OR in
    # order), where a full head of one hot key's runs would have its key counted 64 times.
    return (
        f"((SELECT count(*) FROM ({head}) AS crowd) >= {HEAD} OR EXISTS (SELECT 1 FROM "
        f"({head}) AS head WHERE head.flow_limit > {busy(d, 'head', params)}))"
    )


def ready_keys(
    d: Dialect, *, queues: Sequence[str], workflows: Sequence[str] | None, limit: int
) -> list[tuple[str, str]]:
    """Return the keys of ready keyed runs with room, the first in claim order first
    (PostgreSQL).

    The first ``HEAD`` ready keyed runs in claim order, through the partial index of ready
    keyed runs (when no run has a key, it is empty, and this costs a plain queue one
    look-up); as many as the look wants if that is more. If the head was full and gave
    fewer keys than wanted, the keys past it are looked at one by one (``_keys_with_room``).
    """
    probe: dict[str, Any] = {"probe": limit * PROBE_FACTOR}
    head_size = max(HEAD, limit * PROBE_FACTOR)
    head = (
        "SELECT workflow_name, flow_key, flow_limit FROM durable_run "
        f"WHERE {_waiting_keyed(d, queues, probe, 'q')} "
        f"ORDER BY priority DESC, available_at LIMIT {head_size}"
    )
    # The workflows outside: inside, the planner may join the index of all runs by workflow.
    known = "true"
    if workflows is not None:
        known = d.any_of("workflow_name", "wf", sorted(workflows), probe)
    sql = (
        f"SELECT workflow_name, flow_key, {known} AND flow_limit > {busy(d, 'head', probe)} "
        f"FROM ({head}) AS head"
    )
    keys: dict[tuple[str, str], None] = {}
    rows = execute(d, sql, probe).rows
    for workflow_name, key, startable in rows:
        if startable:
            keys[(str(workflow_name), str(key))] = None
    # A head shorter than its limit held every ready keyed run: no key lies past it.
    if len(rows) >= head_size and len(keys) < probe["probe"]:
        for found in _keys_with_room(d, queues, workflows, probe["probe"]):
            keys.setdefault(found, None)
    return list(keys)[: probe["probe"]]


def _keys_with_room(
    d: Dialect, queues: Sequence[str], workflows: Sequence[str] | None, wanted: int
) -> list[tuple[str, str]]:
    """Return up to ``wanted`` keys with room and a ready run, key by key (PostgreSQL).

    A skip scan of the index of keyed runs (``durable_run_flow_active``): one descent per
    key with pending runs, however many runs each has queued, then one look at the key's
    first ready run and one count of its running runs.
    """
    params: dict[str, Any] = {"wanted": wanted}
    pending = "status = 'pending' AND flow_key IS NOT NULL"
    first = f"SELECT flow_key, workflow_name FROM durable_run WHERE {pending}"
    sql = (
        f"WITH RECURSIVE k AS (({first} ORDER BY flow_key, workflow_name LIMIT 1) UNION ALL "
        f"SELECT next.flow_key, next.workflow_name FROM k, LATERAL ({first} "
        "AND (flow_key, workflow_name) > (k.flow_key, k.workflow_name) "
        "ORDER BY flow_key, workflow_name LIMIT 1) AS next) "
        "SELECT k.workflow_name, k.flow_key FROM k, LATERAL (SELECT flow_limit FROM durable_run "
        f"WHERE flow_key = k.flow_key AND workflow_name = k.workflow_name "
        f"AND {_waiting_keyed(d, queues, params, 'q')} LIMIT 1) AS head "
        f"WHERE head.flow_limit > {busy(d, 'k', params)}{_known(d, workflows, params, 'wf')} "
        "LIMIT %(wanted)s"
    )
    return [(str(row[0]), str(row[1])) for row in execute(d, sql, params).rows]


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
