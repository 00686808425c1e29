"""SIGTERM drains a worker: it stops claiming, finishes or hands back what it holds, exits 0.

Runs have six steps: plain ones (a body that records itself and sleeps) at even positions,
atomic ones at odd positions, so a signal almost always lands inside a step with another to
come, where the run is handed back.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter

import pytest
from django.db import transaction

from django_durable.models import Run, RunStatus, Step
from tests.reliability.conftest import db_now, executions, report, wait_for
from tests.testapp import reliability_workflows as rw
from tests.testapp.models import Execution, SideEffect

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STEPS = 6
CONCURRENCY = 2


def start_runs(count: int, pause: float, steps: int = STEPS) -> list[str]:
    with transaction.atomic():
        return [rw.steps.start(steps, pause).id for _ in range(count)]


def exit_code(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker {proc.pid} did not exit within {timeout}s") from None


def test_sigterm_stops_claiming_and_finishes_or_hands_back_every_run(worker_pool):
    ids = start_runs(20, pause=0.2)
    args = ("--concurrency", str(CONCURRENCY), "--poll-interval", "0.1")
    pool = worker_pool(1, *args).start()
    proc = pool.slots[0]
    wait_for(lambda: Run.objects.filter(status=RunStatus.COMPLETED).count() >= 3, 60)
    signalled_at = db_now()
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert exit_code(proc, 60) == 0, pool.logs()
    drain_seconds = time.monotonic() - started
    runs = list(Run.objects.values("status", "lease_token", "claimed_by", "started_at"))
    claimed_after = [
        r["started_at"] for r in runs if r["started_at"] and r["started_at"] > signalled_at
    ]
    released = [r for r in runs if r["status"] == RunStatus.PENDING and r["lease_token"] > 0]
    untouched = [r for r in runs if r["lease_token"] == 0]
    statuses = Counter(r["status"] for r in runs)
    report(
        "drain",
        runs=len(ids),
        drain_seconds=drain_seconds,
        claimed_after_signal=len(claimed_after),
        completed=statuses[RunStatus.COMPLETED],
        handed_back=len(released),
        never_claimed=len(untouched),
    )
    # It stopped claiming: at most the claim round under way when the signal came.
    assert len(claimed_after) <= CONCURRENCY
    assert untouched  # work was left, and it did not take it
    # Nothing is left running: each run it held completed or was handed back, free.
    assert statuses[RunStatus.RUNNING] == 0
    assert all(r["claimed_by"] is None for r in runs)
    assert set(statuses) <= {RunStatus.COMPLETED, RunStatus.PENDING}
    # Another worker finishes everything; no step body ran twice across the hand-back.
    second = worker_pool(1, *args, "--burst").start()
    assert exit_code(second.slots[0], 120) == 0, second.logs()
    assert Counter(Run.objects.values_list("status", flat=True)) == {RunStatus.COMPLETED: 20}
    ran = executions()
    assert len(ran) == 20 * (STEPS // 2) and set(ran.values()) == {1}
    effects = Counter(SideEffect.objects.values_list("run_id", "label"))
    assert len(effects) == 20 * (STEPS // 2) and set(effects.values()) == {1}
    assert Run.objects.exclude(recoveries=0).count() == 0


def test_a_run_handed_back_on_sigterm_is_resumed_at_once_by_an_idle_worker(worker_pool):
    # A long lease: a run resumed before it could expire was resumed because it was handed
    # back, not because its lease ran out.
    lease = 30.0
    steps = 40  # long runs: still going once the idle worker is up
    ids = start_runs(CONCURRENCY, pause=0.3, steps=steps)
    args = ("--concurrency", str(CONCURRENCY), "--poll-interval", "0.1", "--lease", str(lease))
    draining = worker_pool(1, *args).start()
    proc = draining.slots[0]
    wait_for(lambda: Run.objects.filter(status=RunStatus.RUNNING).count() == CONCURRENCY, 60)
    # Frozen while the idle worker starts (seconds on a loaded machine): the runs must still
    # have steps left when the signal comes. The 30 s lease outlasts the freeze.
    draining.pause(proc)
    idle = worker_pool(1, *args).start()
    idle.wait_registered()
    time.sleep(1.0)  # let it finish starting up and go idle
    draining.resume(proc)
    # Signal while both runs are inside a step body, with steps left to run.
    bodies = Execution.objects.count()
    wait_for(lambda: Execution.objects.count() >= bodies + CONCURRENCY, 60)
    proc.send_signal(signal.SIGTERM)
    assert exit_code(proc, 60) == 0, draining.logs()
    wait_for(lambda: Run.objects.filter(status=RunStatus.COMPLETED).count() == CONCURRENCY, 60)
    latencies = []
    for run_id in ids:
        # From the last checkpoint of the draining worker (just before the hand-back) to
        # the first step body the idle worker started for the run.
        last = Step.objects.filter(run_id=run_id, result=proc.pid).order_by("-position").first()
        first = Execution.objects.filter(run_id=run_id).exclude(pid=proc.pid).order_by("id").first()
        assert last is not None and first is not None
        # Handed back between two steps: the draining worker wrote the first records, the
        # idle one all the others.
        pids = list(
            Step.objects.filter(run_id=run_id).order_by("position").values_list("result", flat=True)
        )
        assert pids == [proc.pid] * (last.position + 1) + [first.pid] * (steps - last.position - 1)
        assert last.position < steps - 1
        latencies.append((first.created_at - last.recorded_at).total_seconds())
    report(
        "drain-resume",
        runs=len(ids),
        lease=lease,
        resume_seconds_max=max(latencies),
        resume_seconds_min=min(latencies),
    )
    # Resumed by the hand-back, long before a lease could have expired ...
    assert max(latencies) < lease
    assert Run.objects.exclude(recoveries=0).count() == 0
    # ... from the records: no step body ran twice.
    assert set(executions().values()) == {1}
    assert idle.stop() == [0]
