"""Claiming stays an index scan of ready rows however many finished runs pile up.

The statement explained is the one ``claims.claim_runs`` sends, with its parameters: the
test catches it on its way to the database (``claims.execute``) and asks the database for
its plan instead (PostgreSQL: ``EXPLAIN (FORMAT JSON)``; SQLite: ``EXPLAIN QUERY PLAN``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_durable.models import Run, RunStatus
from django_durable.store import claims
from django_durable.store.dialect import Result
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.django_db(transaction=True)

# A worker that knows 50 workflows: the names filter the rows the index yields.
WORKFLOWS = ["tests.add", *(f"tests.other_{n}" for n in range(49))]


def analyze_runs() -> None:
    """Give the planner the table's statistics (and on PostgreSQL, vacuum it first).

    The test server's autovacuum is off, and the indexes keep the dead entries that earlier
    tests on this database left since its last truncation. The two indexes a plain claim
    may use (``durable_run_ready`` and ``durable_run_ready_plain``) cost nearly the same,
    so their sizes decide: once, in ``make test``, the plain claim's plan took the other.
    """
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE durable_run" if ON_POSTGRES else "ANALYZE durable_run")


def claim_statement(
    monkeypatch: pytest.MonkeyPatch, *, keyed: bool = False
) -> tuple[str, dict[str, Any]]:
    """Return the claim statement and parameters of ``claim_runs``, without running it.

    With ``keyed``, the claim has found a key with room and holds its lock (PostgreSQL).
    """
    sent: list[tuple[str, dict[str, Any]]] = []

    def catch(d: Any, sql: str, params: dict[str, Any]) -> Result:
        sent.append((sql, dict(params)))
        return Result([], 0)

    monkeypatch.setattr(claims, "execute", catch)
    if keyed:
        found = [("tests.flow_one", "acme")]
        monkeypatch.setattr(claims.flow, "ready_keys", lambda *args, **kwargs: found)
    claims.claim_runs(
        worker_id="worker-1",
        queues=["default"],
        limit=4,
        lease_seconds=30,
        exclude=[uuid.uuid4()],  # a run in flight: the worker never claims its own again
        workflows=WORKFLOWS,
    )
    monkeypatch.undo()
    [(sql, params)] = sent
    assert sql.startswith("WITH cand AS (")
    return sql, params


def pg_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from pg_nodes(child)


def ready_index(keyed: bool) -> str:
    """The index a claim reads: on PostgreSQL a claim that holds no key's lock reads only
    the runs under no per-key limit."""
    return "durable_run_ready" if keyed or not ON_POSTGRES else "durable_run_ready_plain"


def assert_pg_plan(sql: str, params: dict[str, Any], index: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        value = cursor.fetchone()[0]
    [plan] = json.loads(value) if isinstance(value, str) else value
    nodes = list(pg_nodes(plan["Plan"]))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], json.dumps(plan, indent=1)
    [cand] = [n for n in nodes if n.get("Subplan Name") == "CTE cand"]
    in_cand = list(pg_nodes(cand))
    ready = [
        n
        for n in in_cand
        if n["Node Type"] in ("Index Scan", "Index Only Scan")
        and n.get("Relation Name") == "durable_run"
        and n.get("Index Name") == index
    ]
    assert ready, json.dumps(cand, indent=1)
    # The index yields the candidates in the claim's order (priority, then age): nothing
    # is sorted, not even the ties (the runs one event woke share one available_at).
    sorts = [n for n in in_cand if "Sort" in n["Node Type"]]
    assert not sorts, json.dumps(cand, indent=1)


def assert_sqlite_plan(sql: str, params: dict[str, Any], index: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        rows = cursor.fetchall()
    text = "\n".join(str(row) for row in rows)
    details = {row[0]: row[3] for row in rows}
    parents = {row[0]: row[1] for row in rows}

    def under(node: int, ancestor: int) -> bool:
        while node in parents:
            node = parents[node]
            if node == ancestor:
                return True
        return False

    [cand] = [
        n for n, detail in details.items() if detail in ("CO-ROUTINE cand", "MATERIALIZE cand")
    ]
    in_cand = [details[node] for node in details if under(node, cand)]
    assert f"SEARCH durable_run USING INDEX {index} (queue=?)" in in_cand, text
    # The index yields the claim's order, ties included: nothing is sorted.
    assert not [d for d in in_cand if "TEMP B-TREE" in d], text
    assert not [d for d in details.values() if d.startswith("SCAN durable_run")], text


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
def test_the_claim_query_uses_the_partial_index_of_ready_runs(monkeypatch, keyed):
    now = timezone.now()
    Run.objects.bulk_create(
        Run(workflow_name="tests.add", status=RunStatus.COMPLETED, finished_at=now, input={})
        for _ in range(20_000)
    )
    Run.objects.bulk_create(Run(workflow_name="tests.add", input={}) for _ in range(5))
    analyze_runs()
    sql, params = claim_statement(monkeypatch, keyed=keyed)
    if ON_POSTGRES:
        assert_pg_plan(sql, params, ready_index(keyed))
    else:
        assert_sqlite_plan(sql, params, ready_index(keyed))


def test_the_claim_reads_runs_woken_together_in_index_order_without_sorting_them(monkeypatch):
    # One emission makes all its waiters ready at one time: a tie of the whole batch.
    woken_at = timezone.now()
    Run.objects.bulk_create(
        Run(workflow_name="tests.add", input={}, available_at=woken_at, lease_token=1)
        for _ in range(5_000)
    )
    # PostgreSQL's autovacuum would analyze it. SQLite never analyzes on its own: told
    # that every row shares one queue and priority, its planner skip-scans the index and
    # sorts (as it did with a tie-break by id, analyzed or not).
    if ON_POSTGRES:
        analyze_runs()
    sql, params = claim_statement(monkeypatch)
    if ON_POSTGRES:
        assert_pg_plan(sql, params, ready_index(False))
    else:
        assert_sqlite_plan(sql, params, ready_index(False))
