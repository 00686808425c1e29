"""DurableBackend without a worker: enqueue, get_result, what maps onto the run, validation.

The framework comes from ``django.tasks`` on Django 6.0 and from the django-tasks backport
on Django 5.2 (``compat``): this module runs against whichever is installed.
"""

from __future__ import annotations

import io
import json
import math
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

import django_durable as durable
from django_durable.declarations.registry import get_workflow, unregister
from django_durable.exceptions import SerializationError
from django_durable.models import Run
from django_durable.tasks import DurableBackend, backend, compat
from tests.testapp import tasks as t
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db

framework = sys.modules[compat.PACKAGE]
exceptions = sys.modules[f"{compat.PACKAGE}.exceptions"]


def test_the_configured_backends_are_durable_backends():
    assert isinstance(framework.task_backends["default"], DurableBackend)
    assert isinstance(framework.task_backends["retrying"], DurableBackend)
    features = framework.default_task_backend
    assert features.supports_defer and features.supports_async_task
    assert features.supports_get_result and features.supports_priority


def test_enqueue_starts_a_run_whose_id_is_the_results_id(django_assert_num_queries):
    with django_assert_num_queries(4):  # savepoint, INSERT, release, the times read back
        result = t.add.enqueue(2, 3)
    run = Run.objects.get(pk=result.id)
    assert run.workflow_name == "tests.testapp.tasks.add"
    assert run.status == "pending"
    assert run.get_input() == ([2, 3], {})
    assert result.status == compat.TaskResultStatus.READY
    assert result.task == t.add
    assert (result.args, result.kwargs, result.backend) == ([2, 3], {}, "default")
    assert result.enqueued_at == run.created_at
    assert result.started_at is result.finished_at is result.last_attempted_at is None
    assert (result.attempts, result.worker_ids, result.errors) == (0, [], [])
    assert not result.is_finished
    with pytest.raises(ValueError, match="Task has not finished yet"):
        result.return_value  # noqa: B018


def test_get_result_reads_the_same_result_back(django_assert_num_queries):
    result = t.echo.enqueue(1, "two", three=[3])
    with django_assert_num_queries(1):
        again = framework.default_task_backend.get_result(result.id)
    assert again == result
    assert t.echo.get_result(result.id) == result
    result.refresh()
    assert result == again


def test_enqueue_joins_the_callers_transaction():
    def request() -> None:
        with transaction.atomic():
            t.add.enqueue(1, 2)
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        request()
    assert not Run.objects.exists()


def test_a_cancelled_task_failed():
    result = t.add.enqueue(1, 2)
    durable.cancel(result.id, reason="not needed")
    result.refresh()
    assert result.status == compat.TaskResultStatus.FAILED
    assert [error.exception_class_path for error in result.errors] == [
        "django_durable.exceptions.Cancelled"
    ]


def test_priority_run_after_and_queue_name_map_onto_the_run():
    later = timezone.now() + timedelta(hours=1)
    result = t.add.using(priority=-7, queue_name="emails", run_after=later).enqueue(1, 1)
    run = Run.objects.get(pk=result.id)
    assert (run.priority, run.queue, run.available_at) == (-7, "emails", later)
    declared = t.send_email.enqueue("ada@example.com")
    run = Run.objects.get(pk=declared.id)
    assert (run.priority, run.queue) == (5, "emails")
    # Read back, the result's task says how the run was enqueued.
    task = t.add.get_result(result.id).task
    assert (task.priority, task.queue_name) == (-7, "emails")


def test_a_run_after_in_the_past_makes_the_run_ready_now():
    result = t.add.using(run_after=timezone.now() - timedelta(days=1)).enqueue(1, 1)
    assert Run.objects.ready().filter(pk=result.id).exists()


def test_arguments_are_normalised_as_json():
    result = t.echo.enqueue((1, 2), b"bytes", nested={"pair": (3, 4)})
    assert result.args == [[1, 2], "bytes"]
    assert result.kwargs == {"nested": {"pair": [3, 4]}}
    assert Run.objects.get(pk=result.id).get_input() == (result.args, result.kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "said"),
    [
        ((datetime(2025, 1, 2, tzinfo=UTC),), {}, "Argument 1 of task "),
        ((), {"when": {"days": [1, {2}]}}, "Argument when= of task "),
        ((), {"keys": {1: "one"}}, "a dict with the key 1"),
        ((math.nan,), {}, "the float nan"),
        ((b"\xff",), {}, "bytes that are not UTF-8 text"),
        (({"__durable__": "date", "v": "2025-01-02"},), {}, "django-durable keeps it"),
    ],
)
def test_arguments_that_are_not_json_are_refused_clearly(args, kwargs, said):
    with pytest.raises(SerializationError, match="which is not JSON") as caught:
        t.echo.enqueue(*args, **kwargs)
    assert said in str(caught.value)
    assert "'tests.testapp.tasks.echo'" in str(caught.value)
    assert isinstance(caught.value, TypeError)  # what the framework's own backends raise
    assert not Run.objects.exists()


