"""Cron schedules: due ticks, syncing the code's schedules, and dispatch."""

from __future__ import annotations

import itertools
import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

import django_durable as durable
from django_durable.core.cron import next_tick
from django_durable.declarations import registry
from django_durable.models import MissedTicks, Run, Schedule
from django_durable.orchestration import schedules
from django_durable.orchestration.schedules import (
    dispatch_due_schedules,
    due_ticks,
    sync_code_schedules,
)
from django_durable.testing import run_all

pytestmark = pytest.mark.django_db(transaction=True)

PARIS = "Europe/Paris"
NEW_YEAR = "workflow:tests.new_year"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def this_minute() -> datetime:
    return timezone.now().replace(second=0, microsecond=0)


# Tests that count runs exactly tick hourly: a minute may end while they run, an hour hardly.
HOURLY = "0 * * * *"


def this_hour() -> datetime:
    return this_minute().replace(minute=0)


def every_minute(name: str = "minutely", **fields) -> Schedule:
    """A schedule as the admin makes them, of ``tests.tick``, due ``fields`` say when."""
    values = {"workflow_name": "tests.tick", "cron": "* * * * *", "time_zone": "UTC", **fields}
    return Schedule.objects.create(name=name, **values)


def runs_of(schedule: Schedule) -> list[Run]:
    return list(
        Run.objects.filter(idempotency_key__startswith=f"schedule:{schedule.pk}:").order_by(
            "idempotency_key"
        )
    )


def ticks_of(schedule: Schedule) -> list[datetime]:
    return [run.get_input()[1]["scheduled_time"] for run in runs_of(schedule)]


def consecutive_minutes(ticks: list[datetime]) -> bool:
    return all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(ticks))


# --- due ticks ---------------------------------------------------------------------------


def test_due_ticks_skip_starts_the_latest_and_catch_up_every_one_capped():
    now = utc(2025, 1, 1, 12, 0, 30)
    schedule = Schedule(cron="*/10 * * * *", time_zone="UTC", next_tick_at=utc(2025, 1, 1, 10))
    assert due_ticks(schedule, now) == [utc(2025, 1, 1, 12)]
    schedule.missed_ticks = MissedTicks.CATCH_UP
    ticks = due_ticks(schedule, now)
    assert ticks[0] == utc(2025, 1, 1, 10) and ticks[-1] == utc(2025, 1, 1, 12)
    assert len(ticks) == 13
    assert due_ticks(schedule, now, limit=5) == ticks[:5]
    # Ticks up to the last one started are not due again.
    schedule.last_tick_at = utc(2025, 1, 1, 11, 30)
    assert due_ticks(schedule, now) == ticks[-3:]
    schedule.next_tick_at = utc(2025, 1, 1, 12, 10)
    assert due_ticks(schedule, now) == []


# --- the schedules declared in code --------------------------------------------------------


def test_sync_creates_a_row_per_code_schedule_once():
    assert sync_code_schedules() >= 1
    row = Schedule.objects.get(name=NEW_YEAR)
    assert row.from_code and row.enabled
    assert (row.workflow_name, row.cron, row.time_zone) == ("tests.new_year", "0 0 1 1 *", PARIS)
    assert row.missed_ticks == MissedTicks.SKIP
    now = timezone.now()
    new_year = datetime(now.year, 12, 31, 23, tzinfo=UTC)  # Paris is UTC+1 in winter
    if new_year <= now:
        new_year = new_year.replace(year=now.year + 1)
    assert row.next_tick_at == new_year
    assert sync_code_schedules() == 0


@pytest.fixture
def declared():
    """A workflow declared with a schedule during the test, then forgotten."""
    names = []

    def declare(name: str, **options):
        names.append(name)
        return durable.workflow(name=name, **options)(lambda ctx, scheduled_time: None)

    yield declare
    for name in names:
        registry.unregister(name)


