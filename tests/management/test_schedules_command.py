"""Tests of ``django_durable/management/commands/durable.py``: ``durable schedules``."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest
from django.core.management import call_command

from django_durable.models import Schedule
from django_durable.orchestration.schedules import sync_code_schedules

pytestmark = pytest.mark.django_db(transaction=True)

PARIS = "Europe/Paris"
NEW_YEAR = "workflow:tests.new_year"


def every_minute(name: str = "minutely", **fields) -> Schedule:
    """A schedule as the admin makes them, of ``tests.tick``, due ``fields`` say when."""
    values = {"workflow_name": "tests.tick", "cron": "* * * * *", "time_zone": "UTC", **fields}
    return Schedule.objects.create(name=name, **values)


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
