"""A run's row locked by another transaction does not stop a worker renewing its other leases.

``durable.send()`` locks the run's row until the transaction it is in commits: inside a
view with ``ATOMIC_REQUESTS`` (or any ``transaction.atomic()``), that is the whole request.
The heartbeat renews all of a worker's leases in one statement; had it waited for that row,
the leases of every other run of the worker would have run out behind it, and those runs
been taken from a live worker and run again. On PostgreSQL it skips locked rows: the
locked run is "busy" this beat (neither renewed nor lost), the others are renewed.

SQLite writes one transaction at a time: a transaction that holds a write holds every
worker's writes, so there is nothing to skip there.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from django.db import connection

import django_durable as durable
from django_durable import Worker
from django_durable.models import Run, RunStatus
from django_durable.store import leases
from django_durable.worker.heartbeat import Heartbeat
from tests.conftest import ON_POSTGRES, wait_for
from tests.reliability._races import Holder, LockWatch, Racer
from tests.testapp import reliability_workflows as rw
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not ON_POSTGRES,
        reason="SQLite writes one transaction at a time: no row locks to skip",
    ),
]


@contextlib.contextmanager
def held_row(run_id: str) -> Iterator[None]:
    """Hold ``run_id``'s row locked, as a request that sent the run a message inside its
    transaction does, until the block ends (then commit)."""
    request = Holder("request", lambda: durable.send(run_id, "hello", topic="greetings"))
    request.wait_held()
    try:
        yield
    finally:
        request.commit()


def test_renewal_skips_a_locked_row_and_renews_the_others():
    first, second, third = wf.add.start(1, 1), wf.add.start(2, 2), wf.add.start(3, 3)
    worker = Worker()
    claims = worker.claim(3)
    Run.objects.filter(pk=third.id).update(claimed_by="someone-else")
    before = Run.objects.get(pk=first.id).lease_expires_at
    run_ids = [claim.run_id for claim in claims]
    with held_row(second.id):
        # In a thread of its own, so that a renewal that waited for the lock would not hang
        # the test: it would still be waiting when the lock is let go below.
        renewing = Racer("renewal", lambda: leases.extend_leases(worker.id, run_ids, 120))
        waited = not renewing.done.wait(30)
    renewal = renewing.join()
    assert not waited, "the renewal waited for the locked row"
    assert {str(run_id) for run_id in renewal.held} == {first.id}
    assert {str(run_id) for run_id in renewal.busy} == {second.id}
    assert Run.objects.get(pk=first.id).lease_expires_at > before
    # Once the lock is gone, the next beat renews it; the run taken by another stays lost.
    after = leases.extend_leases(worker.id, run_ids, 120)
    assert {str(run_id) for run_id in after.held} == {first.id, second.id}
    assert after.busy == frozenset()


def test_renewal_waits_for_a_row_locked_a_moment_and_renews_it(monkeypatch):
    """A run's own checkpoint locks its row (``FOR SHARE``) for a moment, many times a
    second in a busy run. The renewal waits for such a lock (``LOCK_WAIT_MS``, made long
    here so that the test's own pace cannot decide) and renews the run: skipping it, the
    heartbeat could miss a busy run beat after beat until its lease ran out."""
    monkeypatch.setattr(leases, "LOCK_WAIT_MS", 60_000)
    first, second = wf.add.start(1, 1), wf.add.start(2, 2)
    worker = Worker()
    run_ids = [claim.run_id for claim in worker.claim(2)]

    def share_lock() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM durable_run WHERE id = %s FOR SHARE", [second.id])

    checkpoint = Holder("checkpoint", share_lock)
    holder = checkpoint.wait_held()
    watch = LockWatch()
    try:
        renewing = Racer("renewal", lambda: leases.extend_leases(worker.id, run_ids, 120))
        watch.blocked("UPDATE durable_run SET lease_expires_at%", by=holder, racer=renewing)
        checkpoint.commit()
        renewal = renewing.join()
    finally:
        watch.close()
    assert {str(run_id) for run_id in renewal.held} == {first.id, second.id}
    assert renewal.busy == frozenset()


def test_the_heartbeat_neither_renews_nor_loses_a_busy_run():
    first, second = wf.add.start(1, 1), wf.add.start(2, 2)
    worker = Worker()
    claims = {str(claim.run_id): claim for claim in worker.claim(2)}
    entries = {run_id: worker._inflight[claim.run_id] for run_id, claim in claims.items()}
    until = {run_id: entry.lease_until for run_id, entry in entries.items()}
    heartbeat = Heartbeat(
        worker.id, worker._inflight, worker._lock, interval=60, lease_seconds=30, alias="default"
    )
    with held_row(second.id):
        beating = Racer("heartbeat", heartbeat.beat)
        waited = not beating.done.wait(30)
    beating.join()
    assert not waited, "the heartbeat waited for the locked row"
    assert not entries[first.id].lost and entries[first.id].lease_until > until[first.id]
    # Busy: its lease is as it was, and the run goes on.
    assert not entries[second.id].lost and entries[second.id].lease_until == until[second.id]
    heartbeat.beat()
    assert entries[second.id].lease_until > until[second.id]


@pytest.mark.slow
def test_a_worker_keeps_its_runs_while_a_request_holds_one_of_their_rows(worker_processes):
    """Two runs in one real worker (a 3 s lease, beats every second); a request holds the
    second's row for 10 s, more than three leases. The first keeps its lease all along: it
    is never taken back, its step body runs once."""
    lease = 3.0
    proc = worker_processes.start(
        "--concurrency", "2", "--lease", str(lease), "--poll-interval", "0.2"
    )
    # One step each, whose body sleeps past the hold below.
    first = rw.steps.start(1, pause=16.0)
    second = rw.steps.start(1, pause=16.0)

    def both_running() -> bool:
        runs = Run.objects.filter(pk__in=[first.id, second.id], status=RunStatus.RUNNING)
        bodies = Execution.objects.filter(run_id__in=[first.id, second.id], label="step-0")
        return runs.count() == 2 and bodies.count() == 2

    wait_for(both_running, 60, f"both runs in their step\n{worker_processes.logs()}")
    renewals = []
    with held_row(second.id):
        held_until = time.monotonic() + 10.0
        while time.monotonic() < held_until:
            renewals.append(Run.objects.get(pk=first.id).lease_expires_at)
            time.sleep(0.5)
    # The first run's lease moved on while the second's row was held...
    assert len(set(renewals)) >= 5, renewals
    assert first.result(timeout=60) == 1, worker_processes.logs()
    run = Run.objects.get(pk=first.id)
    # ... so it was never taken from its worker, and its body ran once.
    assert (run.recoveries, run.lease_token) == (0, 1), worker_processes.logs()
    assert Execution.objects.filter(run_id=first.id, label="step-0").count() == 1
    assert proc.poll() is None
    # The held run finishes too (its lease may have run out behind the lock: then it was
    # recovered, and its body ran again, as for any lease that ran out).
    assert second.result(timeout=60) == 1, worker_processes.logs()
