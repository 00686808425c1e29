"""A claim hands the engine each run's records, and reads ready runs in the index's order.

The worker's loop claims one batch at a time, and a batch woken by one event is made of
resumed runs: on PostgreSQL their records come back in the claim's own statement (a second
round trip would cost every woken run); SQLite reads them in a second query. Either way
they are the records ``load_steps`` reads.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import django_durable as durable
from django_durable import Worker
from django_durable.models import Run, RunStatus
from django_durable.store import claims as claims_module
from django_durable.store.checkpoints import load_steps
from django_durable.store.claims import claim_runs
from django_durable.testing import run_ready
from tests.conftest import ON_POSTGRES, wait_for
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def claim(limit: int = 10) -> dict[str, Any]:
    """Claim up to ``limit`` ready runs; return the claims by run id (text)."""
    found = claim_runs(worker_id="w", queues=["default"], limit=limit, lease_seconds=30)
    return {str(c.run_id): c for c in found}


@contextmanager
def statements() -> Iterator[list[str]]:
    """Catch every statement sent: the store's own psycopg cursors on PostgreSQL (they
    bypass Django's query log), Django's cursors on SQLite."""
    if not ON_POSTGRES:
        with CaptureQueriesContext(connection) as caught:
            sent: list[str] = []
            yield sent
        sent.extend(query["sql"] for query in caught.captured_queries)
        return
    sent = []
    original = psycopg.Cursor.execute

    def execute(self: psycopg.Cursor, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(query if isinstance(query, str) else query.as_string(self))
        return original(self, query, *args, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


def reads_of_steps(sent: list[str]) -> list[str]:
    return [sql for sql in sent if re.search(r"\bdurable_step\b", sql)]


def test_a_claim_hands_each_resumed_run_its_records_and_new_runs_none():
    twice = wf.waits_twice.start("claims/go")  # records: one wait taken, one waiting
    once = wf.waits_event.start("claims/other")  # records: one waiting
    run_ready()
    assert set(Run.objects.values_list("status", flat=True)) == {RunStatus.WAITING}
    durable.emit_event("claims/go", 1)
    run_ready()  # takes the first, waits for a second
    durable.emit_event("claims/go", 2)
    durable.emit_event("claims/other", 3)
    new = wf.add.start(1, 2)
    expected = {run_id: load_steps(uuid.UUID(run_id)) for run_id in (twice.id, once.id)}
    assert [len(expected[twice.id]), len(expected[once.id])] == [2, 1]
    with statements() as sent:
        claims = claim()
    assert set(claims) == {str(twice.id), str(once.id), str(new.id)}
    for run_id, records in expected.items():
        assert claims[str(run_id)].records == records
        assert list(claims[str(run_id)].records) == sorted(records)  # in position order
    assert claims[str(new.id)].records == {}
    # One read of the records for the batch: PostgreSQL's is the claim itself.
    [claim_sql] = [sql for sql in sent if sql.startswith("WITH cand AS (")]
    [read] = reads_of_steps(sent)
    assert (read == claim_sql) == ON_POSTGRES, sent


def test_a_claim_of_new_runs_only_reads_no_records():
    runs = [wf.add.start(n, n) for n in range(3)]
    with statements() as sent:
        claims = claim()
    assert set(claims) == {str(run.id) for run in runs}
    assert all(c.records == {} for c in claims.values())
    assert len(reads_of_steps(sent)) == (1 if ON_POSTGRES else 0), sent  # PG: the claim's


def test_a_fork_is_claimed_with_the_records_copied_from_its_source():
    source = wf.waits_twice.start("claims/fork")
    run_ready()
    durable.emit_event("claims/fork", 1)
    run_ready()
    durable.emit_event("claims/fork", 2)
    run_ready()
    assert source.result(timeout=1) == [1, 2]
    fork = durable.fork(source.id, from_step=1)
    [(run_id, found)] = claim().items()
    assert run_id == str(fork.id)
    assert found.attempt == 1 and found.token == 1  # never claimed before: a fork
    assert found.records == load_steps(uuid.UUID(fork.id))
    assert list(found.records) == [0]


def test_runs_woken_together_are_all_claimed_however_many_tie():
    # One emission makes every waiter ready at one time: the claim orders by priority and
    # age only (a tie-break by id would sort the whole batch at every claim), so the ties
    # come in the index's order: every run is claimed once, in batches of the limit.
    handles = [wf.waits_event.start("claims/tie") for _ in range(9)]
    run_ready()
    durable.emit_event("claims/tie", "go")
    assert len(set(Run.objects.values_list("available_at", flat=True))) == 1
    batches = [claim(limit=4) for _ in range(4)]
    assert [len(batch) for batch in batches] == [4, 4, 1, 0]
    claimed = [run_id for batch in batches for run_id in batch]
    assert sorted(claimed) == sorted(str(h.id) for h in handles)


# --- a claim that raced another claim ------------------------------------------------------

NAP_KEY = 4_747_001  # an advisory lock the claim below waits for, after its snapshot


def napping_claim(original: Any) -> Any:
    """Return ``claims.execute`` that parks the claim statements of other threads on an
    advisory lock once their snapshot is taken, before they read the ready runs."""
    caller = threading.get_ident()  # this thread's claims (the other worker's) never nap

    def execute(d: Any, sql: str, params: dict[str, Any]) -> Any:
        if threading.get_ident() != caller and sql.startswith("WITH cand AS ("):
            nap = f"nap AS MATERIALIZED (SELECT pg_advisory_lock_shared({NAP_KEY}) AS napped)"
            sql = sql.replace("WITH cand AS (", f"WITH {nap}, cand AS (", 1)
            sql = sql.replace(
                " ORDER BY priority DESC",
                " AND EXISTS (SELECT 1 FROM nap) ORDER BY priority DESC",
                1,
            )
        return original(d, sql, params)

    return execute


@pytest.mark.skipif(
    not ON_POSTGRES, reason="SQLite writes one transaction at a time: claims cannot overlap"
)
def test_a_run_claimed_and_handed_back_while_a_claim_ran_gets_its_newest_records(monkeypatch):
    handle = wf.waits_twice.start("claims/race")
    run_ready()
    durable.emit_event("claims/race", 1)
    run_id = uuid.UUID(handle.id)
    assert list(load_steps(run_id)) == [0]  # the first wait, waiting
    monkeypatch.setattr(claims_module, "execute", napping_claim(claims_module.execute))
    sql("SELECT pg_advisory_lock(%s)", [NAP_KEY])  # held by this session until unlocked
    found: dict[str, Any] = {}

    def claim_in_the_window() -> None:
        try:
            found.update(claim())
        finally:
            connection.close()

    claimer = threading.Thread(target=claim_in_the_window)
    claimer.start()
    try:
        wait_for(parked, 20, "the claim parked after its snapshot")
        # Meanwhile another worker claims the run, takes the first event and waits again,
        # and the run is ready again at a time before the parked claim's start (a timer
        # due by a clock behind the database's would be; an event's wake-up is later).
        assert Worker(concurrency=1).run_once() == 1
        assert list(load_steps(run_id)) == [0, 1]
        Run.objects.filter(pk=run_id).update(
            status=RunStatus.PENDING, available_at=timezone.now() - timedelta(hours=1)
        )
    finally:
        sql("SELECT pg_advisory_unlock(%s)", [NAP_KEY])
        claimer.join(30)
    [(claimed_id, taken)] = found.items()
    assert claimed_id == str(run_id)
    assert taken.token == 3  # after the other worker's claim
    # Not the records the parked claim's snapshot saw ({0: waiting}): the newest.
    assert taken.records == load_steps(run_id)
    assert list(taken.records) == [0, 1]


def sql(query: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return list(cursor.fetchall())


def parked() -> bool:
    """Return whether the claim waits for the advisory lock (its snapshot is taken)."""
    [(waiting,)] = sql(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND wait_event = 'advisory' AND query LIKE %s",
        ["%pg_advisory_lock_shared%"],
    )
    return waiting == 1
