"""A flood of due timers: many runs whose sleeps end in the same second.

Worker processes park every run on ``ctx.sleep_until(deadline)``, one deadline for all; at
the deadline they all come due at once. What must hold, read from the database:

- every run wakes and completes, none early (the step after the sleep reads the database's
  clock, which must not be before the deadline), none twice (its body ran once, and the run
  was claimed once to park it and once to wake it);
- the workers' memory stays flat (``make chaos``: under 10% growth from the end of a warm-up
  to the end, as in the soak test).

The lag from the deadline to the step after the sleep (p50, p99) is printed, a figure and
not an assertion. A run that reached its sleep after the deadline (the machine was too slow
to park them all in time) does not wait, and is left out of the lag (``parked-late``).
``make test`` floods 300 runs on both databases; ``make chaos`` 10,000 on PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.db import transaction

from django_durable.models import Run, RunStatus, Step
from tests.reliability.conftest import ON_POSTGRES, WorkerPool, db_now, report, rss_kib
from tests.testapp import clock_workflows as cw
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SLEEP = "clock.sleeps_until"


def park(count: int, margin: float) -> datetime:
    """Start ``count`` runs sleeping until ``margin`` s from now (database time); return it."""
    deadline = db_now() + timedelta(seconds=margin)
    with transaction.atomic():  # one commit: the workers see them all at once
        for _ in range(count):
            cw.sleeps_until.start(deadline.isoformat())
    return deadline


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def flood(make_pool, *, name: str, runs: int, workers: int, timeout: float) -> dict[int, float]:
    """Flood ``workers`` worker processes with ``runs`` timers; return each one's RSS growth."""
    pool: WorkerPool = make_pool(
        workers, "--concurrency", "10", "--poll-interval", "0.1", "--lease", "30"
    ).start()
    pool.wait_registered()
    # Warm-up: a few timers, so that what the first ones load is not counted as growth.
    park(workers * 10, 1.0)
    pool.wait(
        lambda: Run.objects.filter(status=RunStatus.COMPLETED).count() == workers * 10,
        60,
        "warm-up",
    )
    rss_start = {pid: rss_kib(pid) or 0 for pid in pool.pids}
    Run.objects.all().delete()
    Execution.objects.all().delete()
    # Time enough to park them all on this small machine; late ones are counted, not lost.
    deadline = park(runs, 3.0 + runs * 0.006)
    pool.wait(
        lambda: Run.objects.filter(status=RunStatus.COMPLETED).count() == runs,
        timeout,
        f"{runs} runs woken",
    )
    rss_end = {pid: rss_kib(pid) or 0 for pid in pool.pids}
    assert pool.stop() == [0] * workers, pool.logs()

    statuses = Counter(Run.objects.values_list("status", flat=True))
    claims = Counter(Run.objects.values_list("lease_token", flat=True))
    bodies = Counter(Execution.objects.filter(label="woke").values_list("run_id", flat=True))
    parked_at = dict(Step.objects.filter(kind="sleep").values_list("run_id", "recorded_at"))
    woke = {
        run_id: datetime.fromisoformat(result)
        for run_id, result in Step.objects.filter(name="woke").values_list("run_id", "result")
    }
    in_time = [run_id for run_id, at in parked_at.items() if at < deadline]
    lags = [(woke[run_id] - deadline).total_seconds() for run_id in in_time]
    growth = {pid: (rss_end[pid] - rss_start[pid]) / rss_start[pid] for pid in rss_start}
    report(
        name,
        runs=runs,
        workers=workers,
        parked_late=runs - len(in_time),
        lag_p50_s=percentile(lags, 0.5),
        lag_p99_s=percentile(lags, 0.99),
        lag_max_s=max(lags, default=0.0),
        rss_mib_start=round(sum(rss_start.values()) / workers / 1024, 1),
        rss_mib_end=round(sum(rss_end.values()) / workers / 1024, 1),
        rss_growth_max_pct=round(max(growth.values()) * 100, 2),
    )
    assert statuses == {RunStatus.COMPLETED: runs}, statuses
    assert len(bodies) == runs and set(bodies.values()) == {1}  # each woke once
    assert len(woke) == runs and min(woke.values()) >= deadline  # none before its deadline
    # Claimed once to park, once to wake (once if it reached its sleep past the deadline).
    assert set(claims) <= {1, 2}, claims
    assert sum(n for token, n in claims.items() if token == 2) >= len(in_time)
    return growth


def test_a_flood_of_due_timers(worker_pool):
    flood(worker_pool, name="timer-flood", runs=300, workers=2, timeout=120)


@pytest.mark.chaos
@pytest.mark.skipif(not ON_POSTGRES, reason="the long tier runs on PostgreSQL (make chaos)")
def test_a_flood_of_10000_due_timers(worker_pool):
    growth = flood(worker_pool, name="timer-flood-long", runs=10_000, workers=4, timeout=1200)
    assert max(growth.values()) < 0.10, growth