def test_sync_follows_changes_of_the_code_and_keeps_enabled(declared):
    declared("tests.tmp", schedule="*/5 * * * *")
    sync_code_schedules()
    row = Schedule.objects.get(name="workflow:tests.tmp")
    past = timezone.now() - timedelta(hours=1)
    Schedule.objects.filter(pk=row.pk).update(enabled=False, next_tick_at=past)
    # The code changes its policy only: the next tick (and what was missed) stays.
    registry.unregister("tests.tmp")
    declared("tests.tmp", schedule="*/5 * * * *", missed_ticks="catch_up")
    assert sync_code_schedules() == 1
    row.refresh_from_db()
    assert (row.missed_ticks, row.next_tick_at, row.enabled) == ("catch_up", past, False)
    # The code changes its timing: the next tick is computed again.
    registry.unregister("tests.tmp")
    declared("tests.tmp", schedule="0 6 * * *", schedule_timezone=PARIS)
    assert sync_code_schedules() == 1
    row.refresh_from_db()
    assert (row.cron, row.time_zone, row.missed_ticks) == ("0 6 * * *", PARIS, "skip")
    assert row.next_tick_at == next_tick("0 6 * * *", PARIS, timezone.now())
    assert not row.enabled  # paused in the admin: the code does not resume it


def test_sync_deletes_code_rows_without_a_schedule_and_leaves_admin_rows(caplog):
    Schedule.objects.create(name="workflow:tests.add", workflow_name="tests.add", cron="@daily")
    Schedule.objects.filter(name="workflow:tests.add").update(from_code=True)
    admin_made = every_minute("mine", workflow_name="tests.gone")  # unknown: not our business
    # An admin row holding a code schedule's name (made without the admin's validation).
    squatter = every_minute("squatter")
    Schedule.objects.filter(pk=squatter.pk).update(name=NEW_YEAR)
    with caplog.at_level(logging.ERROR, logger="django_durable"):
        assert sync_code_schedules() == 1
    assert not Schedule.objects.filter(name="workflow:tests.add").exists()
    assert Schedule.objects.get(pk=admin_made.pk).workflow_name == "tests.gone"
    squatter.refresh_from_db()
    assert (squatter.name, squatter.from_code, squatter.cron) == (NEW_YEAR, False, "* * * * *")
    assert "an admin schedule is named 'workflow:tests.new_year'" in caplog.text


def test_workers_syncing_at_once_all_succeed():
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            barrier.wait(5)
            sync_code_schedules()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert Schedule.objects.filter(name=NEW_YEAR, from_code=True).count() == 1


# --- dispatch -------------------------------------------------------------------------------


def test_dispatch_starts_a_run_for_the_tick_with_scheduled_time():
    hour = this_hour()
    schedule = every_minute(
        cron=HOURLY,
        next_tick_at=hour - timedelta(hours=3),
        args=["eu"],
        kwargs={"region": "west"},
    )
    assert dispatch_due_schedules() == 1
    schedule.refresh_from_db()
    [run] = runs_of(schedule)
    tick = schedule.last_tick_at
    assert tick == hour
    assert run.idempotency_key == f"schedule:{schedule.pk}:{tick.isoformat()}"
    assert schedule.next_tick_at == tick + timedelta(hours=1)
    assert dispatch_due_schedules() == 0  # the next tick has not come
    run_all()
    run.refresh_from_db()
    result = run.get_result()
    assert result == {"args": ["eu"], "kwargs": {"region": "west"}, "scheduled_time": tick}
    assert isinstance(result["scheduled_time"], datetime) and result["scheduled_time"].tzinfo


def test_skip_starts_one_run_after_an_outage():
    minute = this_minute()
    schedule = every_minute(
        next_tick_at=minute - timedelta(hours=2),
        last_tick_at=minute - timedelta(hours=2, minutes=1),
    )
    assert dispatch_due_schedules() == 1
    schedule.refresh_from_db()
    assert ticks_of(schedule) == [schedule.last_tick_at]
    assert schedule.last_tick_at >= minute
    assert schedule.next_tick_at > timezone.now()


def test_catch_up_starts_one_run_per_missed_tick_oldest_first():
    minute = this_minute()
    schedule = every_minute(
        missed_ticks=MissedTicks.CATCH_UP, next_tick_at=minute - timedelta(minutes=9)
    )
    started = dispatch_due_schedules()
    schedule.refresh_from_db()
    ticks = ticks_of(schedule)
    assert started == len(ticks) >= 10
    assert ticks[0] == minute - timedelta(minutes=9) and ticks[-1] == schedule.last_tick_at
    assert consecutive_minutes(ticks)
    assert schedule.next_tick_at == ticks[-1] + timedelta(minutes=1) > timezone.now()


def test_catch_up_is_capped_per_dispatch_and_goes_on_next_round():
    minute = this_minute()
    start = minute - timedelta(minutes=104)
    schedule = every_minute(missed_ticks=MissedTicks.CATCH_UP, next_tick_at=start)
    assert dispatch_due_schedules() == schedules.MAX_CATCH_UP == 100
    schedule.refresh_from_db()
    assert schedule.next_tick_at == start + timedelta(minutes=100)  # due: next round
    assert dispatch_due_schedules() >= 5
    ticks = ticks_of(schedule)
    assert ticks[0] == start and len(ticks) >= 105 and consecutive_minutes(ticks)


