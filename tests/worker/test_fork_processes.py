"""A fork run by real worker processes: the worker is killed (SIGKILL) in the middle of the
fork's first step that runs again, and another worker finishes the fork. The copied steps
never run in the fork, before or after the crash."""

from __future__ import annotations

import signal

import pytest

import django_durable as durable
from django_durable.models import Run, RunValue, Step, StepStatus, StreamItem
from django_durable.testing import run_until_finished
from tests.conftest import wait_for
from tests.testapp import fork_workflows as fw
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--lease", "1", "--poll-interval", "0.1")


def records(run_id: str) -> list[tuple]:
    rows = Step.objects.filter(run_id=run_id).order_by("position")
    return list(rows.values_list("position", "kind", "name", "status", "result"))


def test_a_fork_killed_in_its_first_re_run_step_is_finished_by_another_worker(
    worker_processes,
):
    # The original fails here, on the code with the bug; the workers run the fixed code.
    fw.BUG["on"] = True
    try:
        original = fw.fork_orders.start("o-1", pause=1.5)
        run_until_finished(original)
    finally:
        fw.BUG["on"] = False
    assert original.status == durable.RunStatus.FAILED
    position = original.error["position"]

    fork = durable.fork(original.id, from_step=position)
    first = worker_processes.start(*FAST)
    ship = Execution.objects.filter(run_id=fork.id, label="ship")
    wait_for(ship.exists, 30, "the fork's shipping step began")
    # Recorded once the body has run for RECORD_STEP_START_AFTER (0.5 s of its 1.5 s).
    begun = Step.objects.filter(run_id=fork.id, position=position, status=StepStatus.RUNNING)
    wait_for(begun.exists, 30, "the record that the shipping step began")
    running = begun.get()
    assert (running.kind, running.name, running.status) == ("step", "ship", StepStatus.RUNNING)
    worker_processes.signal(first, signal.SIGKILL)  # in the middle of its 1.5 s body
    first.wait(5)
    worker_processes.start(*FAST)
    wait_for(lambda: Run.objects.get(pk=fork.id).is_terminal, 60, "the fork finished")

    assert fork.result(timeout=1)["shipped"] == "shipped o-1", worker_processes.logs()
    assert ship.count() == 2  # killed once, then run to its end
    # The payments were copied, never run in the fork.
    assert not Execution.objects.filter(run_id=fork.id).exclude(label="ship").exists()
    assert Execution.objects.filter(run_id=original.id).count() == 5
    step = Step.objects.get(run_id=fork.id, position=position)
    assert (step.status, step.executions, step.attempts) == (StepStatus.COMPLETED, 2, 1)
    assert records(fork.id)[:position] == records(original.id)[:position]
    progress = RunValue.objects.filter(run_id=fork.id, key="progress").order_by("id")
    assert [value.get_value()["done"] for value in progress] == [1, 2, 3, 4, 5]
    assert StreamItem.objects.filter(run_id=fork.id).count() == 5  # 4 copied, and the close
