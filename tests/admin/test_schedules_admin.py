"""Tests of ``django_durable/admin``'s schedule pages: changelist, add and change forms."""

from __future__ import annotations

import html
from datetime import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from django_durable.core.cron import next_tick
from django_durable.models import Schedule
from django_durable.orchestration.schedules import sync_code_schedules

pytestmark = pytest.mark.django_db(transaction=True)

PARIS = "Europe/Paris"
NEW_YEAR = "workflow:tests.new_year"


def this_minute() -> datetime:
    return timezone.now().replace(second=0, microsecond=0)


def every_minute(name: str = "minutely", **fields) -> Schedule:
    """A schedule as the admin makes them, of ``tests.tick``, due ``fields`` say when."""
    values = {"workflow_name": "tests.tick", "cron": "* * * * *", "time_zone": "UTC", **fields}
    return Schedule.objects.create(name=name, **values)


CHANGELIST = reverse("admin:django_durable_schedule_changelist")
ADD = reverse("admin:django_durable_schedule_add")


def change_url(schedule: Schedule) -> str:
    return reverse("admin:django_durable_schedule_change", args=[schedule.pk])


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return html.unescape(response.content.decode())


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
    tick = this_minute()  # once: the minute may turn while the test runs
    Schedule.objects.filter(pk=schedule.pk).update(last_tick_at=tick)
    response = client.post(change_url(schedule), form_data(name="minutely", cron="0 * * * *"))
    assert response.status_code == 302, page(response)
    changed = Schedule.objects.get(pk=schedule.pk)
    assert changed.cron == "0 * * * *" and changed.next_tick_at.minute == 0
    assert changed.next_tick_at > timezone.now()
    assert changed.last_tick_at == tick


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
