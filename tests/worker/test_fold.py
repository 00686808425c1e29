"""A busy worker stores a run's last outcome and claims its next run in one statement
(``claims.finish_and_claim``, PostgreSQL): fenced like the outcome alone, notifying like it,
and the run it claims executed once, by the thread that stored the outcome."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_durable.core.conf import get_settings
from django_durable.models import Run, RunStatus
from django_durable.store import claims
from django_durable.store.dialect import NOW
from django_durable.worker.worker import Worker
from tests.conftest import ON_POSTGRES, serve
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not ON_POSTGRES, reason="the outcome and the claim share a statement on PostgreSQL"
    ),
]


def finish(claim: claims.Claim) -> tuple[bool, list[claims.Claim]]:
    """Complete ``claim``'s run with the result 3 (as worker w1) and claim the next run."""
    values = {
        **claims.released_values(),
        "status": RunStatus.COMPLETED,
        "result": "3",
        "finished_at": NOW,
    }
    return claims.finish_and_claim(
        claim,
        values,
        worker_id="w1",
        queues=["default"],
        lease_seconds=30,
        exclude=[claim.run_id],
        workflows=["tests.add"],
    )


def claim_one(run_id: uuid.UUID) -> claims.Claim:
    [claim] = claims.claim_runs(
        worker_id="w1", queues=["default"], limit=1, lease_seconds=30, workflows=["tests.add"]
    )
    assert claim.run_id == run_id
    return claim


def listener() -> psycopg.Connection:
    settings = connection.settings_dict
    conn = psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        autocommit=True,
    )
    conn.execute(f'LISTEN "{get_settings().NOTIFY_CHANNEL}"')
    return conn


def test_the_outcome_is_stored_and_the_next_run_claimed_together():
    first = wf.add.start(1, 2)
    second = wf.add.start(3, 4)
    claim = claim_one(uuid.UUID(first.id))
    heard = listener()
    try:
        stored, claimed = finish(claim)
        payloads = {n.payload for n in heard.notifies(timeout=2, stop_after=1)}
    finally:
        heard.close()
    assert stored
    assert [c.run_id for c in claimed] == [uuid.UUID(second.id)]
    assert claimed[0].token == 1 and claimed[0].records == {}
    assert Run.objects.get(pk=first.id).status == RunStatus.COMPLETED
    assert Run.objects.get(pk=first.id).result == 3
    taken = Run.objects.get(pk=second.id)
    assert (taken.status, taken.claimed_by, taken.lease_token) == (RunStatus.RUNNING, "w1", 1)
    assert payloads == {f"r:{first.id}"}  # a waiting result() hears the run end


def test_a_stale_token_stores_nothing_and_the_claim_still_happens():
    first = wf.add.start(1, 2)
    second = wf.add.start(3, 4)
    claim = claim_one(uuid.UUID(first.id))
    Run.objects.filter(pk=first.id).update(lease_token=claim.token + 1)  # taken over
    stored, claimed = finish(claim)
    assert not stored
    assert Run.objects.get(pk=first.id).status == RunStatus.RUNNING  # the new holder's
    assert [c.run_id for c in claimed] == [uuid.UUID(second.id)]


def test_nothing_ready_claims_nothing_and_stores_the_outcome():
    first = wf.add.start(1, 2)
    claim = claim_one(uuid.UUID(first.id))
    stored, claimed = finish(claim)
    assert stored and claimed == []
    assert Run.objects.get(pk=first.id).status == RunStatus.COMPLETED


def test_a_busy_worker_goes_from_run_to_run_through_the_outcomes_statements(monkeypatch):
    folds: list[tuple[uuid.UUID, list[uuid.UUID], bool]] = []
    real = claims.finish_and_claim

    def counting(finished: claims.Claim, values: dict[str, Any], **kwargs: Any) -> Any:
        stored, claimed = real(finished, values, **kwargs)
        folds.append((finished.run_id, [c.run_id for c in claimed], stored))
        return stored, claimed

    monkeypatch.setattr(claims, "finish_and_claim", counting)
    handles = [wf.counted.start(2) for _ in range(20)]
    worker = Worker(concurrency=1, poll_interval=0.2)
    thread = serve(worker)
    try:
        for handle in handles:
            assert handle.result(timeout=60) == 1
    finally:
        worker.request_stop()
        thread.join(30)
    ids = {uuid.UUID(handle.id) for handle in handles}
    # Each body once: no run claimed twice, none lost between its claim and its thread.
    bodies = Counter(Execution.objects.values_list("run_id", "label"))
    assert sorted(bodies.values()) == [1] * 40
    chained = [run_id for _, claimed, _ in folds for run_id in claimed]
    assert all(stored for _, _, stored in folds)
    assert len(chained) == len(set(chained)) and set(chained) <= ids
    # The loop claimed the first run; each run but the last claimed the next.
    assert len(chained) == len(ids) - 1, folds
