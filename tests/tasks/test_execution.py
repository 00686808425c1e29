"""Tasks executed as runs, in-process (``django_durable.testing``): results, errors, retries.

Every execution is a worker's, in the test's thread: checkpoints commit, the run's retry
policy runs failed attempts again, and the result is read back from the run.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from django_durable import Worker
from django_durable.exceptions import SerializationError
from django_durable.models import Run, Step
from django_durable.tasks import compat
from django_durable.testing import run_until_finished
from tests.testapp import tasks as t
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

Status = compat.TaskResultStatus


def finished(result):
    run_until_finished(result.id)
    result.refresh()
    return result


def test_a_task_runs_as_one_step_and_returns_its_value():
    result = finished(t.add.enqueue(20, 22))
    assert result.status == Status.SUCCESSFUL
    assert result.return_value == 42
    assert (result.attempts, result.errors) == (1, [])
    run = Run.objects.get(pk=result.id)
    assert (result.started_at, result.finished_at) == (run.started_at, run.finished_at)
    assert result.last_attempted_at == run.started_at
    assert run.result == 42
    (step,) = Step.objects.filter(run_id=result.id)
    assert (step.kind, step.name, step.status) == ("step", "add", "completed")


def test_the_return_value_is_json_as_the_framework_gives_it():
    result = finished(t.echo.enqueue(1, pair=(2, 3)))
    assert result.return_value == {"args": [1], "kwargs": {"pair": [2, 3]}}


def test_an_async_task_runs_too():
    assert finished(t.add_async.enqueue(1, 2)).return_value == 3


def test_a_failure_keeps_its_exception_class_and_traceback():
    result = finished(t.fail.enqueue("boom"))
    assert result.status == Status.FAILED
    (error,) = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "raise ValueError(message)" in error.traceback
    assert error.traceback.rstrip().endswith("ValueError: boom")
    assert result.attempts == 1
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018


def test_an_exception_that_cannot_be_raised_again_keeps_its_own_class():
    # Its constructor takes other arguments than its message: the run keeps a StepFailed.
    result = finished(t.refuse.enqueue(7))
    assert Run.objects.get(pk=result.id).error["type"] == "django_durable.exceptions.StepFailed"
    (error,) = result.errors
    assert error.exception_class is t.RefusedError
    assert error.traceback.rstrip().endswith("tests.testapp.tasks.RefusedError: refused 7: no")


def test_a_return_value_that_is_not_json_fails_the_task_and_says_why():
    result = finished(t.returns_a_date.enqueue())
    assert result.status == Status.FAILED
    (error,) = result.errors
    assert error.exception_class is SerializationError
    assert "The return value of task 'tests.testapp.tasks.returns_a_date' is a datetime.date" in (
        error.traceback
    )


def test_failed_attempts_are_retried_by_the_run_and_counted():
    result = finished(t.flaky.enqueue(3))
    assert result.status == Status.SUCCESSFUL
    assert result.return_value == 3  # what context.attempt said in the attempt that passed
    assert (result.attempts, len(result.worker_ids), result.errors) == (3, 3, [])
    assert Run.objects.get(pk=result.id).attempt == 3


def test_between_attempts_the_task_is_ready_with_the_error_of_the_last():
    result = t.flaky.enqueue(3)
    assert Worker(concurrency=1).run_once() == 1
    result.refresh()
    assert result.status == Status.READY
    assert result.attempts == 1
    assert [error.exception_class for error in result.errors] == [RuntimeError]
    assert "RuntimeError: attempt 1 fails" in result.errors[0].traceback


def test_a_task_that_keeps_failing_fails_after_the_last_attempt():
    result = finished(t.flaky.enqueue(5))
    assert result.status == Status.FAILED
    assert result.attempts == 3
    (error,) = result.errors
    assert error.traceback.rstrip().endswith("RuntimeError: attempt 3 fails")


def test_durable_retry_runs_a_failed_task_again_with_the_next_attempt():
    result = finished(t.flaky.enqueue(4))
    assert (result.status, result.attempts) == (Status.FAILED, 3)
    call_command("durable", "runs", "retry", result.id, stdout=io.StringIO())
    result = finished(result)
    assert (result.status, result.return_value, result.attempts) == (Status.SUCCESSFUL, 4, 4)


def test_the_context_has_the_runs_attempt_and_the_result():
    result = finished(t.context_facts.enqueue())
    assert result.return_value == {
        "attempt": 1,
        "id": result.id,
        "status": "RUNNING",
        "attempts": 1,
    }


def test_signals_say_when_a_task_starts_and_finishes(signals):
    finished(t.add.enqueue(1, 2))
    finished(t.fail.enqueue("no"))
    assert signals.sent == [
        ("enqueued", "READY", 0, []),
        ("started", "RUNNING", 1, []),
        ("finished", "SUCCESSFUL", 1, []),
        ("enqueued", "READY", 0, []),
        ("started", "RUNNING", 1, []),
        ("finished", "FAILED", 1, ["builtins.ValueError"]),
    ]


def test_a_retried_attempt_is_not_finished(signals):
    finished(t.flaky.enqueue(2))
    assert [sent[:3] for sent in signals.sent] == [
        ("enqueued", "READY", 0),
        ("started", "RUNNING", 1),
        ("started", "RUNNING", 2),
        ("finished", "SUCCESSFUL", 2),
    ]


def test_higher_priority_runs_first():
    low = t.record.using(priority=-10).enqueue("low")
    high = t.record.using(priority=10).enqueue("high")
    middle = t.record.enqueue("middle")
    while Worker(concurrency=1).run_once():
        pass
    assert list(Execution.objects.order_by("id").values_list("label", flat=True)) == [
        "high",
        "middle",
        "low",
    ]
    assert {t.record.get_result(r.id).status for r in (low, high, middle)} == {Status.SUCCESSFUL}


def test_run_after_holds_the_task_back_until_then():
    result = t.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    assert Worker().run_once() == 0
    result.refresh()
    assert (result.status, result.attempts) == (Status.READY, 0)
    Run.objects.filter(pk=result.id).update(available_at=timezone.now())  # an hour later
    assert Worker().run_once() == 1
    result.refresh()
    assert result.return_value == 2


def test_a_task_runs_on_the_workers_of_its_queue():
    result = t.send_email.enqueue("ada@example.com")
    assert Worker(queues=["default"]).run_once() == 0
    assert Worker(queues=["emails"]).run_once() == 1
    result.refresh()
    assert result.return_value == "sent to ada@example.com"


def test_aenqueue_and_aget_result():
    result = async_to_sync(t.add.aenqueue)(5, 6)
    assert result.status == Status.READY
    run_until_finished(result.id)
    again = async_to_sync(t.add.aget_result)(result.id)
    assert (again.status, again.return_value) == (Status.SUCCESSFUL, 11)
    async_to_sync(result.arefresh)()
    assert result.return_value == 11


def test_the_http_api_reads_a_task_run_and_cannot_start_one():
    result = finished(t.add.enqueue(2, 2))
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_superuser("root", password="pw"))
    body = api.get(f"/durable/runs/{result.id}/").json()
    assert (body["workflow"], body["status"], body["result"]) == (
        "tests.testapp.tasks.add",
        "completed",
        4,
    )
    started = api.post(
        "/durable/runs/", {"workflow": "tests.testapp.tasks.add", "args": [1, 1]}, format="json"
    )
    assert (started.status_code, started.json()["code"]) == (403, "not_startable")
