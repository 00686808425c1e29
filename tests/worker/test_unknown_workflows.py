"""A run of a workflow this worker does not know waits for a worker that knows it.

Deploys reach workers one at a time, and a worker started before its ``workflows.py`` was
saved lacks what was added since. Such a worker leaves the run alone (the claim takes only
the workflows it registers), says so once in its log, and the run fails only when no live
worker has known its workflow for ``UNKNOWN_WORKFLOW_TIMEOUT``.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from django_durable import Worker
from django_durable.declarations.registry import registered_workflows
from django_durable.models import Run, RunStatus, WorkerProcess
from django_durable.store.claims import claim_runs
from django_durable.testing import run_ready
from django_durable.worker import unknown
from tests.conftest import wait_for
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

UNKNOWN = "deploy.not_here_yet"


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch):
    # Each test is a new worker process: nothing warned yet, started an hour ago.
    monkeypatch.setattr(unknown, "_warned", set())
    monkeypatch.setattr(unknown, "_process_started", timezone.now() - timedelta(hours=1))


def stray(name: str = UNKNOWN, *, ready_for: float = 0.0) -> Run:
    """A run of a workflow no code here registers, ready for ``ready_for`` seconds."""
    return Run.objects.create(
        workflow_name=name,
        input={"args": [], "kwargs": {}},
        available_at=timezone.now() - timedelta(seconds=ready_for),
    )


def timeout(settings, seconds: float | None) -> None:
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "UNKNOWN_WORKFLOW_TIMEOUT": seconds}


def other_worker(*, knows: list[str], seen_ago: float = 0.0, stopped: bool = False) -> None:
    seen = timezone.now() - timedelta(seconds=seen_ago)
    WorkerProcess.objects.create(
        id=f"elsewhere:{len(knows)}:{seen_ago}",
        hostname="elsewhere",
        pid=1,
        queues=["default"],
        concurrency=1,
        workflows=knows,
        started_at=timezone.now() - timedelta(hours=2),
        last_seen_at=seen,
        stopped_at=seen if stopped else None,
    )


def test_a_worker_leaves_a_run_of_a_workflow_it_does_not_know():
    run = stray()
    good = wf.add.start(1, 1)
    Worker().run_once()
    run.refresh_from_db()
    # Never claimed: not failed, not even touched.
    assert (run.status, run.lease_token, run.error, run.started_at) == (
        RunStatus.PENDING,
        0,
        None,
        None,
    )
    assert good.result(timeout=1) == 2


def test_the_claim_takes_only_the_workflows_it_is_given():
    stray()
    known = wf.add.start(1, 1)
    options = {"worker_id": "w", "queues": ["default"], "limit": 5, "lease_seconds": 10}
    assert claim_runs(**options, workflows=["nothing.else"]) == []
    [claim] = claim_runs(**options, workflows=["tests.add", "nothing.else"])
    assert str(claim.run_id) == str(known.id)
    assert claim_runs(**options, workflows=["tests.add"]) == []  # the stray is left


def test_the_warning_is_logged_once_per_workflow_per_process(caplog):
    stray()
    stray()
    stray("deploy.also_missing")
    caplog.set_level(logging.INFO, logger="django_durable")
    for _ in range(3):  # three workers of one process (the test helpers make one per round)
        Worker().run_once()
    worker = Worker()
    for _ in range(3):  # and one worker polling three times
        worker._unknown.next_look = 0.0
        worker.run_once()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([m for m in warnings if f"'{UNKNOWN}'" in m]) == 1, warnings
    assert len([m for m in warnings if "'deploy.also_missing'" in m]) == 1, warnings
    [message] = [m for m in warnings if f"'{UNKNOWN}'" in m]
    assert "does not know workflow" in message
    assert "no live worker knows it" in message
    assert "UNKNOWN_WORKFLOW_TIMEOUT" in message


def test_the_warning_names_the_live_workers_that_know_it(caplog):
    stray()
    other_worker(knows=[UNKNOWN])
    caplog.set_level(logging.INFO, logger="django_durable")
    Worker().run_once()
    [message] = [r.getMessage() for r in caplog.records if f"'{UNKNOWN}'" in r.getMessage()]
    assert "elsewhere" in message


def test_a_run_no_live_worker_knows_fails_after_the_timeout(settings):
    timeout(settings, 60)
    old = stray(ready_for=61)
    young = stray(ready_for=30)
    good = wf.add.start(2, 2)
    Worker().run_once()
    old.refresh_from_db()
    young.refresh_from_db()
    assert old.status == RunStatus.FAILED
    assert old.finished_at is not None
    assert old.error["type"] == "django_durable.exceptions.WorkflowNotFound"
    message = old.error["message"]
    assert f"'{UNKNOWN}'" in message
    assert "no live worker registers it" in message
    assert "UNKNOWN_WORKFLOW_TIMEOUT" in message
    assert young.status == RunStatus.PENDING  # not ready for long enough yet
    assert good.result(timeout=1) == 4


def test_a_live_worker_that_knows_the_workflow_keeps_its_runs_waiting(settings):
    timeout(settings, 60)
    run = stray(ready_for=3600)
    other_worker(knows=[UNKNOWN])
    Worker().run_once()
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING


def test_the_timeout_counts_from_the_last_time_a_worker_that_knew_it_was_seen(settings):
    timeout(settings, 60)
    run = stray(ready_for=3600)
    other_worker(knows=[UNKNOWN], seen_ago=30, stopped=True)  # it stopped 30 s ago
    Worker().run_once()
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING
    WorkerProcess.objects.update(last_seen_at=timezone.now() - timedelta(seconds=61))
    WorkerProcess.objects.update(stopped_at=timezone.now() - timedelta(seconds=61))
    Worker().run_once()
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED


def test_the_timeout_counts_only_while_workers_run(settings, monkeypatch):
    # Every worker was down; the first one back does not fail the runs that piled up
    # meanwhile: the workers that know their workflow may be a minute behind it.
    timeout(settings, 60)
    monkeypatch.setattr(unknown, "_process_started", timezone.now())
    run = stray(ready_for=3600)
    Worker().run_once()
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING


def test_no_timeout_leaves_the_run_waiting_for_ever(settings):
    timeout(settings, None)
    run = stray(ready_for=10 * 86400)
    Worker().run_once()
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING


def test_a_child_failed_for_its_unknown_workflow_wakes_its_parent(settings):
    timeout(settings, 60)
    parent = wf.add.start(1, 1)
    Run.objects.filter(pk=parent.id).update(
        status=RunStatus.WAITING, wake_on="c:placeholder", waiting_for="child"
    )
    child = stray(ready_for=61)
    Run.objects.filter(pk=parent.id).update(wake_on=f"c:{child.pk}")
    Run.objects.filter(pk=child.pk).update(parent_id=parent.id, depth=1, parent_position=0)
    Worker().run_once()
    assert Run.objects.get(pk=child.pk).status == RunStatus.FAILED
    assert Run.objects.get(pk=parent.id).status != RunStatus.WAITING


def test_the_test_helpers_leave_it_too():
    run = stray()
    assert run_ready() == 0
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING


def test_a_worker_records_the_workflows_it_knows():
    worker = Worker()
    worker._register()
    row = WorkerProcess.objects.get(pk=worker.id)
    assert row.workflows == sorted(registered_workflows())
    assert "tests.add" in row.workflows


# --- real worker processes -------------------------------------------------------------

FAST = ("--poll-interval", "0.1")
WITHOUT_ADD = {"DURABLE_TEST_HIDDEN_WORKFLOWS": "tests.add"}  # its code predates tests.add


def registered(proc) -> WorkerProcess:
    return wait_for(lambda: WorkerProcess.objects.filter(pid=proc.pid).first(), 30, "registered")


@pytest.mark.slow
def test_a_worker_without_the_code_leaves_the_run_to_one_with_it(worker_processes):
    handle = wf.add.start(2, 3)
    old = worker_processes.start(*FAST, extra_env=WITHOUT_ADD)
    assert "tests.add" not in registered(old).workflows
    warned = "does not know workflow 'tests.add'"
    wait_for(lambda: warned in worker_processes.logs(), 30, "the old worker's warning")
    time.sleep(1.0)  # ten polls of the old worker
    run = Run.objects.get(pk=handle.id)
    assert (run.status, run.lease_token) == (RunStatus.PENDING, 0), worker_processes.logs()
    new = worker_processes.start(*FAST)
    assert "tests.add" in registered(new).workflows
    assert handle.result(timeout=30) == 5, worker_processes.logs()
    assert Run.objects.get(pk=handle.id).lease_token == 1  # claimed once: by the new worker
    assert worker_processes.logs().count(warned) == 1  # once, not once per poll


@pytest.mark.slow
def test_a_run_no_live_worker_knows_fails_after_the_timeout_in_a_real_worker(worker_processes):
    handle = wf.add.start(2, 3)
    settings = json.dumps({"UNKNOWN_WORKFLOW_TIMEOUT": 1})
    worker_processes.start(*FAST, extra_env={**WITHOUT_ADD, "DURABLE_TEST_SETTINGS": settings})
    wait_for(lambda: Run.objects.get(pk=handle.id).is_terminal, 30, "the run failed")
    run = Run.objects.get(pk=handle.id)
    assert run.status == RunStatus.FAILED, worker_processes.logs()
    assert run.error["type"] == "django_durable.exceptions.WorkflowNotFound"
    assert "Workflow 'tests.add' is unknown: no live worker registers it" in run.error["message"]
    assert run.lease_token == 0  # never claimed
    assert f"Run {run.pk} failed: no live worker registers workflow 'tests.add'" in (
        worker_processes.logs()
    )