def test_a_tick_started_already_is_not_started_again():
    """A dispatcher that read the schedule before another moved it on finds the same run."""
    stale = this_hour() - timedelta(hours=2)
    schedule = every_minute(cron=HOURLY, missed_ticks=MissedTicks.CATCH_UP, next_tick_at=stale)
    first = dispatch_due_schedules()
    assert first == 3
    Schedule.objects.filter(pk=schedule.pk).update(next_tick_at=stale, last_tick_at=None)
    assert dispatch_due_schedules() == 0
    assert len(runs_of(schedule)) == first


def test_two_dispatchers_racing_start_one_run_per_tick():
    minute = this_minute()
    schedule = every_minute(
        missed_ticks=MissedTicks.CATCH_UP, next_tick_at=minute - timedelta(minutes=4)
    )
    others = [every_minute(f"other-{n}", cron=HOURLY, next_tick_at=this_hour()) for n in range(3)]
    barrier = threading.Barrier(2)
    started: list[int] = []
    errors: list[BaseException] = []

    def dispatch() -> None:
        try:
            barrier.wait(5)
            started.append(dispatch_due_schedules())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    ticks = ticks_of(schedule)
    assert len(ticks) >= 5 and consecutive_minutes(ticks)
    assert all(len(runs_of(other)) == 1 for other in others)
    assert sum(started) == Run.objects.count() == len(ticks) + 3


def test_a_schedule_of_an_unknown_workflow_is_logged_and_skipped(caplog):
    hour = this_hour()
    ghost = every_minute("ghost", workflow_name="tests.gone", cron=HOURLY, next_tick_at=hour)
    good = every_minute("good", cron=HOURLY, next_tick_at=hour)
    with caplog.at_level(logging.ERROR, logger="django_durable"):
        assert dispatch_due_schedules() == 1
    assert "Schedule 'ghost' names the workflow 'tests.gone', which is not registered" in (
        caplog.text
    )
    ghost.refresh_from_db()
    assert ghost.next_tick_at > timezone.now() and ghost.last_tick_at is None
    assert runs_of(ghost) == [] and len(runs_of(good)) == 1
    caplog.clear()
    assert dispatch_due_schedules() == 0
    assert caplog.text == ""  # its ticks moved on: not reported again before the next one


def test_a_schedule_with_a_broken_cron_or_arguments_does_not_break_dispatch(caplog):
    minute = this_minute()
    broken = every_minute("broken", next_tick_at=minute)
    wrong = every_minute("wrong", next_tick_at=minute)
    Schedule.objects.filter(pk=broken.pk).update(cron="61 * * * *")
    Schedule.objects.filter(pk=wrong.pk).update(args={"not": "a list"})
    with caplog.at_level(logging.ERROR, logger="django_durable"):
        assert dispatch_due_schedules() == 0
    assert "Schedule 'broken' is stopped" in caplog.text
    assert "Schedule 'wrong' has wrong arguments" in caplog.text
    broken.refresh_from_db()
    wrong.refresh_from_db()
    assert broken.next_tick_at is None  # not due until it is fixed (saving computes it)
    assert wrong.next_tick_at > timezone.now()
    assert Run.objects.count() == 0


def test_disabled_schedules_do_not_start_runs_and_workers_dispatch(worker):
    minute = this_minute()
    every_minute("off", next_tick_at=minute, enabled=False)
    on = every_minute("on", next_tick_at=minute)
    worker.run_once()
    assert [run.workflow_name for run in Run.objects.all()] == ["tests.tick"]
    assert len(runs_of(on)) == 1


def test_a_code_schedule_that_never_ticks_is_logged_and_does_not_stop_the_sync(declared, caplog):
    declared("tests.feb", schedule="0 0 30 2 *")  # the decorator accepts it: croniter parses it
    with caplog.at_level(logging.ERROR, logger="django_durable"):
        sync_code_schedules()
    assert "Schedule 'workflow:tests.feb' is stopped: '0 0 30 2 *' never ticks" in caplog.text
    assert Schedule.objects.get(name="workflow:tests.feb").next_tick_at is None
    assert Schedule.objects.filter(name=NEW_YEAR).exists()
