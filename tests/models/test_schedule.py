"""Tests of ``django_durable/models/orchestration.py``: the Schedule model's validation and save."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from django_durable.core.cron import next_tick
from django_durable.models import MissedTicks, Schedule

pytestmark = pytest.mark.django_db(transaction=True)

PARIS = "Europe/Paris"


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
