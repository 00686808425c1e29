"""Compensation across a crash: the worker is killed (SIGKILL) in the middle of the second
compensation; another worker resumes the run. The finished compensation replays from its
checkpoint and never runs again; the cut one runs again (at least once); the run fails."""

from __future__ import annotations

import signal

import pytest

from django_durable.models import Run, RunStatus, Step, StepStatus
from tests.conftest import wait_for
from tests.testapp import saga_workflows as sw
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--lease", "1", "--poll-interval", "0.1")


def test_a_worker_killed_in_a_compensation_is_resumed_and_undoes_each_thing_once(
    worker_processes,
):
    handle = sw.saga_order.start(fail_at="ship", pause=1.5)
    first = worker_processes.start(*FAST)
    undo_reserve = Execution.objects.filter(run_id=handle.id, label="undo-reserve-id")
    wait_for(undo_reserve.exists, 30, "the second compensation began")
    # Recorded once the body has run for RECORD_STEP_START_AFTER (0.5 s of its 1.5 s).
    begun = Step.objects.filter(run_id=handle.id, name="compensate:reserve")
    wait_for(begun.exists, 30, "the record that the second compensation began")
    running = begun.get()
    assert running.status == StepStatus.RUNNING
    worker_processes.signal(first, signal.SIGKILL)  # in the middle of its 1.5 s body
    first.wait(5)
    worker_processes.start(*FAST)
    wait_for(lambda: Run.objects.get(pk=handle.id).is_terminal, 60, "the run ended")

    assert handle.refresh().status == RunStatus.FAILED, worker_processes.logs()
    assert "ship refused" in handle.error["message"]
    labels = list(Execution.objects.filter(run_id=handle.id).values_list("label", flat=True))
    assert sorted(labels) == sorted(
        ["reserve", "charge", "ship", "undo-charge-id", "undo-reserve-id", "undo-reserve-id"]
    )
    step = Step.objects.get(run_id=handle.id, name="compensate:reserve")
    assert (step.status, step.executions) == (StepStatus.COMPLETED, 2)
    assert Step.objects.get(run_id=handle.id, name="compensate:charge").executions == 1
