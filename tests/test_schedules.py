"""Cron schedules: tick arithmetic, syncing the code's schedules, dispatch, admin, command."""

from __future__ import annotations

import html
import io
import itertools
import json
import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

import django_durable as durable
from django_durable import registry, schedules
from django_durable.models import MissedTicks, Run, Schedule
from django_durable.schedules import (
    check_cron,
    check_time_zone,
    dispatch_due_schedules,
    due_ticks,
    latest_tick,
    next_tick,
    sync_code_schedules,
)

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


# --- tick arithmetic ---------------------------------------------------------------------


def test_next_tick_is_the_first_tick_strictly_after_in_utc():
    assert next_tick("*/15 * * * *", "UTC", utc(2025, 1, 1, 12, 7, 30)) == utc(2025, 1, 1, 12, 15)
    assert next_tick("*/15 * * * *", "UTC", utc(2025, 1, 1, 12, 15)) == utc(2025, 1, 1, 12, 30)
    assert next_tick("@daily", "UTC", utc(2025, 1, 1, 12)) == utc(2025, 1, 2)
    assert next_tick("* * * * *", "UTC", utc(2025, 1, 1)).tzinfo == UTC
    assert latest_tick("*/15 * * * *", "UTC", utc(2025, 1, 1, 12, 15)) == utc(2025, 1, 1, 12, 15)
    assert latest_tick("*/15 * * * *", "UTC", utc(2025, 1, 1, 12, 29)) == utc(2025, 1, 1, 12, 15)


def test_the_cron_is_read_in_its_time_zone_and_follows_daylight_saving_time():
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_tick("0 9 * * *", PARIS, utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 7)
    assert next_tick("0 9 * * *", PARIS, utc(2025, 10, 25, 12)) == utc(2025, 10, 26, 8)
    # 02:30 does not exist on 30 March 2025 in Paris: the tick is at 03:00 CEST.
    assert next_tick("30 2 * * *", PARIS, utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 1)


def test_a_time_of_day_ticks_once_when_clocks_go_back_an_interval_twice():
    # 26 October 2025: Paris goes from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    first = next_tick("30 2 * * *", PARIS, utc(2025, 10, 25, 12))
    assert first == utc(2025, 10, 26, 0, 30)
    assert next_tick("30 2 * * *", PARIS, first) == utc(2025, 10, 27, 1, 30)
    assert latest_tick("30 2 * * *", PARIS, utc(2025, 10, 26, 2)) == first
    # Every half hour is real time: both passes of the repeated hour tick.
    tick, ticks = utc(2025, 10, 26, 0), []
    for _ in range(4):
        tick = next_tick("*/30 * * * *", PARIS, tick)
        ticks.append(tick)
    assert ticks == [utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 1), *ticks[2:]]
    assert ticks[2:] == [utc(2025, 10, 26, 1, 30), utc(2025, 10, 26, 2)]


@pytest.mark.parametrize(
    "cron", ["61 * * * *", "* * * *", "* * * * * *", "every minute", "", "@reboot"]
)
def test_an_invalid_cron_expression_is_rejected(cron):
    with pytest.raises(ValueError, match="is not a cron expression"):
        check_cron(cron)


def test_an_unknown_time_zone_and_a_cron_that_never_ticks_are_rejected():
    for zone in ("Mars/Olympus_Mons", "", "../etc/passwd"):
        with pytest.raises(ValueError, match="is not a known time zone"):
            check_time_zone(zone)
    with pytest.raises(ValueError, match="is not a known time zone"):
        next_tick("* * * * *", "Mars/Olympus_Mons", utc(2025, 1, 1))
    with pytest.raises(ValueError, match="never ticks: no date matches it"):
        next_tick("0 0 30 2 *", "UTC", utc(2025, 1, 1))  # 30 February


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


# --- the model's validation and next tick ------------------------------------------------


