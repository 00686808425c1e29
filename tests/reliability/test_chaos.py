"""Kill -9 chaos: worker processes SIGKILLed and restarted, one a second, while they work.

Every run has plain steps (their bodies write an ``Execution`` row, committed at once, so
every try is counted, and return the pid, so the checkpoint says who wrote it) and atomic
steps (a ``SideEffect`` row written in the checkpoint's transaction). What must hold:

- no run is lost: all of them complete, none is left behind;
- exactly one checkpoint per step, at dense positions;
- atomic steps' writes exist exactly once;
- a step body runs again only because the worker running it was killed: every execution
  of a body but one is by a killed process, and the bodies that ran again number no more
  than the claims that kills cut short, which are at most kills times concurrency;
- no step body runs more than twice.

A body runs once more for each kill that cuts it short; no engine that delivers at least
once can do better. So the last point holds only if no body is cut short twice, and the
kills see to that: before killing a worker, the test freezes it (SIGSTOP) and reads what it
is doing; if it is running a body again that a kill already cut short (an execution with no
checkpoint yet, after an earlier one), it is let go and the next worker is killed instead.
Every other kill lands blind, on whatever the worker is doing. Without that rule, a worker
that took a run over is sometimes killed in the same step, and the body runs a third time
(20 of 50,000 bodies in a long-tier run of 2026-11-21; each extra run by a killed process).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import pytest
from django.db import transaction
from django.db.models import Count, Max, Min, Sum

from django_durable.models import Run, RunStatus, Step, StepStatus
from tests.reliability.conftest import (
    ON_POSTGRES,
    WorkerPool,
    executions,
    process_state,
    report,
)
from tests.testapp import reliability_workflows as rw
from tests.testapp.models import SideEffect

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKERS = 4
CONCURRENCY = 4


def start_runs(count: int, steps: int, pause: float) -> None:
    with transaction.atomic():  # one commit: the workers see them all at once
        for _ in range(count):
            rw.steps.start(steps, pause)


def rerunning_a_body_cut_short(pid: int) -> bool:
    """Whether worker ``pid`` is running a plain step's body again, a kill having cut it short.

    That is: it has an execution of a body whose step has no checkpoint yet, and that body
    had run before, in another process.
    """
    ran = set(rw.Execution.objects.filter(pid=pid).values_list("run_id", "label"))
    checkpointed = {
        (str(run_id), name)
        for run_id, name in Step.objects.filter(run_id__in={run_id for run_id, _ in ran})
        .exclude(status=StepStatus.RUNNING)  # begun, not ended: no checkpoint yet
        .values_list("run_id", "name")
    }
    return any(
        rw.Execution.objects.filter(run_id=run_id, label=label).exclude(pid=pid).exists()
        for run_id, label in ran - checkpointed
    )


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
    kills = pool.chaos(
        until=lambda: not Run.objects.active().exists(),
        timeout=timeout,
        spare=rerunning_a_body_cut_short,
    )
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
        kills_passed_over=pool.spared,
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
    # No kill cut a body short twice (the schedule), so none ran more than twice.
    assert max(ran.values()) <= 2, [(key, by_pid[key]) for key, n in ran.items() if n > 2][:5]


def test_kill_9_chaos(worker_pool):
    if ON_POSTGRES:
        chaos(worker_pool, name="chaos", runs=1000, steps=5, pause=0.05, lease=2, timeout=240)
    else:  # one writer at a time: fewer runs, longer leases, the same assertions
        chaos(worker_pool, name="chaos", runs=1000, steps=5, pause=0.05, lease=3, timeout=240)


@pytest.mark.chaos
@pytest.mark.skipif(not ON_POSTGRES, reason="the long tier runs on PostgreSQL (make chaos)")
def test_kill_9_chaos_at_scale(worker_pool):
    # Pauses three times the fast tier's: about ten minutes of kills on this machine.
    chaos(worker_pool, name="chaos-long", runs=10_000, steps=10, pause=0.15, lease=2, timeout=2400)


def test_a_spared_worker_is_let_go_and_the_next_one_killed(worker_pool):
    pool: WorkerPool = worker_pool(2, "--poll-interval", "0.1").start()
    pool.wait_registered()
    first, second = (proc.pid for proc in pool.alive)
    asked: list[int] = []

    def spare_the_first(pid: int) -> bool:
        asked.append(pid)
        assert process_state(pid) == "T"  # frozen while it is looked at
        return pid == first

    assert pool.kill_next(spare_the_first) == second
    assert asked == [first, second]
    assert pool.killed == [second]
    assert pool.kill_next(lambda pid: True) is None  # all spared: nobody killed
    assert pool.killed == [second] and pool.spared == 3
    pool.wait_registered()
    assert first in {proc.pid for proc in pool.alive}
    assert all(process_state(proc.pid) != "T" for proc in pool.alive)
    run = rw.steps.start(3, 0.0)  # the spared workers work on
    pool.wait(lambda: Run.objects.get(id=run.id).status == RunStatus.COMPLETED, 60, "run done")
    assert pool.stop() == [0, 0]
