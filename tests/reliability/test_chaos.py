"""Kill -9 chaos: worker processes SIGKILLed and restarted, one a second, while they work.

Every run has plain steps (their bodies write an ``Execution`` row, committed at once, so
every try is counted, and return the pid, so the checkpoint says who wrote it) and atomic
steps (a ``SideEffect`` row written in the checkpoint's transaction). What must hold:

- no run is lost: all of them complete, none is left behind;
- exactly one checkpoint per step, at dense positions;
- atomic steps' writes exist exactly once;
- a step body runs again only because the worker running it was killed: every execution
  of a body but one is by a killed process, and the bodies that ran again number no more
  than the claims that kills cut short, which are at most kills times concurrency.

So a body runs at most once per kill that cuts it short. Usually that means twice at most,
but the takeover worker can be killed too while it runs the same step again (the kills
come every second, whoever is working). Then the body runs a third time. The report
counts those bodies; an engine that delivers at least once cannot rule them out.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import pytest
from django.db import transaction
from django.db.models import Count, Max, Min, Sum

from django_durable.models import Run, RunStatus, Step
from tests.reliability.conftest import ON_POSTGRES, WorkerPool, executions, report
from tests.testapp import reliability_workflows as rw
from tests.testapp.models import SideEffect

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS = 4
CONCURRENCY = 4


def start_runs(count: int, steps: int, pause: float) -> None:
    with transaction.atomic():  # one commit: the workers see them all at once
        for _ in range(count):
            rw.steps.start(steps, pause)


def chaos(
    make_pool, *, name: str, runs: int, steps: int, pause: float, lease: float, timeout: float
) -> None:
    start_runs(runs, steps, pause)
    pool: WorkerPool = make_pool(
        WORKERS,
        "--concurrency",
        str(CONCURRENCY),
        "--lease",
        str(lease),
        "--poll-interval",
        "0.1",
        # Kills are the point here: never fail a run for losing its worker too often.
        settings={"MAX_RECOVERIES": 1_000_000},
    )
    started = time.monotonic()
    pool.start()
    kills = pool.chaos(until=lambda: not Run.objects.active().exists(), timeout=timeout)
    seconds = time.monotonic() - started
    assert pool.stop() == [0] * WORKERS, pool.logs()
    check(pool, name=name, runs=runs, steps=steps, kills=kills, seconds=seconds)


def check(pool: WorkerPool, *, name: str, runs: int, steps: int, kills: int, seconds: float):
    statuses = Counter(Run.objects.values_list("status", flat=True))
    results = Counter(Run.objects.values_list("result", flat=True))
    checkpoints = Step.objects.count()
    per_run = Step.objects.values("run_id").annotate(
        n=Count("id"), first=Min("position"), last=Max("position")
    )
    dense = sum(1 for r in per_run if (r["n"], r["first"], r["last"]) == (steps, 0, steps - 1))
    atomic_labels = {f"step-{i}" for i in range(steps) if i % 2}
    side_effects = Counter(SideEffect.objects.values_list("run_id", "label"))
    ran = executions()
    killed = set(pool.killed)
    by_pid: dict[tuple[str, str], list[int]] = defaultdict(list)
    for run_id, label, pid in rw.Execution.objects.values_list("run_id", "label", "pid"):
        by_pid[(run_id, label)].append(pid)
    writers = {
        (str(run_id), label): result
        for run_id, label, result in Step.objects.values_list("run_id", "name", "result")
    }
    re_executed = sum(count - 1 for count in ran.values())
    lost_claims = Run.objects.aggregate(claims=Sum("lease_token"))["claims"] - runs
    report(
        name,
        runs=runs,
        steps=steps,
        seconds=seconds,
        kills=kills,
        workers_started=len(pool.started),
        checkpoints=checkpoints,
        claims_cut_short=lost_claims,
        re_executed=re_executed,
        max_runs_of_one_body=max(ran.values(), default=0),
        # A third run needs two kills to cut the same step short, one after the other.
        bodies_run_over_twice=sum(1 for count in ran.values() if count > 2),
        side_effects=sum(side_effects.values()),
        lost=runs - statuses.get(RunStatus.COMPLETED, 0),
    )
    # Nothing lost: every run completed, with its result.
    assert statuses == {RunStatus.COMPLETED: runs}, statuses
    assert results == {steps: runs}
    # Exactly one checkpoint per step, positions 0..steps-1 in every run.
    assert checkpoints == runs * steps
    assert Step.objects.exclude(status="completed").count() == 0
    assert dense == runs
    # Atomic steps: their ORM write exists exactly once.
    assert len(side_effects) == runs * len(atomic_labels)
    assert set(side_effects.values()) == {1}
    assert {label for _, label in side_effects} == atomic_labels
    # Plain steps: every body ran, and ran again only if a kill cut its worker short.
    assert len(ran) == runs * (steps - len(atomic_labels))
    survivors = {key: [p for p in pids if p not in killed] for key, pids in by_pid.items()}
    assert all(len(pids) <= 1 for pids in survivors.values()), [
        (key, by_pid[key]) for key, pids in survivors.items() if len(pids) > 1
    ][:5]
    # The checkpoint of a plain step was written by a process that ran its body.
    assert all(writers[key] in pids for key, pids in by_pid.items())
    assert re_executed <= lost_claims <= kills * CONCURRENCY


def test_kill_9_chaos(worker_pool):
    if ON_POSTGRES:
        chaos(worker_pool, name="chaos", runs=1000, steps=5, pause=0.05, lease=2, timeout=240)
    else:  # one writer at a time: fewer runs, longer leases, the same assertions
        chaos(worker_pool, name="chaos", runs=1000, steps=5, pause=0.05, lease=3, timeout=240)


@pytest.mark.chaos
@pytest.mark.skipif(not ON_POSTGRES, reason="the long tier runs on PostgreSQL (make chaos)")
def test_kill_9_chaos_at_scale(worker_pool):
    chaos(worker_pool, name="chaos-long", runs=10_000, steps=10, pause=0.05, lease=2, timeout=1800)
