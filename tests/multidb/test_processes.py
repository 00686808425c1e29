"""Worker processes on the durable database: runs, LISTEN/NOTIFY, triggers, schedules, and
what ``atomic=True`` means for a step's writes to the other database."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

import django_durable as durable
from django_durable.models import Run, RunStatus, Schedule, Step, WorkerProcess
from django_durable.testing import run_all
from tests.conftest import ON_POSTGRES, wait_for
from tests.testapp import workflows as wf
from tests.testapp.models import Execution, SideEffect

FAST = ("--poll-interval", "0.1", "--lease", "1")


def test_a_worker_process_runs_a_run_started_from_the_client(workers):
    workers.start(*FAST)
    handle = wf.add.start(1, 2)
    assert handle.result(timeout=20) == 3, workers.logs()
    run = Run.objects.get(pk=handle.id)
    assert (run.status, run._state.db) == (RunStatus.COMPLETED, "workflows")
    assert [step.name for step in Step.objects.filter(run=run)] == ["add"]
    assert WorkerProcess.objects.exists()


@pytest.mark.skipif(not ON_POSTGRES, reason="LISTEN/NOTIFY exists only on PostgreSQL")
def test_a_notify_on_the_durable_database_wakes_an_idle_worker(workers):
    # A NOTIFY reaches only the listeners of its own database: start() sends it on
    # "workflows", where the worker listens.
    worker = workers.start("--poll-interval", "30")
    wait_for(lambda: WorkerProcess.objects.filter(pid=worker.pid).exists(), message="worker up")
    time.sleep(1.5)  # let it finish its first poll and go idle, listening
    started = time.monotonic()
    assert wf.add.start(2, 3).result(timeout=10) == 5, workers.logs()
    assert time.monotonic() - started < 10


def test_an_event_trigger_fires_in_a_worker(workers):
    workers.start(*FAST)
    durable.emit_event("tests/order", {"order": 7})
    wait_for(
        lambda: Run.objects.filter(workflow_name="tests.on_order", status="completed").exists(),
        message=f"the triggered run\n{workers.logs()}",
    )
    [run] = Run.objects.filter(workflow_name="tests.on_order")
    [event] = durable.get_run(run.id).result(timeout=1)["events"]
    assert event["data"] == {"order": 7}


def test_a_due_schedule_starts_its_run_in_a_worker(workers):
    workers.start(*FAST)
    wait_for(
        lambda: Schedule.objects.filter(name="workflow:tests.new_year").exists(),
        message=f"the worker syncs the code's schedules\n{workers.logs()}",
    )
    tick = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
    schedule = Schedule.objects.create(
        name="minutely", workflow_name="tests.tick", cron="* * * * *", next_tick_at=tick
    )
    wait_for(
        lambda: Run.objects.filter(workflow_name="tests.tick", status="completed").exists(),
        message=f"the scheduled run\n{workers.logs()}",
    )
    [run] = Run.objects.filter(workflow_name="tests.tick")
    assert run.idempotency_key.startswith(f"schedule:{schedule.pk}:")


# --- atomic=True and the other database ------------------------------------------------


def kill_during_the_body(workers, workflow: str, label: str) -> str:
    """Start ``workflow``; SIGKILL its worker in the body, after its write; finish it in
    another worker. Return the run's id."""
    first = workers.start(*FAST)
    handle = durable.start(workflow)
    wait_for(
        lambda: Execution.objects.filter(run_id=handle.id, label=label).exists(),
        message=f"the body's first execution\n{workers.logs()}",
    )
    workers.signal(first, signal.SIGKILL)
    first.wait(timeout=10)
    workers.start(*FAST)
    assert handle.result(timeout=30) == "written", workers.logs()
    assert Execution.objects.filter(run_id=handle.id, label=label).count() == 2
    [step] = Step.objects.filter(run_id=handle.id)
    assert (step.name, step.status, step.attempts) == ("write", "completed", 1)
    return handle.id


def test_an_atomic_steps_writes_to_another_database_are_at_least_once(workers):
    # The step's transaction is on "workflows": its checkpoint was rolled back with the
    # worker, but the row written to "default" had committed on its own. The body ran
    # again, and wrote it again.
    run_id = kill_during_the_body(workers, "tests.multidb_split_write", "split")
    assert SideEffect.objects.filter(run_id=run_id, label="split").count() == 2


def test_a_write_that_checks_its_own_marker_in_its_database_happens_once(workers):
    # The documented way: the body writes in a transaction of its own database that first
    # looks for the row it leaves behind, keyed by run and step.
    run_id = kill_during_the_body(workers, "tests.multidb_guarded_write", "once")
    assert list(SideEffect.objects.filter(run_id=run_id).values_list("label", flat=True)) == [
        "once:write"
    ]


def test_a_failed_attempts_writes_to_another_database_are_not_rolled_back():
    # In one database, a failed attempt's writes roll back with it (tests/engine). Here
    # the second attempt finds the first one's row.
    handle = durable.start("tests.multidb_failing_write")
    run_all()
    assert handle.result(timeout=1) == 2
    assert SideEffect.objects.filter(run_id=handle.id, label="failing").count() == 2
