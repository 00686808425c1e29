"""Schedules with real worker processes: every worker dispatches, a tick starts one run."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pytest
from django.utils import timezone

import django_durable as durable
from django_durable.core.cron import latest_tick
from django_durable.models import MissedTicks, Run, Schedule, WorkerProcess
from tests.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--poll-interval", "0.1", "--lease", "1")
NEW_YEAR = "workflow:tests.new_year"


def start_three(worker_processes) -> None:
    """Start three workers; return once all of them run and the code's schedule is synced."""
    for _ in range(3):
        worker_processes.start(*FAST)
    wait_for(
        lambda: WorkerProcess.objects.count() == 3 and Schedule.objects.filter(name=NEW_YEAR),
        message=f"three workers and the schedule\n{worker_processes.logs()}",
    )


def test_one_schedule_tick_with_3_workers_starts_one_run(worker_processes):
    start_three(worker_processes)
    schedule = Schedule.objects.get(name=NEW_YEAR)
    upcoming = schedule.next_tick_at
    tick = latest_tick(schedule.cron, schedule.time_zone, timezone.now())  # the last New Year
    # A worker outage since before the last New Year: the three see the tick at once.
    Schedule.objects.filter(pk=schedule.pk).update(next_tick_at=tick - timedelta(days=1))
    wait_for(
        lambda: (
            Run.objects.filter(workflow_name="tests.new_year").exists()
            and Schedule.objects.get(pk=schedule.pk).next_tick_at == upcoming
        ),
        message=f"the scheduled run\n{worker_processes.logs()}",
    )
    time.sleep(1.0)  # every worker had about ten more rounds to start another
    [run] = Run.objects.filter(workflow_name="tests.new_year")
    assert run.idempotency_key == f"schedule:{schedule.pk}:{tick.isoformat()}"
    assert durable.get_run(run.id).result(timeout=20) == tick
    schedule.refresh_from_db()
    assert (schedule.last_tick_at, schedule.next_tick_at) == (tick, upcoming)


def test_catch_up_with_3_workers_starts_one_run_per_missed_tick(worker_processes):
    start_three(worker_processes)
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=9)
    schedule = Schedule.objects.create(
        name="minutely",
        workflow_name="tests.tick",
        cron="* * * * *",
        missed_ticks=MissedTicks.CATCH_UP,
        next_tick_at=start,
    )
    wait_for(
        lambda: Schedule.objects.get(pk=schedule.pk).next_tick_at > timezone.now(),
        message=f"the schedule to catch up\n{worker_processes.logs()}",
    )
    time.sleep(1.0)
    schedule.refresh_from_db()
    runs = Run.objects.filter(workflow_name="tests.tick")
    ticks = sorted(run.get_input()[1]["scheduled_time"] for run in runs)
    assert ticks[0] == start and ticks[-1] == schedule.last_tick_at
    assert len(ticks) >= 10
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(ticks))
