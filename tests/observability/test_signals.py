"""Django signals of a run's life: sent once the change is committed, wherever it is made
(the worker, the client, maintenance), and a receiver that raises breaks nothing."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

import django_durable as durable
from django_durable import Worker
from django_durable.models import Run, RunStatus
from django_durable.testing import run_until_finished
from django_durable.worker import unknown
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_completed_run_sends_started_then_finished(signals):
    handle = wf.add.start(1, 2)
    worker = Worker()
    worker.run_once()
    assert signals.names(handle.id) == ["run_started", "run_finished"]
    started, finished = signals.of(handle.id)
    # The sender is the workflow: @receiver(durable.run_finished, sender=add) hears only it.
    assert started.sender is wf.add and finished.sender is wf.add
    assert started.kwargs == {
        "run_id": handle.id,
        "workflow_name": "tests.add",
        "queue": "default",
        "worker_id": worker.id,
    }
    assert finished.kwargs == {
        "run_id": handle.id,
        "workflow_name": "tests.add",
        "status": "completed",
        "error": None,
    }


def test_a_failed_run_sends_finished_then_failed_with_its_error(signals):
    handle = wf.boom.start()
    Worker().run_once()
    assert signals.names(handle.id) == ["run_started", "run_finished", "run_failed"]
    _, finished, failed = signals.of(handle.id)
    assert finished.kwargs["status"] == "failed"
    error = failed.kwargs["error"]
    assert (error["type"], error["message"]) == ("ValueError", "boom")
    assert "Traceback" in error["traceback"]
    assert finished.kwargs["error"] == error


def test_a_step_that_will_be_tried_again_sends_step_retried(signals):
    handle = wf.flaky.start(1)
    run_until_finished(handle)
    assert handle.result(timeout=1) == 2
    # Started once: the claim after the backoff is not a start.
    assert signals.names(handle.id) == ["run_started", "step_retried", "run_finished"]
    retried = signals.of(handle.id)[1].kwargs
    assert (retried["step_name"], retried["position"], retried["attempt"]) == ("flaky", 0, 1)
    assert retried["error"]["type"] == "ConnectionError"
    assert retried["error"]["message"] == "try 1 failed"
    assert isinstance(retried["retry_at"], datetime)
    assert retried["retry_at"] > timezone.now() - timedelta(seconds=5)


def test_a_step_that_fails_for_good_sends_no_step_retried(signals):
    handle = wf.fatal.start()
    Worker().run_once()
    assert Run.objects.get(pk=handle.id).status == RunStatus.FAILED
    assert signals.names(handle.id) == ["run_started", "run_finished", "run_failed"]


def lose(handle) -> Worker:
    """Claim the run with a worker that then vanishes: its lease has expired."""
    lost = Worker()
    [_claim] = lost.claim(1)
    Run.objects.filter(pk=handle.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    return lost


def test_a_run_taken_over_from_a_lost_worker_sends_run_taken_over(signals):
    handle = wf.counted.start(2)
    lost = lose(handle)
    taker = Worker()
    taker.run_once()
    assert handle.result(timeout=1) == 1
    assert signals.names(handle.id) == ["run_started", "run_taken_over", "run_finished"]
    assert signals.of(handle.id)[0].kwargs["worker_id"] == lost.id  # it started there
    assert signals.of(handle.id)[1].kwargs == {
        "run_id": handle.id,
        "workflow_name": "tests.counted",
        "lost_worker": lost.id,
        "worker_id": taker.id,
        "takeovers": 1,
        "status": "pending",
    }


def test_a_run_lost_too_often_is_taken_over_as_failed(signals, settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_RECOVERIES": 0}
    handle = wf.counted.start(2)
    lose(handle)
    Worker().run_once()
    assert Run.objects.get(pk=handle.id).status == RunStatus.FAILED
    names = ["run_started", "run_taken_over", "run_finished", "run_failed"]
    assert signals.names(handle.id) == names
    assert signals.of(handle.id)[1].kwargs["status"] == "failed"
    assert signals.of(handle.id)[3].kwargs["error"]["type"] == "django_durable.WorkerLost"


def test_cancelling_a_run_that_never_started_sends_finished_from_the_client(signals):
    handle = wf.add.start(1, 2)
    durable.cancel(handle.id, "not needed")
    [finished] = signals.of(handle.id)
    assert finished.name == "run_finished"
    assert finished.kwargs["status"] == "cancelled"
    assert finished.kwargs["error"]["message"] == "not needed"


def test_signals_wait_for_the_commit_and_a_rollback_sends_none(signals):
    handle = wf.add.start(1, 2)
    with transaction.atomic():
        durable.cancel(handle.id, "inside a transaction")
        assert Run.objects.get(pk=handle.id).status == RunStatus.CANCELLED
        assert signals.names(handle.id) == []  # not committed yet
    assert signals.names(handle.id) == ["run_finished"]

    kept = wf.add.start(1, 2)
    with pytest.raises(RuntimeError):
        cancel_in_a_failing_request(kept.id)
    assert Run.objects.get(pk=kept.id).status == RunStatus.PENDING
    assert signals.names(kept.id) == []


def cancel_in_a_failing_request(run_id: str) -> None:
    with transaction.atomic():
        durable.cancel(run_id)
        raise RuntimeError("the request failed")


def test_cancelling_a_waiting_run_sends_finished_once_the_worker_ends_it(signals):
    handle = wf.sleeper.start(3600)
    worker = Worker()
    worker.run_once()
    assert Run.objects.get(pk=handle.id).status == RunStatus.WAITING
    durable.cancel(handle.id, "changed my mind")
    assert signals.names(handle.id) == ["run_started"]  # asked to stop: not ended yet
    worker.run_once()
    assert signals.names(handle.id) == ["run_started", "run_finished"]
    finished = signals.of(handle.id)[1].kwargs
    assert (finished["status"], finished["error"]["message"]) == ("cancelled", "changed my mind")


def test_cancelling_a_parent_ends_its_children_that_never_started(signals):
    parent = wf.parent_fanout.start(2)
    Worker().run_once()  # starts both children and waits for them
    children = list(Run.objects.filter(parent_id=parent.id).values_list("pk", flat=True))
    assert len(children) == 2
    durable.cancel(parent.id)
    for child in children:
        [finished] = signals.of(str(child))
        assert (finished.name, finished.kwargs["status"]) == ("run_finished", "cancelled")
        assert finished.sender is wf.child_double


def test_finished_is_sent_after_the_workers_transaction_commits(signals):
    # A parent that ends closes its children in the same transaction: the child that never
    # started is cancelled there, and its signal waits for the commit.
    in_transaction = {}

    def note(run_id, **kwargs):
        in_transaction[run_id] = transaction.get_connection().in_atomic_block

    durable.run_finished.connect(note, weak=False, dispatch_uid="tests.in_transaction")
    try:
        parent = wf.parent_leaves.start("cancel")
        Worker().run_once()
    finally:
        durable.run_finished.disconnect(dispatch_uid="tests.in_transaction")
    child = parent.result(timeout=1)
    assert Run.objects.get(pk=child).status == RunStatus.CANCELLED
    assert signals.names(child) == ["run_finished"]
    assert in_transaction == {child: False, parent.id: False}


def test_a_run_failed_because_nobody_knows_its_workflow_sends_failed(
    signals, settings, monkeypatch
):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "UNKNOWN_WORKFLOW_TIMEOUT": 60}
    # A worker process that started an hour ago.
    monkeypatch.setattr(unknown, "_process_started", timezone.now() - timedelta(hours=1))
    run = Run.objects.create(
        workflow_name="deploy.not_here_yet",
        input={"args": [], "kwargs": {}},
        available_at=timezone.now() - timedelta(seconds=61),
    )
    Worker().run_once()
    assert signals.names(str(run.pk)) == ["run_finished", "run_failed"]
    failed = signals.of(str(run.pk))[1]
    assert failed.sender is None  # no workflow registered under that name
    assert failed.kwargs["error"]["type"] == "django_durable.exceptions.WorkflowNotFound"


def test_a_receiver_that_raises_is_logged_and_breaks_nothing(signals, caplog):
    caplog.set_level(logging.INFO, logger="django_durable")

    def broken(**kwargs):
        raise RuntimeError("the chat server is down")

    durable.run_finished.connect(broken, weak=False, dispatch_uid="tests.broken")
    try:
        handle = wf.add.start(1, 2)
        Worker().run_once()
    finally:
        durable.run_finished.disconnect(dispatch_uid="tests.broken")
    assert handle.result(timeout=1) == 3
    assert signals.names(handle.id) == ["run_started", "run_finished"]  # the others ran
    [record] = [r for r in caplog.records if r.name == "django_durable" and r.levelno >= 40]
    assert record.getMessage() == (
        "Receiver test_a_receiver_that_raises_is_logged_and_breaks_nothing.<locals>.broken of "
        f"durable.run_finished raised for run {handle.id} (RuntimeError: the chat server is "
        "down); the run goes on"
    )
    assert (record.durable_run_id, record.durable_workflow) == (handle.id, "tests.add")
    # Django logs the traceback.
    [django_line] = [r for r in caplog.records if r.name == "django.dispatch"]
    assert isinstance(django_line.exc_info[1], RuntimeError)
