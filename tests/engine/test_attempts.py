"""Every attempt of a step keeps its error readable, not only the last one."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from django_durable.models import Step, StepStatus
from django_durable.testing import run_all
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def step_of(handle) -> Step:
    return Step.objects.get(run_id=handle.id, name="flaky")


def test_a_step_that_succeeded_after_failures_keeps_their_errors():
    handle = wf.flaky.start(2)
    run_all()
    assert handle.result() == 3
    step = step_of(handle)
    assert (step.status, step.attempts) == (StepStatus.COMPLETED, 3)
    earlier = step.error["earlier"]
    assert [(e["attempt"], e["message"]) for e in earlier] == [
        (1, "try 1 failed"),
        (2, "try 2 failed"),
    ]
    assert all(e["type"] == "ConnectionError" and e["duration_ms"] >= 0 for e in earlier)
    assert earlier[0]["at"]["__durable__"] == "datetime"
    assert "type" not in step.error  # the step did not fail
    assert step.get_result() == 3


def test_a_step_that_gave_up_has_its_last_error_and_the_earlier_ones():
    handle = wf.flaky.start(10)
    run_all()
    step = step_of(handle)
    assert (step.status, step.attempts) == (StepStatus.FAILED, 4)
    assert step.error["message"] == "try 4 failed"
    assert [e["message"] for e in step.error["earlier"]] == [
        "try 1 failed",
        "try 2 failed",
        "try 3 failed",
    ]


def test_a_step_that_worked_at_once_records_no_error():
    handle = wf.flaky.start(0)
    run_all()
    assert step_of(handle).error is None


def test_the_api_shows_no_error_for_a_step_that_succeeded_in_the_end(django_user_model):
    handle = wf.flaky.start(1)
    run_all()
    staff = django_user_model.objects.create_superuser("root", "r@example.com", "pw")
    api = APIClient()
    api.force_authenticate(staff)
    [step] = api.get(f"/durable/runs/{handle.id}/").json()["steps"]
    assert step["attempts"] == 2 and step["error"] is None
    assert isinstance(dt.datetime.fromisoformat(step["recorded_at"]), dt.datetime)