def test_an_admin_schedule_is_validated_field_by_field():
    schedule = Schedule(
        name="workflow:mine",
        workflow_name="tests.nope",
        cron="every minute",
        time_zone="Mars/Olympus_Mons",
        args={"a": 1},
        kwargs={"scheduled_time": "now"},
    )
    with pytest.raises(ValidationError) as caught:
        schedule.full_clean()
    errors = caught.value.message_dict
    assert set(errors) == {"name", "workflow_name", "cron", "time_zone", "args", "kwargs"}
    assert "kept for schedules in code" in errors["name"][0]
    assert "No workflow named 'tests.nope'" in errors["workflow_name"][0]
    assert "scheduled_time is given by the schedule" in errors["kwargs"][0]
    schedule = Schedule(name="feb", workflow_name="tests.tick", cron="0 0 30 2 *")
    with pytest.raises(ValidationError, match="never ticks"):
        schedule.full_clean()
    Schedule(
        name="ok", workflow_name="tests.tick", cron="*/5 * * * *", time_zone=PARIS
    ).full_clean()


def test_saving_computes_the_next_tick_when_the_timing_changes():
    before = timezone.now()
    schedule = Schedule.objects.create(name="hourly", workflow_name="tests.tick", cron="0 * * * *")
    assert schedule.next_tick_at == next_tick("0 * * * *", "UTC", before)
    past = before - timedelta(days=2)
    Schedule.objects.filter(pk=schedule.pk).update(next_tick_at=past)
    schedule.refresh_from_db()
    schedule.missed_ticks = MissedTicks.CATCH_UP
    schedule.save()
    assert schedule.next_tick_at == past  # the timing did not change
    schedule.cron = "*/5 * * * *"
    schedule.save()
    assert before < schedule.next_tick_at <= timezone.now() + timedelta(minutes=5)
    # Enabled again: the ticks missed while disabled are not due.
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False, next_tick_at=past)
    schedule.refresh_from_db()
    schedule.enabled = True
    schedule.save(update_fields=["enabled"])
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.next_tick_at > before


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


def test_dispatch_starts_a_run_for_the_tick_with_scheduled_time(run_all):
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


# --- admin ----------------------------------------------------------------------------------

CHANGELIST = reverse("admin:django_durable_schedule_changelist")
ADD = reverse("admin:django_durable_schedule_add")


def change_url(schedule: Schedule) -> str:
    return reverse("admin:django_durable_schedule_change", args=[schedule.pk])


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return html.unescape(response.content.decode())


@pytest.fixture
def superuser(client):
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


def form_data(**fields) -> dict[str, str]:
    data = {
        "name": "nightly report",
        "workflow_name": "tests.tick",
        "cron": "0 3 * * *",
        "time_zone": PARIS,
        "missed_ticks": "catch_up",
        "args": '["eu"]',
        "kwargs": "{}",
        "enabled": "on",
    }
    return {**data, **fields}


def test_the_changelist_lists_code_and_admin_schedules(superuser, client):
    sync_code_schedules()
    every_minute("minutely")
    content = page(client.get(CHANGELIST))
    for text in (NEW_YEAR, "tests.new_year", "0 0 1 1 *", PARIS, "minutely", "* * * * *"):
        assert text in content
    for header in ("Next tick at", "Last tick at", "From code", "Missed ticks", "Time zone"):
        assert header in content


