"""Counters that tell the truth: how many times a step's body ran (``executions``), how many
of those ended (``attempts``), and how long a sleep slept (``duration_ms``)."""

from __future__ import annotations

import pytest

from django_durable.models import Step, StepStatus
from django_durable.testing import run_until_finished
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def step_at(handle, name: str) -> Step:
    return Step.objects.get(run_id=handle.id, name=name)


def test_a_step_that_ran_once_shows_one_execution_and_one_attempt():
    handle = wf.add.start(1, 2)
    run_until_finished(handle)
    step = step_at(handle, "add")
    assert (step.status, step.attempts, step.executions) == (StepStatus.COMPLETED, 1, 1)


def test_a_retried_step_shows_every_execution():
    handle = wf.flaky.start(2)
    run_until_finished(handle)
    step = step_at(handle, "flaky")
    assert Execution.objects.filter(run_id=handle.id, label="flaky").count() == 3
    assert (step.attempts, step.executions) == (3, 3)


def test_operations_without_a_body_count_no_executions():
    handle = wf.sleeper.start(0.05)
    run_until_finished(handle)
    assert step_at(handle, "sleep").executions is None


def test_a_sleep_lasts_the_time_it_slept():
    handle = wf.sleeper.start(1.0)
    run_until_finished(handle)
    sleep = step_at(handle, "sleep")
    assert sleep.status == StepStatus.COMPLETED
    assert sleep.duration_ms is not None and sleep.duration_ms >= 1000, sleep.duration_ms
    # It still replays as the time it slept until.
    assert handle.result(timeout=1) == "woke"


def test_a_sleep_that_is_already_over_lasts_no_time():
    handle = wf.sleeper.start(0)
    run_until_finished(handle)
    sleep = step_at(handle, "sleep")
    assert sleep.duration_ms is not None and sleep.duration_ms < 1000
