"""Event-triggered workflows with real worker processes racing to dispatch."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

import django_durable as durable
from django_durable.models import Run, RunStatus, TriggerDelivery
from tests.conftest import ON_POSTGRES, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--poll-interval", "0.1", "--lease", "1")


def completed(name: str) -> int:
    return Run.objects.filter(workflow_name=name, status=RunStatus.COMPLETED).count()


def test_100_events_in_batches_of_10_with_3_workers_make_exactly_10_runs(worker_processes):
    for _ in range(3):
        worker_processes.start(*FAST)
    emitted: list[int] = []
    lock = threading.Lock()

    def emit(first: int) -> None:
        try:
            for n in range(first, first + 25):
                event_id = durable.emit_event("tests/batch", {"n": n})
                with lock:
                    emitted.append(event_id)
        finally:
            connection.close()

    # Four emitters: their commits interleave, and ids may commit out of order.
    emitters = [threading.Thread(target=emit, args=(n * 25,)) for n in range(4)]
    for thread in emitters:
        thread.start()
    for thread in emitters:
        thread.join()
    assert len(emitted) == 100
    wait_for(lambda: completed("tests.on_batch") >= 10, 60, "10 batches completed")
    wait_for(lambda: not Run.objects.active().exists(), 10, "no run left active")
    runs = list(Run.objects.filter(workflow_name="tests.on_batch"))
    batches = [durable.get_run(run.id).result(timeout=1)["events"] for run in runs]
    ids = [[event["id"] for event in batch] for batch in batches]
    print(f"\n[triggers] events=100 runs={len(runs)} batch sizes={sorted(map(len, ids))}")
    assert len(runs) == 10, worker_processes.logs()
    assert all(batch == sorted(batch) and len(batch) == 10 for batch in ids)
    assert sorted(event for batch in ids for event in batch) == sorted(emitted)
    assert not TriggerDelivery.objects.exists()


@pytest.mark.skipif(not ON_POSTGRES, reason="LISTEN/NOTIFY exists only on PostgreSQL")
def test_a_notification_dispatches_at_once_between_polls(worker_processes):
    worker_processes.start("--poll-interval", "30")
    # The worker's first maintenance round happens at start; after it, it polls every 30 s.
    wait_for(lambda: "serving" in worker_processes.logs(), 20, "the worker started")
    durable.emit_event("tests/order", 1)
    wait_for(lambda: completed("tests.on_order") == 1, 10, "the triggered run completed")
