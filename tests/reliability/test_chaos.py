"""Kill -9 chaos: worker processes SIGKILLed and restarted, one a second, while they work.

Every run has plain steps (their bodies write an ``Execution`` row, committed at once, so
every try is counted, and return the pid, so the checkpoint says who wrote it) and atomic
steps (a ``SideEffect`` row written in the checkpoint's transaction). What must hold:

- no run is lost: all of them complete, none is left behind;
- exactly one checkpoint per step, at dense positions;
- atomic steps' writes exist exactly once;
- a step body runs again only because a kill cut the execution before short: of the
  executions of a body, in order, each but the last is by a process the test killed, and
  that kill fell inside it (after the execution began, before the next one did); the last
  one wrote the checkpoint;
- the bodies that ran again number no more than the claims that kills cut short, which are
  at most kills times concurrency.

A body runs once more for each kill that cuts it short, in any engine that delivers at least
once, so a body cut short twice runs three times: the kills land blind, on whatever the
worker is doing, and the report counts, for the bodies run more than twice, the kills that
fell inside their executions. A body run again without a kill inside its execution before
fails the test, however many times it ran.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.db.models import Count, Max, Min, Sum

from django_durable.models import Run, RunStatus, Step
from tests.reliability.conftest import (
    ON_POSTGRES,
    WorkerPool,
    executions,
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
    )
    seconds = time.monotonic() - started
    assert pool.stop() == [0] * WORKERS, pool.logs()
    check(pool, name=name, runs=runs, steps=steps, kills=kills, seconds=seconds)


def cut_short(
    runs_of_body: list[tuple[int, datetime]], kills: dict[int, tuple[datetime, datetime]]
) -> list[bool]:
    """Say, for each execution of a body but the last, whether a kill fell inside it.

    ``runs_of_body`` lists its executions in order, as (pid, time it began); ``kills`` maps
    each killed pid to when it was killed (just before and just after the SIGKILL). A kill
    falls inside an execution if its process was killed after the execution began and
    before the next one did.
    """
    return [
        pid in kills and began < kills[pid][1] and kills[pid][0] < next_began
        for (pid, began), (_, next_began) in itertools.pairwise(runs_of_body)
    ]


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
    by_body: dict[tuple[str, str], list[tuple[int, datetime]]] = defaultdict(list)
    rows = rw.Execution.objects.order_by("id").values_list("run_id", "label", "pid", "created_at")
    for run_id, label, pid, began in rows:
        by_body[(run_id, label)].append((pid, began))
    writers = {
        (str(run_id), label): result
        for run_id, label, result in Step.objects.values_list("run_id", "name", "result")
    }
    inside = {
        key: cut_short(runs_of_body, pool.kill_times) for key, runs_of_body in by_body.items()
    }
    # A body run again without a kill inside its execution before, or whose checkpoint is
    # not its last execution's.
    wrong = [
        (key, by_body[key], writers.get(key))
        for key, kills_in in inside.items()
        if not all(kills_in) or by_body[key][-1][0] != writers.get(key)
    ]
    re_executed = sum(count - 1 for count in ran.values())
    lost_claims = Run.objects.aggregate(claims=Sum("lease_token"))["claims"] - runs
    over_twice = {key: n for key, n in ran.items() if n > 2}
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
        bodies_run_over_twice=len(over_twice),
        kills_inside_them=sum(sum(inside[key]) for key in over_twice),
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
    # Plain steps: every body ran, and ran again only because a kill cut it short.
    assert len(ran) == runs * (steps - len(atomic_labels))
    assert wrong == [], wrong[:5]
    assert re_executed <= lost_claims <= kills * CONCURRENCY


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


def test_only_a_kill_inside_an_execution_explains_the_next_one():
    t = [datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC) for second in range(10)]
    killed_at_3 = {11: (t[3], t[3])}
    assert cut_short([(11, t[1])], killed_at_3) == []  # ran once: nothing to explain
    assert cut_short([(11, t[1]), (12, t[5])], killed_at_3) == [True]
    assert cut_short([(11, t[1]), (12, t[5])], {}) == [False]  # never killed
    assert cut_short([(11, t[4]), (12, t[5])], killed_at_3) == [False]  # killed before it began
    assert cut_short([(11, t[1]), (12, t[2])], killed_at_3) == [False]  # killed after the next
    # Three runs, two kills, each inside the execution it cut short.
    two_kills = {11: (t[3], t[3]), 12: (t[6], t[6])}
    assert cut_short([(11, t[1]), (12, t[5]), (13, t[8])], two_kills) == [True, True]
    assert cut_short([(11, t[1]), (13, t[5]), (12, t[8])], two_kills) == [True, False]
