"""The engine's clock (``ctx.now()``, retry and sleep deadlines) is the database's time from
the moment of the claim, not from when a thread got to the run: a run that waited in the
worker after its claim does not see the time it waited as not passed."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from django_durable.core import clock
from django_durable.engine.operations import Clock
from django_durable.models import Run
from django_durable.worker.worker import Worker
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

HELD = 0.4  # seconds a claimed run waits in the worker before it executes


def test_a_run_executed_after_a_wait_sees_the_time_that_passed_since_its_claim():
    handle = wf.values.start()
    worker = Worker(concurrency=1)
    [claim] = worker.claim(1)
    time.sleep(HELD)  # a busy worker: the claim loop got the run, no thread is free yet
    worker.process(claim)
    after = clock.database_now()
    seen = handle.result(timeout=5)["first"][0]
    assert isinstance(seen, datetime)
    # ctx.now() was read after the wait and before ``after``: close behind it, never ahead.
    lag = (after - seen).total_seconds()
    assert 0 <= lag < HELD / 2, f"ctx.now() {lag:.3f} s behind the database"


def test_a_retry_waits_its_whole_delay_after_a_claim_that_waited():
    handle = wf.flaky.start(1, retry_after=1.0)  # fails once; retry in a second
    worker = Worker(concurrency=1)
    [claim] = worker.claim(1)
    time.sleep(HELD)
    worker.process(claim)
    after = clock.database_now()
    run = Run.objects.get(pk=handle.id)
    assert run.status == "waiting" and run.wake_at is not None
    # Due a second after the failure, which came after the wait: not HELD sooner.
    ahead = (run.wake_at - after).total_seconds()
    assert 1.0 - HELD / 2 < ahead <= 1.0, f"the retry is due {ahead:.3f} s after the attempt"


def test_the_clock_counts_a_skip_made_between_the_claim_and_its_use():
    read_at = clock.monotonic()
    base = datetime(2026, 1, 1, tzinfo=clock.now().tzinfo)
    clock.set_skipped(3600)
    try:
        moved = Clock(base, read_at).now() - base
    finally:
        clock.set_skipped(0)
    assert timedelta(hours=1) <= moved < timedelta(hours=1, seconds=5)


def test_the_clock_of_a_claim_is_never_ahead_of_the_database(monkeypatch):
    """A claim statement that reaches the database late (a busy machine, a slow network)
    must not put the engine's clock ahead: a sleep would then end before its deadline."""
    from django_durable.store import claims as stored_claims

    real = stored_claims.execute

    def late(d, sql, params):
        if "SKIP LOCKED" in sql or "UPDATE durable_run SET" in sql:
            time.sleep(HELD)  # between this process's reading of its clock and the statement
        return real(d, sql, params)

    monkeypatch.setattr(stored_claims, "execute", late)
    wf.values.start()
    [claim] = Worker(concurrency=1).claim(1)
    seen = Clock(claim.db_now, claim.read_at).now()
    after = clock.database_now()
    ahead = (seen - after).total_seconds()
    assert ahead <= 0.005, f"the engine's clock is {ahead:.3f} s ahead of the database"


def test_a_sleep_counted_from_a_claim_answered_late_lasts_its_whole_length(monkeypatch):
    """The answer to a claim can reach the worker well after the database read its time (a
    loaded machine: the thread waits for a processor). The engine's clock then runs that
    much behind, and a sleep counted from it ended that much early, by the database's
    clock: a 1 s timer of a demo ended after 0.85 s on a busy machine. Durations count
    from the latest the time can be."""
    from django_durable.store import claims as stored_claims

    real = stored_claims.execute

    def answered_late(d, sql, params):
        result = real(d, sql, params)
        if "SKIP LOCKED" in sql or "UPDATE durable_run SET" in sql:
            time.sleep(HELD)  # after the database read now(), before the worker reads its clock
        return result

    monkeypatch.setattr(stored_claims, "execute", answered_late)
    handle = wf.sleeper.start(30)
    worker = Worker(concurrency=1)
    [claim] = worker.claim(1)
    monkeypatch.undo()
    began = clock.database_now()  # before the sleep began
    worker.process(claim)
    run = Run.objects.get(pk=handle.id)
    assert run.status == "waiting" and run.wake_at is not None
    early = (began + timedelta(seconds=30) - run.wake_at).total_seconds()
    assert early <= 0, f"the sleep ends {early:.3f} s before its 30 s are up"
