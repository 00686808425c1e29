"""Child runs, cancellation and cleanup, retry, versions and timeouts, in this process."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

import django_durable as durable
from django_durable import Worker
from django_durable.models import Run, RunStatus, Step
from django_durable.testing import run_all
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def executions(run_id: str, label: str) -> int:
    return Execution.objects.filter(run_id=run_id, label=label).count()


def run_until(worker: Worker, predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        worker.run_once()
        time.sleep(0.02)


# --- child runs ------------------------------------------------------------------------


def test_a_child_run_is_linked_and_its_result_returned(worker):
    parent = wf.parent_one.start(21)
    worker.run_once()  # the parent starts its child and waits for it
    run = Run.objects.get(pk=parent.id)
    [child] = parent.children()
    assert run.status == RunStatus.WAITING
    assert run.wake_on == f"c:{child.id}"
    assert run.claimed_by is None  # the parent holds no worker while it waits
    assert child.parent_id == parent.id
    assert (child.model.depth, child.model.parent_position) == (1, 0)
    run_all()
    assert parent.result(timeout=1) == 42
    assert [s.kind for s in Step.objects.filter(run_id=parent.id).order_by("position")] == [
        "child",
        "child_result",
    ]


def test_fan_out_and_fan_in_with_gather():
    parent = wf.parent_fanout.start(6)
    run_all()  # one slot: the waiting parent must not block its children
    assert parent.result(timeout=1) == [0, 2, 4, 6, 8, 10]
    assert len(parent.children()) == 6
    # It waits for the first unfinished child each time, so it was woken only a few times.
    assert executions(parent.id, "parent") <= 4


def test_a_failed_child_raises_child_workflow_failed_with_the_childs_error():
    parent = wf.parent_catches_child.start()
    run_all()
    result = parent.result(timeout=1)
    [child] = parent.children()
    assert result == {
        "child": child.id,
        "type": "ValueError",
        "message": "child broke",
    }


def test_an_uncaught_child_failure_fails_the_parent():
    parent = wf.parent_uncaught_child.start()
    run_all()
    with pytest.raises(durable.WorkflowFailed) as failed:
        parent.result(timeout=1)
    assert failed.value.error_type == "django_durable.exceptions.ChildWorkflowFailed"
    assert "child broke" in failed.value.error_message


def test_nesting_deeper_than_max_child_depth_is_a_clear_error(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_CHILD_DEPTH": 2}
    root = wf.nested.start(5)
    run_all()
    failed = Run.objects.filter(status=RunStatus.FAILED, depth=2).get()
    assert failed.depth == 2
    assert (
        "would nest runs 3 deep, past DJANGO_DURABLE['MAX_CHILD_DEPTH'] = 2"
        in (failed.error["message"])
    )
    # Its parents see it fail in turn.
    assert root.refresh().status == RunStatus.FAILED


@pytest.mark.parametrize(
    ("policy", "child_status"), [("cancel", "cancelled"), ("abandon", "waiting")]
)
def test_parent_close_policy(worker, policy, child_status):
    parent = wf.parent_leaves.start(policy)
    run_until(
        worker,
        lambda: parent.refresh().is_finished and not Run.objects.filter(status="pending").exists(),
    )
    child = durable.get_run(parent.result(timeout=1))
    assert child.status == child_status


def test_a_parent_cancels_its_child():
    parent = wf.cancels_its_child.start()
    run_all()
    assert parent.result(timeout=1) == "django_durable.exceptions.Cancelled"
    [child] = parent.children()
    assert child.status == RunStatus.CANCELLED
    assert child.error["message"] == "not needed"


def test_async_workflows_start_gather_and_run_children():
    parent = wf.async_parent.start(3)
    run_all()
    assert parent.result(timeout=1) == {"results": [0, 2, 4], "single": 200, "patched": True}


# --- cancellation ----------------------------------------------------------------------


def test_cancelling_a_run_that_never_started_ends_it_at_once():
    handle = wf.add.start(1, 2)
    assert durable.cancel(handle.id, "changed my mind") is True
    handle.refresh()
    assert handle.status == RunStatus.CANCELLED
    assert handle.model.finished_at is not None
    with pytest.raises(durable.WorkflowCancelled, match="changed my mind"):
        handle.result(timeout=1)
    assert durable.cancel(handle.id) is False  # finished: nothing to do
    with pytest.raises(durable.RunNotFound):
        durable.cancel("00000000-0000-0000-0000-000000000000")


@pytest.mark.parametrize("workflow", [wf.cleanup, wf.async_cleanup], ids=["def", "async def"])
def test_a_sleeping_run_is_woken_runs_its_shielded_cleanup_and_ends_cancelled(worker, workflow):
    handle = workflow.start()
    worker.run_once()
    assert handle.refresh().status == RunStatus.WAITING
    handle.cancel("customer left")
    assert handle.refresh().status == RunStatus.PENDING  # woken to stop
    assert handle.model.waiting_for == "" and handle.model.wake_at is None
    run_all()
    handle.refresh()
    assert handle.status == RunStatus.CANCELLED
    assert handle.error["message"] == "customer left"
    assert executions(handle.id, "cleanup") == 1
    assert executions(handle.id, "never") == 0
    kinds = list(
        Step.objects.filter(run_id=handle.id).order_by("position").values_list("kind", flat=True)
    )
    assert kinds == ["step", "sleep", "cancel", "step"]


def test_a_running_run_stops_at_its_next_durable_operation():
    handle = wf.slow_steps.start(20, 0.2)
    worker = Worker(burst=True, lease_seconds=1.5)  # heartbeats every 0.5 s carry the cancel
    thread = threading.Thread(target=_run_in_thread, args=(worker,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not Execution.objects.filter(run_id=handle.id).exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        durable.cancel(handle.id, "stop")
    finally:
        thread.join(30)
    handle.refresh()
    assert handle.status == RunStatus.CANCELLED
    ran = Execution.objects.filter(run_id=handle.id).count()
    assert 1 <= ran < 20  # the step that was running finished; no new one started
    # Every step that started was checkpointed: the running step was not interrupted.
    assert Step.objects.filter(run_id=handle.id, kind="step").count() == ran


def test_cancel_cascades_three_levels_deep(worker):
    root = wf.nested.start(3)
    run_until(worker, lambda: Run.objects.filter(depth=3, status=RunStatus.WAITING).exists())
    assert Run.objects.count() == 4
    root.cancel("tear down")
    run_all()
    assert set(Run.objects.values_list("status", flat=True)) == {RunStatus.CANCELLED}
    assert Run.objects.filter(depth=3).get().error["message"] == "tear down"


def test_a_shielded_cleanup_sleep_waits_its_time():
    handle = wf.cleanup.start(shielded_sleep=0.5)
    worker = Worker()
    worker.run_once()
    handle.cancel()
    started = time.monotonic()
    run_all()
    assert handle.refresh().status == RunStatus.CANCELLED
    assert time.monotonic() - started >= 0.5
    # Woken once to cancel, once when the cleanup's sleep was over: no busy loop.
    assert handle.model.lease_token <= 4


def test_a_workflow_that_handles_cancelled_and_returns_completes(worker):
    handle = wf.handles_cancel.start()
    worker.run_once()
    handle.cancel()
    run_all()
    assert handle.result(timeout=1) == "handled"


@pytest.mark.parametrize(
    "workflow", [wf.times_out_cancelled, wf.async_times_out_cancelled], ids=["def", "async def"]
)
def test_on_timeout_cancel_cancels_with_cleanup(workflow):
    handle = workflow.start()
    run_all(timeout=10)
    handle.refresh()
    assert handle.status == RunStatus.CANCELLED
    assert "passed its deadline" in handle.error["message"]
    assert executions(handle.id, "cleanup") == 1


def test_children_inherit_their_parents_deadline():
    parent = wf.parent_with_deadline.start()
    run_all(timeout=10)
    child = durable.get_run(parent.result(timeout=1))
    assert child.model.deadline_at == parent.model.deadline_at
    assert child.refresh().status == RunStatus.FAILED  # its hour-long sleep hit the deadline
    assert child.error["type"] == "django_durable.exceptions.WorkflowTimedOut"


# --- retry -------------------------------------------------------------------------------


def test_retry_a_failed_run_keeps_its_completed_checkpoints():
    handle = wf.retry_me.start()
    run_all()
    assert handle.refresh().status == RunStatus.FAILED
    assert handle.error["position"] == 1
    retried = durable.retry(handle.id)
    assert retried.status == RunStatus.PENDING
    run_all()
    assert handle.result(timeout=1) == 7
    assert handle.refresh().model.attempt == 2
    assert executions(handle.id, "first") == 1  # kept, not run again
    assert executions(handle.id, "flaky") == 2


def test_retry_a_cancelled_run_goes_on_from_where_it_was_cancelled(worker):
    handle = wf.cleanup.start()
    worker.run_once()
    handle.cancel()
    run_all()
    assert handle.refresh().status == RunStatus.CANCELLED
    handle.retry()
    assert handle.status == RunStatus.PENDING
    worker.run_once()
    # Back in its sleep, as before the cancellation: the cancel marker and cleanup are gone.
    run = handle.refresh().model
    assert run.status == RunStatus.WAITING
    assert not Step.objects.filter(run_id=handle.id, kind="cancel").exists()
    assert executions(handle.id, "work") == 1


def test_only_failed_or_cancelled_runs_can_be_retried():
    handle = wf.add.start(1, 1)
    with pytest.raises(durable.DurableError, match="only failed or cancelled runs"):
        durable.retry(handle.id)
    with pytest.raises(durable.RunNotFound):
        durable.retry("00000000-0000-0000-0000-000000000000")


def step_kinds(run_id: str) -> list[str]:
    rows = Step.objects.filter(run_id=run_id).order_by("position")
    return list(rows.values_list("kind", flat=True))


def until_idle(worker: Worker, timeout: float = 15.0) -> None:
    """Run the worker until nothing is pending or running (waiting runs may remain)."""
    run_until(
        worker,
        lambda: (
            not Run.objects.filter(status__in=["pending", "running"]).exists()
            and worker.run_once() == 0
        ),
        timeout,
    )


def test_cancelled_while_waiting_for_a_message_the_marker_replaces_the_wait(worker):
    handle = wf.cleans_up_after_recv.start()
    worker.run_once()
    assert handle.refresh().model.wake_on == "m:go"
    handle.cancel("no longer needed")
    run_all()
    assert handle.refresh().status == RunStatus.CANCELLED
    # The recv's waiting record became the cancel marker: replay cancels there again.
    assert step_kinds(handle.id) == ["cancel", "sleep", "step"]
    assert executions(handle.id, "cleanup") == 1
    handle.retry()
    until_idle(worker)
    assert handle.refresh().model.wake_on == "m:go"  # waiting for its message again
    assert step_kinds(handle.id) == ["recv"]
    handle.send("now", "go")
    run_all()
    assert handle.result(timeout=1) == "got now"
    assert executions(handle.id, "cleanup") == 1  # the cleanup of the first time only


def test_cancelled_during_a_retry_backoff_cleans_up_and_retries_the_step(worker):
    handle = wf.cancelled_in_backoff.start()
    worker.run_once()
    run = handle.refresh().model
    assert run.status == RunStatus.WAITING and "retry" in run.waiting_for
    handle.cancel()
    run_all()
    assert handle.refresh().status == RunStatus.CANCELLED
    assert step_kinds(handle.id) == ["cancel", "step"]
    assert executions(handle.id, "attempt") == 1  # the backoff was not cut into a retry
    handle.retry()
    run_all()
    assert handle.result(timeout=1) == "second attempt worked"
    assert executions(handle.id, "attempt") == 2


def test_retrying_a_cancelled_parent_retries_the_children_cancelled_with_it(worker):
    parent = wf.parent_of_waiting_child.start()
    until_idle(worker)
    [child] = parent.children()
    parent.cancel("tear down")
    run_all()
    assert {parent.refresh().status, child.refresh().status} == {RunStatus.CANCELLED}
    parent.retry()
    until_idle(worker)
    assert child.refresh().status == RunStatus.WAITING  # back in its recv
    assert parent.refresh().model.wake_on == f"c:{child.id}"
    assert parent.children() == [child]  # the same child, not a new one
    child.send("go", "go")
    run_all()
    assert parent.result(timeout=1) == "parent saw: child got go"
    assert child.refresh().model.attempt == 2


def test_retrying_a_failed_parent_reopens_the_children_its_failure_closed(worker):
    parent = wf.parent_of_waiting_child.start(fail_after=True)
    run_all()
    [child] = parent.children()
    assert parent.refresh().status == RunStatus.FAILED
    assert child.refresh().status == RunStatus.CANCELLED  # parent_close="cancel"
    parent.retry()
    until_idle(worker)
    assert child.refresh().status == RunStatus.WAITING
    child.send("go", "go")
    run_all()
    assert parent.result(timeout=1) == "parent saw: child got go"


def test_a_parent_that_failed_on_its_cancelled_child_starts_a_new_one_when_retried(worker):
    parent = wf.parent_of_waiting_child.start()
    until_idle(worker)
    [child] = parent.children()
    child.cancel("on its own")
    run_all()  # the parent sees its child cancelled and fails
    assert parent.refresh().status == RunStatus.FAILED
    assert parent.error["position"] == 0  # the start_child the failure came from
    parent.retry()
    until_idle(worker)
    assert child.refresh().status == RunStatus.CANCELLED  # left as it was
    [new] = [run for run in parent.children() if run.id != child.id]
    new.send("again", "go")
    run_all()
    assert parent.result(timeout=1) == "parent saw: child got again"


def test_cancelling_a_finished_run_leaves_its_abandoned_children_alone(worker):
    parent = wf.parent_leaves.start("abandon")
    until_idle(worker)
    child = durable.get_run(parent.result(timeout=1))
    assert child.refresh().status == RunStatus.WAITING
    assert durable.cancel(parent.id) is False
    assert child.refresh().status == RunStatus.WAITING
    assert child.model.cancel_requested_at is None


def test_rewinding_a_run_cancels_the_children_started_in_what_it_undoes(worker):
    from django.db import transaction

    from django_durable.store import trees

    parent = wf.parent_of_waiting_child.start()
    until_idle(worker)
    [child] = parent.children()
    with transaction.atomic():
        trees.rewind(parent.model.pk, 1)  # keeps position 0: the child stays
    assert child.refresh().status == RunStatus.WAITING
    with transaction.atomic():
        trees.rewind(parent.model.pk, 0)  # undoes the start_child itself
    until_idle(worker)
    child.refresh()
    assert child.status == RunStatus.CANCELLED
    assert "ran again" in child.error["message"]
    # Running the rewound code again started a new child, which it now waits for.
    [old, new] = sorted(parent.children(), key=lambda run: run.id != child.id)
    assert old == child and new.status == RunStatus.WAITING
    assert parent.refresh().model.wake_on == f"c:{new.id}"


# --- versions ------------------------------------------------------------------------------


@pytest.fixture
def variant():
    wf.VARIANT["value"] = "a"
    yield wf.VARIANT
    wf.VARIANT["value"] = "a"


def test_patched_keeps_old_runs_on_the_old_path(worker, variant):
    old_run = wf.versioned.start()
    worker.run_once()  # recorded by the old code: a, old, sleep
    variant["value"] = "new"  # deploy the new code
    new_run = wf.versioned.start()
    run_all()
    assert old_run.result(timeout=1) == "old"
    assert new_run.result(timeout=1) == "new"
    kinds = list(
        Step.objects.filter(run_id=new_run.id).order_by("position").values_list("kind", flat=True)
    )
    assert kinds == ["step", "patch", "step", "sleep"]


def _run_in_thread(worker: Worker) -> None:
    try:
        worker.run()
    finally:
        connection.close()