def test_the_add_form_shows_validation_errors_then_adds(superuser, client):
    content = page(client.get(ADD))
    assert "The IANA time zone the cron expression is read in" in content
    assert 'name="from_code"' not in content
    bad = form_data(
        cron="every night",
        time_zone="Mars/Olympus_Mons",
        workflow_name="tests.nope",
        kwargs='{"scheduled_time": 1}',
    )
    content = page(client.post(ADD, bad))
    assert "'every night' is not a cron expression" in content
    assert "'Mars/Olympus_Mons' is not a known time zone" in content
    assert "No workflow named 'tests.nope' is registered" in content
    assert "scheduled_time is given by the schedule" in content
    assert not Schedule.objects.exists()
    response = client.post(ADD, form_data())
    assert response.status_code == 302, page(response)
    schedule = Schedule.objects.get()
    assert (schedule.cron, schedule.time_zone, schedule.args) == ("0 3 * * *", PARIS, ["eu"])
    assert not schedule.from_code
    assert schedule.next_tick_at == next_tick("0 3 * * *", PARIS, schedule.created_at)


def test_changing_an_admin_schedule_recomputes_its_next_tick(superuser, client):
    schedule = every_minute("minutely")
    content = page(client.get(change_url(schedule)))
    assert 'name="cron"' in content and "Delete" in content
    # A worker moves the ticks on while the page is open: saving keeps what it wrote.
    Schedule.objects.filter(pk=schedule.pk).update(last_tick_at=this_minute())
    response = client.post(change_url(schedule), form_data(name="minutely", cron="0 * * * *"))
    assert response.status_code == 302, page(response)
    changed = Schedule.objects.get(pk=schedule.pk)
    assert changed.cron == "0 * * * *" and changed.next_tick_at.minute == 0
    assert changed.next_tick_at > timezone.now()
    assert changed.last_tick_at == this_minute()


def test_a_code_schedule_has_only_enabled_editable(superuser, client):
    sync_code_schedules()
    schedule = Schedule.objects.get(name=NEW_YEAR)
    content = page(client.get(change_url(schedule)))
    assert "the code owns this schedule" in content
    assert 'name="enabled"' in content
    for field in ("name", "cron", "time_zone", "workflow_name", "args", "kwargs"):
        assert f'name="{field}"' not in content
    response = client.post(change_url(schedule), {"cron": "* * * * *", "name": "mine"})
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.cron, schedule.name) == (False, "0 0 1 1 *", NEW_YEAR)
    assert (
        client.get(reverse("admin:django_durable_schedule_delete", args=[schedule.pk])).status_code
        == 403
    )


# --- manage.py durable schedules -------------------------------------------------------------


def durable_cmd(*args: str) -> str:
    out = io.StringIO()
    call_command("durable", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_command_lists_schedules_as_a_table_and_as_json():
    sync_code_schedules()
    every_minute("minutely", enabled=False)
    lines = durable_cmd("schedules").splitlines()
    assert lines[0].split()[:4] == ["NAME", "WORKFLOW", "CRON", "TIME"]
    assert lines[1].split()[:2] == ["minutely", "tests.tick"]
    assert " no " in lines[1] and lines[1].endswith("admin")
    assert lines[2].startswith(NEW_YEAR) and lines[2].endswith("code")
    data = json.loads(durable_cmd("schedules", "--json"))
    assert [item["name"] for item in data] == ["minutely", NEW_YEAR]
    code = data[1]
    assert (code["cron"], code["time_zone"], code["from_code"]) == ("0 0 1 1 *", PARIS, True)
    assert (
        datetime.fromisoformat(code["next_tick_at"])
        == Schedule.objects.get(name=NEW_YEAR).next_tick_at
    )
    assert code["last_tick_at"] is None and code["args"] == [] and code["kwargs"] == {}


def test_a_code_schedule_that_never_ticks_is_logged_and_does_not_stop_the_sync(declared, caplog):
    declared("tests.feb", schedule="0 0 30 2 *")  # the decorator accepts it: croniter parses it
    with caplog.at_level(logging.ERROR, logger="django_durable"):
        sync_code_schedules()
    assert "Schedule 'workflow:tests.feb' is stopped: '0 0 30 2 *' never ticks" in caplog.text
    assert Schedule.objects.get(name="workflow:tests.feb").next_tick_at is None
    assert Schedule.objects.filter(name=NEW_YEAR).exists()
