"""Queue limits: concurrency across workers, and rate limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection

from django_durable import Worker
from django_durable.models import Run, RunStatus
from tests.conftest import ON_POSTGRES, wait_for
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)
ONLY_ON_POSTGRES = pytest.mark.skipif(
    not ON_POSTGRES, reason="SQLite has no queue lock: it runs one writing transaction at a time"
)


def test_a_concurrency_limit_holds_across_workers():
    for _ in range(3):
        wf.exclusive.start(0)
    first, second = Worker(queues=["single"], concurrency=4), Worker(queues=["single"])
    assert len(first.claim(4)) == 1  # the queue allows one running run
    assert second.claim(4) == []  # another worker gets nothing while it runs
    Run.objects.filter(status=RunStatus.RUNNING).update(status=RunStatus.COMPLETED)
    assert len(second.claim(4)) == 1


def test_a_rate_limit_counts_runs_started_in_the_window():
    for _ in range(5):
        wf.rated.start()
    worker = Worker(queues=["rated"], concurrency=10)
    assert len(worker.claim(10)) == 2  # "2/s"
    assert Worker(queues=["rated"]).claim(10) == []


def test_queues_without_limits_are_claimed_together_with_limited_ones():
    wf.exclusive.start(0)
    wf.exclusive.start(0)
    wf.add.start(1, 1)
    claims = Worker(queues=["default", "single"], concurrency=5).claim(5)
    assert sorted(c.workflow_name for c in claims) == ["tests.add", "tests.exclusive"]


@contextmanager
def queue_lock_held(queue: str) -> Iterator[None]:
    """Hold a limited queue's claim lock from another session, as a claimer that stalled
    inside its claim (a frozen process) would, until the block ends."""
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=False) as holder:
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"django_durable:queue:{queue}"],
        )
        try:
            yield
        finally:
            holder.rollback()


@ONLY_ON_POSTGRES
def test_a_claimer_stalled_on_a_queue_lock_does_not_stall_the_other_queues():
    ready = wf.add.start(1, 1)
    wf.rated.start()
    worker = Worker(queues=["default", "rated"], concurrency=4)
    claimed: list[str] = []

    def claim() -> None:
        try:
            claimed.extend(str(claim.run_id) for claim in worker.claim(4))
        finally:
            connection.close()  # the thread's own

    with queue_lock_held("rated"):
        # In a thread, so that a claim that waits for the lock fails the test, not hangs it.
        thread = threading.Thread(target=claim, daemon=True)
        thread.start()
        thread.join(30)
        assert not thread.is_alive(), "the claim waited for the stalled claimer's lock"
    assert claimed == [ready.id]  # the rated run is left to the next round
    [rated] = worker.claim(4)  # the lock is free: the rated run is claimed
    assert rated.workflow_name == "tests.rated"


@ONLY_ON_POSTGRES
def test_a_worker_process_goes_on_while_another_claimer_holds_a_queue_lock(worker_processes):
    with queue_lock_held("rated"):
        proc = worker_processes.start("-q", "default", "-q", "rated", "--poll-interval", "0.1")
        run = wf.add.start(2, 3)
        wait_for(
            lambda: Run.objects.get(id=run.id).status == RunStatus.COMPLETED,
            60,
            f"the run of the free queue\n{worker_processes.logs()}",
        )
        rated = wf.rated.start()
        wait_for(lambda: Run.objects.get(id=run.id).result == 5, 5)
        assert Run.objects.get(id=rated.id).status == RunStatus.PENDING  # the lock is held
    wait_for(
        lambda: Run.objects.get(id=rated.id).status == RunStatus.COMPLETED,
        60,
        "the rated run, once the lock is free",
    )
    assert proc.poll() is None
