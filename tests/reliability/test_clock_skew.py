"""Clocks that disagree: worker processes whose clocks are five minutes ahead or behind.

Each skewed worker runs with ``DURABLE_TEST_CLOCK_SKEW=300`` or ``-300``
(tests/skewed_clock.py): its ``time.time()`` and ``timezone.now()`` are five minutes off,
as on a host whose clock drifted; its monotonic clock is right. (libfaketime would move the
C library's clocks, but hangs this Python's timed waits: see tests/skewed_clock.py.)

What must hold, read from the database:

- a worker ahead never takes a run from a live worker behind (their leases are in the
  database's time), and both count as alive to the others;
- a sleep of N seconds lasts N seconds by the database's clock, whichever worker set it
  and whichever woke it;
- a rate-limited queue starts no more runs per second than its limit;
- a schedule's tick starts one run, and not before the tick by the database's clock.

On PostgreSQL the database's ``now()`` decides. SQLite has no clock of its own: every
process's statements carry its own time, so two workers whose clocks disagree disagree
about leases and timers too (docs/reliability.md says so). There, one skewed worker alone
is tested: its sleeps and rate limits are kept by its own clock.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest

from django_durable.core.statuses import MissedTicks
from django_durable.models import Run, RunStatus, Schedule, WorkerProcess
from tests.conftest import ROOT
from tests.reliability.conftest import ON_POSTGRES, WorkerPool, db_now, report
from tests.testapp import clock_workflows as cw
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SKEW = timedelta(minutes=5)
AHEAD, BEHIND = SKEW, -SKEW
ONLY_ON_POSTGRES = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="SQLite has no clock of its own: workers with different clocks disagree there",
)
# What reads the wall clock other than the two functions tests/skewed_clock.py moves.
OTHER_CLOCKS = re.compile(r"\b(datetime|date)\.(now|utcnow|today)\(|\bfrom time import\b")


def skewed(offset: timedelta) -> dict[str, str]:
    """Return the environment of a process whose clock is ``offset`` off."""
    return {"DURABLE_TEST_CLOCK_SKEW": str(offset.total_seconds())}


def start_worker(make_pool, offset: timedelta, *args: str) -> WorkerPool:
    pool: WorkerPool = make_pool(1, "--poll-interval", "0.1", *args, env=skewed(offset))
    return pool.start()


def completed(*runs) -> bool:
    ids = [run.id for run in runs]
    return Run.objects.filter(id__in=ids, status=RunStatus.COMPLETED).count() == len(ids)


def ran_by(run_id: object, label: str) -> list[int]:
    """Return the pids of the processes that ran the body ``label`` of a run."""
    return list(
        Execution.objects.filter(run_id=str(run_id), label=label).values_list("pid", flat=True)
    )


def test_the_hook_moves_a_processes_wall_clock_and_not_its_monotonic_one():
    script = (
        "import django, json, time; django.setup(); from django.utils import timezone; "
        "print(json.dumps([time.time(), timezone.now().timestamp(), time.monotonic()]))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    for offset in (AHEAD, BEHIND):
        before = time.time(), time.monotonic()
        out = subprocess.run(
            [sys.executable, "-c", script],
            env={**env, **skewed(offset)},
            capture_output=True,
            check=True,
        )
        wall, now, monotonic = json.loads(out.stdout)
        after = time.time(), time.monotonic()
        shift = offset.total_seconds()
        assert before[0] + shift <= wall <= after[0] + shift, (offset, wall - before[0])
        assert before[0] + shift <= now <= after[0] + shift
        assert before[1] <= monotonic <= after[1]  # one monotonic clock for every process


def test_the_code_reads_the_wall_clock_only_through_what_the_hook_moves():
    package = ROOT / "django_durable"
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OTHER_CLOCKS.search(line)
    ]
    assert found == []


@ONLY_ON_POSTGRES
def test_a_worker_ahead_never_takes_the_run_of_a_live_worker_behind(worker_pool):
    # The holder (5 minutes behind, one run at a time) runs a step until the test says.
    holder = start_worker(worker_pool, BEHIND, "--concurrency", "1")
    held = cw.holds.start()
    holder.wait(lambda: ran_by(held.id, "hold"), 60, "the step to begin")
    claim = Run.objects.values("status", "claimed_by", "lease_token").get(id=held.id)
    # Its clock is behind: the row its step wrote is stamped by it (``auto_now_add``).
    stamped = Execution.objects.get(run_id=str(held.id), label="hold").created_at - db_now()
    assert BEHIND - timedelta(seconds=60) < stamped < BEHIND + timedelta(seconds=1), stamped
    # The taker, 10 minutes ahead of it, would see its lease long expired by its own clock.
    taker = start_worker(worker_pool, AHEAD)
    [taker_pid] = taker.pids
    # A sleeping run only the taker can run (the holder is busy): once it is done, the
    # taker made maintenance rounds (taking back expired leases) while the step ran.
    probe = cw.sleeps_for.start(0.5)
    taker.wait(lambda: completed(probe), 60, "the probe run")
    assert ran_by(probe.id, "woke") == [taker_pid], taker.logs()
    assert Run.objects.values("status", "claimed_by", "lease_token").get(id=held.id) == claim
    # Both count as alive: their heartbeats are in the database's time.
    now = db_now()
    seen = dict(WorkerProcess.objects.values_list("pid", "last_seen_at"))
    alive = set(WorkerProcess.objects.alive(now).values_list("pid", flat=True))
    report(
        "clock-skew-lease",
        holder_seen_ago=(now - seen[next(iter(holder.pids))]).total_seconds(),
        taker_seen_ago=(now - seen[taker_pid]).total_seconds(),
    )
    assert alive == holder.pids | taker.pids, (seen, now)
    Execution.objects.create(run_id=str(held.id), label="release", pid=os.getpid())
    holder.wait(lambda: completed(held), 60, "the held run")
    assert ran_by(held.id, "hold") == list(holder.pids)  # once, by the holder
    assert holder.stop() == [0] and taker.stop() == [0]


def sleep_across(setter: WorkerPool, waker: WorkerPool, seconds: float) -> float:
    """Have ``setter`` begin a sleep and ``waker`` end it; return how long it lasted.

    Each worker runs its part alone, the other frozen (SIGSTOP); the length is the
    difference of the database times read by the steps before and after the sleep.
    """
    [frozen] = waker.alive
    waker.pause(frozen)
    run = cw.sleeps_for.start(seconds)
    waited(setter, run, lambda: Run.objects.get(id=run.id).status == RunStatus.WAITING, "asleep")
    waker.resume(frozen)
    [setting] = setter.alive
    setter.pause(setting)
    waited(waker, run, lambda: completed(run), "the sleep to end")
    setter.resume(setting)
    assert ran_by(run.id, "woke") == [frozen.pid]
    return lasted(run.id)


def waited(pool: WorkerPool, run, predicate, what: str) -> None:
    """``pool.wait(predicate)``; a time-out says where the run and the workers stood."""
    try:
        pool.wait(predicate, 60, what)
    except AssertionError as exc:
        state = Run.objects.filter(id=run.id).values(
            "status", "wake_at", "available_at", "claimed_by", "lease_expires_at", "recoveries"
        )
        workers = WorkerProcess.objects.values("id", "pid", "last_seen_at", "stopped_at")
        raise AssertionError(
            f"{exc}\nrun: {list(state)}\ndatabase now: {db_now()}\nworkers: {list(workers)}"
        ) from None


def lasted(run_id: object) -> float:
    """Return how long a ``sleeps_for`` run slept, by the times its steps read."""
    before, after = (datetime.fromisoformat(value) for value in Run.objects.get(id=run_id).result)
    return (after - before).total_seconds()


def test_sleeps_and_rate_limits_keep_the_database_clock(worker_pool):
    # PostgreSQL: two workers ten minutes apart, each setting a sleep the other ends.
    # SQLite: one worker ahead, alone.
    offsets = (AHEAD, BEHIND) if ON_POSTGRES else (AHEAD,)
    pools = [
        start_worker(worker_pool, offset, "-q", "default", "-q", "rated") for offset in offsets
    ]
    seconds = 2.0
    if ON_POSTGRES:
        ahead, behind = pools
        slept = [sleep_across(ahead, behind, seconds), sleep_across(behind, ahead, seconds)]
    else:
        sleepers = [cw.sleeps_for.start(seconds) for _ in range(2)]
        pools[0].wait(lambda: completed(*sleepers), 60, "the sleeps")
        slept = [lasted(run.id) for run in sleepers]
    rated = [wf.rated.start() for _ in range(6)]  # "2/s"
    pools[0].wait(lambda: completed(*rated), 60, "the rated runs")
    starts = sorted(
        Run.objects.filter(id__in=[run.id for run in rated]).values_list("started_at", flat=True)
    )
    closest = min(
        (c - a).total_seconds() for a, _, c in zip(starts, starts[1:], starts[2:], strict=False)
    )
    report(
        "clock-skew-timers",
        slept_min=min(slept),
        slept_max=max(slept),
        rated_runs=len(starts),
        shortest_span_of_3_starts=closest,
    )
    # Not early by the skew, nor late by it (ten minutes would outlast the waits above).
    assert all(seconds <= value < SKEW.total_seconds() for value in slept), slept
    # At most 2 runs started in any second: the first and third of any three are 1 s apart.
    assert closest >= 1.0, starts
    assert all(pool.stop() == [0] for pool in pools)


@ONLY_ON_POSTGRES
def test_a_schedule_tick_starts_one_run_and_never_early(worker_pool):
    ahead = start_worker(worker_pool, AHEAD)
    behind = start_worker(worker_pool, BEHIND)
    minute = db_now().replace(second=0, microsecond=0)
    start = minute - timedelta(minutes=2)
    Schedule.objects.create(
        name="minutely",
        workflow_name="tests.tick",
        cron="* * * * *",
        missed_ticks=MissedTicks.CATCH_UP,
        next_tick_at=start,
    )
    # Each worker alone runs a sleeping probe: it made maintenance rounds (which start due
    # ticks) after the schedule was due, with its own clock.
    for pool, other in ((ahead, behind), (behind, ahead)):
        [paused] = other.alive
        other.pause(paused)
        probe = cw.sleeps_for.start(0.3)
        pool.wait(lambda probe=probe: completed(probe), 60, "the probe run")
        other.resume(paused)
        assert ran_by(probe.id, "woke") == list(pool.pids)
    now = db_now()
    ticks = sorted(
        run.get_input()[1]["scheduled_time"]
        for run in Run.objects.filter(workflow_name="tests.tick")
    )
    report(
        "clock-skew-schedule",
        ticks=len(ticks),
        last_tick_ahead_by=(ticks[-1] - now).total_seconds(),
    )
    assert ticks[0] == start and len(set(ticks)) == len(ticks)
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(ticks))
    assert minute <= ticks[-1] <= now  # every due tick started; none before its time
    assert ahead.stop() == [0] and behind.stop() == [0]


@ONLY_ON_POSTGRES
@pytest.mark.parametrize("offset", [AHEAD, BEHIND], ids=["ahead", "behind"])
def test_a_schedule_in_code_gets_its_first_tick_from_the_database_clock(monkeypatch, offset):
    from django.utils import timezone

    import django_durable as durable
    from django_durable.declarations.registry import unregister
    from django_durable.orchestration.schedules import sync_code_schedules

    @durable.workflow(name="clock.minutely", schedule="* * * * *")
    def minutely(ctx: durable.Context, scheduled_time: object) -> None:
        pass

    try:
        real_now = timezone.now
        monkeypatch.setattr(timezone, "now", lambda: real_now() + offset)  # this process's
        before = db_now()
        sync_code_schedules()
        first = Schedule.objects.get(name="workflow:clock.minutely").next_tick_at
    finally:
        unregister("clock.minutely")
    # The first minute after the database's time: neither ticks skipped nor ticks owed.
    assert before < first <= db_now() + timedelta(minutes=1), (before, first)


@ONLY_ON_POSTGRES
@pytest.mark.parametrize("offset", [AHEAD, BEHIND], ids=["ahead", "behind"])
def test_a_schedule_saved_on_a_web_host_gets_its_next_tick_from_the_database_clock(
    monkeypatch, offset
):
    from django.utils import timezone

    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + offset)  # the admin's host
    before = db_now()
    schedule = Schedule(name="skewed", workflow_name="tests.add", cron="* * * * *")
    schedule.save()  # what the admin's form does
    first = schedule.next_tick_at
    # Behind, the tick would be owed at once; ahead, five ticks would be skipped.
    assert first is not None and before < first <= db_now() + timedelta(minutes=1)
    schedule.cron = "*/2 * * * *"  # the timing changed: the next tick is computed again
    schedule.save()
    again = Schedule.objects.get(pk=schedule.pk).next_tick_at
    assert again is not None and before < again <= db_now() + timedelta(minutes=2)


@ONLY_ON_POSTGRES
@pytest.mark.parametrize("offset", [AHEAD, BEHIND], ids=["ahead", "behind"])
def test_a_web_host_judges_workers_alive_by_the_database_clock(monkeypatch, offset, admin_client):
    from django.core.management import call_command
    from django.urls import reverse
    from django.utils import timezone

    from django_durable import display

    now = db_now()
    live = WorkerProcess.objects.create(
        id="live", hostname="h", pid=1, queues=["default"], concurrency=1, last_seen_at=now
    )
    gone = WorkerProcess.objects.create(
        id="gone",
        hostname="h",
        pid=2,
        queues=["default"],
        concurrency=1,
        last_seen_at=now - timedelta(minutes=2),  # three heartbeats are 30 s here
    )
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + offset)  # the web host's
    # Ahead, the live worker would look gone; behind, the one gone two minutes ago would
    # look alive.
    assert list(WorkerProcess.objects.alive()) == [live]
    assert live.is_alive and not gone.is_alive
    since = display.alive_since()
    assert display.worker_alive(live, since) and not display.worker_alive(gone, since)
    out = io.StringIO()
    call_command("durable", "workers", "--json", stdout=out)
    assert {row["id"]: row["alive"] for row in json.loads(out.getvalue())} == {
        "live": True,
        "gone": False,
    }
    page = admin_client.get(reverse("admin:django_durable_workerprocess_changelist"))
    alive = [worker.alive_now for worker in page.context["cl"].result_list]
    assert page.status_code == 200 and alive == [False, True]  # newest first: gone, live
    filtered = admin_client.get(
        reverse("admin:django_durable_workerprocess_changelist"), {"alive": "yes"}
    )
    assert [worker.id for worker in filtered.context["cl"].result_list] == ["live"]


@ONLY_ON_POSTGRES
@pytest.mark.parametrize("offset", [AHEAD, BEHIND], ids=["ahead", "behind"])
def test_a_web_host_tells_how_long_a_run_has_run_by_the_database_clock(
    monkeypatch, offset, admin_client
):
    from django.core.management import call_command
    from django.urls import reverse
    from django.utils import timezone

    from django_durable import display

    handle = wf.add.start(1, 2)
    # Claimed by a worker ten seconds ago, by the database's clock, and still running.
    Run.objects.filter(pk=handle.id).update(
        status=RunStatus.RUNNING, started_at=db_now() - timedelta(seconds=10)
    )
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + offset)  # the web host's
    run = Run.objects.get(pk=handle.id)
    # Off by the skew, it would say 5 min 10 s, or nothing at all (a negative time).
    seconds = display.run_seconds(run)
    assert seconds is not None and 10 <= seconds < 60, seconds
    out = io.StringIO()
    call_command("durable", "runs", "show", handle.id, "--json", stdout=out)
    assert 10 <= json.loads(out.getvalue())["duration_seconds"] < 60
    page = admin_client.get(reverse("admin:django_durable_run_changelist"))
    [listed] = page.context["cl"].result_list
    shown = page.context["cl"].model_admin.duration(listed)
    assert page.status_code == 200 and re.fullmatch(r"[1-5]\d\.\ds", shown), shown


@ONLY_ON_POSTGRES
@pytest.mark.parametrize("offset", [AHEAD, BEHIND], ids=["ahead", "behind"])
def test_a_schedule_saved_on_a_web_host_is_stamped_by_the_database_clock(monkeypatch, offset):
    from django.utils import timezone

    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + offset)  # the admin's host
    before = db_now()
    schedule = Schedule(name="stamped", workflow_name="tests.add", cron="* * * * *")
    schedule.save()
    schedule.enabled = False
    schedule.save(update_fields=["enabled"])
    stamped = Schedule.objects.get(pk=schedule.pk).updated_at
    assert before <= stamped <= db_now(), (before, stamped)