def test_a_nested_path_says_where_the_value_is():
    with pytest.raises(SerializationError, match=r"\(at \['days'\]\[1\]\) is a set"):
        t.echo.enqueue(when={"days": [1, {2}]})


def test_an_unknown_queue_is_refused():
    with pytest.raises(compat.InvalidTask, match="Queue 'nowhere' is not valid for backend"):
        t.add.using(queue_name="nowhere").enqueue(1, 2)
    assert not Run.objects.exists()


def test_the_framework_checks_hold():
    with pytest.raises(compat.InvalidTask, match="aware datetime"):
        t.add.using(run_after=datetime(2030, 1, 1)).enqueue(1, 2)
    with pytest.raises(compat.InvalidTask, match="priority must be a whole number"):
        t.add.using(priority=101).enqueue(1, 2)

    def local(a):
        return a

    with pytest.raises(compat.InvalidTask, match="module level"):
        framework.task()(local)
    with pytest.raises(compat.InvalidTask, match="first argument of 'context'"):
        framework.task(takes_context=True)(wf.executed)
    assert not Run.objects.exists()


def test_a_task_gets_a_workflow_of_its_own_named_by_its_path():
    workflow = get_workflow("tests.testapp.tasks.add")
    assert workflow.max_attempts == 1
    assert get_workflow("tests.testapp.tasks.flaky").max_attempts == 3  # backend "retrying"
    listed = io.StringIO()
    call_command("durable", "workflows", "--json", stdout=listed)
    names = {item["name"]: item for item in json.loads(listed.getvalue())}
    assert names["tests.testapp.tasks.flaky"]["max_attempts"] == 3
    assert names["tests.testapp.tasks.send_email"]["http_start"] is False


def test_the_cli_and_the_admin_show_the_tasks_name(admin_client):
    result = t.send_email.enqueue("ada@example.com")
    out = io.StringIO()
    call_command(
        "durable", "runs", "list", "--workflow", "tests.testapp.tasks.send_email", stdout=out
    )
    assert result.id[-12:] in out.getvalue()
    page = admin_client.get("/admin/django_durable/run/")
    assert page.status_code == 200
    assert "tests.testapp.tasks.send_email" in page.content.decode()


def test_get_result_of_no_run_or_not_a_task_run():
    with pytest.raises(compat.TaskResultDoesNotExist):
        t.add.get_result("123")
    with pytest.raises(compat.TaskResultDoesNotExist):
        t.add.get_result("01a24538-0000-7000-8000-000000000000")
    workflow_run = wf.add.start(1, 2)
    with pytest.raises(compat.TaskResultDoesNotExist, match="not of a task"):
        framework.default_task_backend.get_result(workflow_run.id)
    other = t.echo.enqueue()
    with pytest.raises(exceptions.TaskResultMismatch):
        t.add.get_result(other.id)


def test_get_result_of_a_task_that_cannot_be_imported_says_why():
    run = Run.objects.create(workflow_name="tests.tasks.gone.away", input={"args": []})
    with pytest.raises(compat.TaskResultDoesNotExist, match="not a task this process can import"):
        framework.default_task_backend.get_result(str(run.pk))


def test_get_result_imports_the_module_of_a_task_this_process_never_imported():
    sys.modules.pop("tests.tasks.elsewhere", None)
    run = Run.objects.create(
        workflow_name="tests.tasks.elsewhere.ping", input={"args": [], "kwargs": {}}
    )
    result = framework.default_task_backend.get_result(str(run.pk))
    assert result.task.module_path == "tests.tasks.elsewhere.ping"
    assert "tests.tasks.elsewhere" in sys.modules


def test_enqueue_sends_task_enqueued(signals):
    t.add.enqueue(1, 2)
    assert signals.sent == [("enqueued", "READY", 0, [])]


def test_options_are_checked():
    with pytest.raises(ImproperlyConfigured, match="unknown keys NOPE"):
        DurableBackend("x", {"OPTIONS": {"NOPE": 1}})
    with pytest.raises(ImproperlyConfigured, match="must be a dict of RetryPolicy arguments"):
        DurableBackend("x", {"OPTIONS": {"RETRY": {"retry_on": "ValueError"}}})
    with pytest.raises(ImproperlyConfigured, match="not a valid retry policy"):
        DurableBackend("x", {"OPTIONS": {"RETRY": {"max_attempts": 0}}})
    assert DurableBackend("x", {"OPTIONS": {"RETRY": {"max_attempts": 4}}}).retry.max_attempts == 4


def test_the_check_wants_django_durable_installed(monkeypatch):
    assert framework.default_task_backend.check() == []
    monkeypatch.setattr(backend.apps, "is_installed", lambda name: False)
    (error,) = framework.default_task_backend.check()
    assert error.id == "django_durable.E004"


def test_a_name_taken_by_a_workflow_makes_the_task_invalid():
    durable.workflow(name="tests.tasks.test_backend.clash")(lambda ctx: None)
    try:
        with pytest.raises(compat.InvalidTask, match="registered twice"):
            framework.task()(clash)
    finally:
        unregister("tests.tasks.test_backend.clash")


def clash() -> None:
    """A module-level function whose dotted path a workflow took first."""
