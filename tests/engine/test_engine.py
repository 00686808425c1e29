"""Replay, checkpoints, retries, determinism and failures, with a worker in this thread."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

import django_durable as durable
from django_durable import Worker
from django_durable.engine import execution
from django_durable.models import Run, RunStatus, Step, StepStatus
from django_durable.store import checkpoints
from django_durable.store.claims import claim_runs
from django_durable.store.records import Claim
from django_durable.testing import run_all, time_machine
from tests.testapp import reliability_workflows as rw
from tests.testapp import workflows as wf
from tests.testapp.models import Execution, SideEffect

pytestmark = pytest.mark.django_db(transaction=True)


def executions(handle: durable.RunHandle, label: str) -> int:
    return Execution.objects.filter(run_id=handle.id, label=label).count()


def steps_of(handle: durable.RunHandle) -> list[tuple[int, str, str, str]]:
    return list(
        Step.objects.filter(run_id=handle.id)
        .order_by("position")
        .values_list("position", "kind", "name", "status")
    )


def test_a_run_completes_and_records_each_step():
    handle = wf.counted.start(3)
    run_all()
    assert handle.result(timeout=1) == 0 + 1 + 2
    assert handle.refresh().status == RunStatus.COMPLETED
    assert steps_of(handle) == [
        (0, "step", "step-0", "completed"),
        (1, "step", "step-1", "completed"),
        (2, "step", "step-2", "completed"),
    ]
    run = handle.model
    assert run.started_at is not None and run.finished_at is not None
    assert run.claimed_by is None and run.lease_expires_at is None


def test_step_functions_are_checkpointed_by_their_name():
    handle = wf.step_function.start(5)
    run_all()
    assert handle.result(timeout=1) == 20
    assert [name for _, _, name, _ in steps_of(handle)] == ["double", "double"]


def test_a_step_function_outside_a_workflow_is_a_plain_call():
    assert wf.double(21) == 42


def test_replay_returns_recorded_results_and_never_reruns_completed_steps():
    # The sleeper records a step, sleeps (suspends), and is replayed when it wakes.
    handle = wf.sleeper.start(0.2)
    run_all()
    assert handle.result(timeout=1) == "woke"
    # The workflow body ran twice (before and after the sleep) ...
    assert executions(handle, "before") == 2
    # ... but each step body ran once: replay returned the recorded results.
    assert Step.objects.filter(run_id=handle.id, name="before").get().attempts == 1
    assert [kind for _, kind, _, _ in steps_of(handle)] == ["step", "sleep", "step"]


def test_replay_after_a_crash_skips_completed_steps(worker):
    handle = wf.counted.start(4)
    # A worker claims the run and completes two steps, then "crashes": we stop it by
    # losing the lease (the run is handed back as if the worker died).
    [claim] = worker.claim(1)
    checkpoints_written = []

    def crash_after_two() -> BaseException | None:
        checkpoints_written.append(1)
        if Step.objects.filter(run_id=claim.run_id).count() >= 2:
            return durable.exceptions.LeaseLost("simulated crash")
        return None

    outcome = execution.execute(claim, interrupt=crash_after_two)
    assert outcome.kind == "abandoned"
    assert executions(handle, "step-0") == 1 and executions(handle, "step-1") == 1
    Run.objects.filter(pk=handle.id).update(
        status=RunStatus.PENDING, claimed_by=None, lease_expires_at=None
    )
    # The crashed worker still counts the run as its own; another worker resumes it.
    assert worker.run_once() == 0
    Worker().run_once()
    assert handle.result(timeout=1) == 0 + 1 + 2 + 3
    for index in range(4):
        assert executions(handle, f"step-{index}") == 1, index


def test_values_are_recorded_once_and_replayed():
    handle = wf.values.start()
    run_all()
    result = handle.result(timeout=1)
    now, ident, rand = result["first"]
    assert isinstance(now, dt.datetime) and timezone.is_aware(now)
    assert isinstance(ident, uuid.UUID)
    assert 0 <= rand < 1
    assert result["first"] != result["second"]
    recorded = Step.objects.filter(run_id=handle.id).order_by("position")
    assert [s.kind for s in recorded] == ["now", "uuid", "random"] * 2
    assert recorded[1].get_result() == ident


def test_django_json_types_round_trip_through_steps_and_results():
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    handle = wf.types.start(when, Decimal("1.10"))
    run_all()
    result = handle.result(timeout=1)
    assert result == {
        "later": when + dt.timedelta(days=1),
        "amount": Decimal("2.20"),
        "tuple": [1, 2],  # JSON has no tuples
    }


def test_async_workflows_run_steps_sleeps_and_step_functions():
    handle = wf.async_add.start(2, 3)
    run_all()
    assert handle.result(timeout=1) == 12
    assert [(k, n) for _, k, n, _ in steps_of(handle)] == [
        ("step", "async-add"),
        ("step", "sync-add"),
        ("sleep", "sleep"),
        ("step", "double"),
    ]


def test_async_atomic_step_writes_once():
    handle = wf.async_atomic.start()
    run_all()
    assert handle.result(timeout=1) == 1
    assert SideEffect.objects.filter(run_id=handle.id).count() == 1


# --- retries ------------------------------------------------------------------------


def test_a_failing_step_is_retried_with_backoff_and_the_run_waits_in_between(worker):
    handle = wf.flaky.start(2)
    worker.run_once()
    run = Run.objects.get(pk=handle.id)
    # The first attempt failed: the run is suspended, not sleeping in a worker thread.
    assert run.status == RunStatus.WAITING
    assert run.waiting_for == "retry of step 'flaky' (attempt 2)"
    step = Step.objects.get(run_id=handle.id)
    assert (step.status, step.attempts) == (StepStatus.RETRYING, 1)
    assert step.error["type"] == "ConnectionError"
    # Backoff: 0.05s (±10%) after the first failure.
    assert dt.timedelta(0) < run.wake_at - step.recorded_at < dt.timedelta(seconds=1)
    run_all()
    assert handle.result(timeout=1) == 3
    step.refresh_from_db()
    assert (step.status, step.attempts) == (StepStatus.COMPLETED, 3)
    assert executions(handle, "flaky") == 3


def test_retries_stop_at_max_attempts_and_the_run_fails_with_the_last_error():
    handle = wf.flaky.start(10)
    run_all()
    with pytest.raises(durable.WorkflowFailed) as failed:
        handle.result(timeout=1)
    assert executions(handle, "flaky") == 4  # max_attempts=4
    assert failed.value.error_type == "ConnectionError"
    assert failed.value.error_message == "try 4 failed"
    assert failed.value.error["step"] == "flaky"
    assert "ConnectionError: try 4 failed" in failed.value.traceback
    step = Step.objects.get(run_id=handle.id)
    assert (step.status, step.attempts) == (StepStatus.FAILED, 4)


def test_retry_after_overrides_the_backoff(worker):
    handle = wf.flaky.start(1, retry_after=30)
    worker.run_once()
    run = Run.objects.get(pk=handle.id)
    step = Step.objects.get(run_id=handle.id)
    wait = (run.wake_at - step.recorded_at).total_seconds()
    assert 29 < wait < 31


def test_a_step_body_knows_its_run_name_position_and_attempt():
    handle = wf.step_info.start()
    run_all()
    result = handle.result(timeout=1)
    common = {"run_id": handle.id, "workflow_name": "tests.step_info"}
    common |= {"timeout": None, "deadline": None}  # no step timeout
    assert result["plain"] == {
        **common, "name": "plain", "position": 0, "attempt": 3, "max_attempts": 3,
        "is_last_attempt": True,
    }  # fmt: skip
    assert result["atomic"] == {
        **common, "name": "atomic", "position": 1, "attempt": 1, "max_attempts": 1,
        "is_last_attempt": True,
    }  # fmt: skip
    assert "outside a step's body" in result["outside"]  # the workflow function is not a step


def test_an_async_workflow_s_steps_know_their_attempt_too():
    handle = wf.async_step_info.start()
    run_all()
    result = handle.result(timeout=1)
    assert (result["async"]["name"], result["async"]["attempt"]) == ("async", 2)
    assert result["async"]["is_last_attempt"] is True
    assert (result["sync"]["name"], result["sync"]["position"]) == ("sync", 1)


def test_step_info_outside_a_step_is_a_clear_error():
    with pytest.raises(durable.DurableError, match=r"outside a step's body"):
        durable.step_info()


def test_fatal_error_is_never_retried():
    handle = wf.fatal.start()
    run_all()
    with pytest.raises(durable.WorkflowFailed) as failed:
        handle.result(timeout=1)
    assert executions(handle, "fatal") == 1
    assert failed.value.error_type == "django_durable.exceptions.FatalError"
    assert "card declined" in str(failed.value)


def test_a_caught_step_failure_replays_the_same_exception():
    handle = wf.catches.start()
    run_all()
    # The workflow slept after catching, so the except-branch ran again on replay
    # with the exception rebuilt from the record.
    assert handle.result(timeout=1) == "compensated: no stock"
    assert steps_of(handle) == [
        (0, "step", "reserve", "failed"),
        (1, "step", "compensate", "completed"),
        (2, "sleep", "sleep", "completed"),
    ]


def test_an_exception_that_cannot_be_rebuilt_is_step_failed_both_times():
    handle = wf.unrebuildable.start()
    run_all()
    assert handle.result(timeout=1).endswith("Hidden")


def test_workflow_level_retry_reruns_failed_steps_and_keeps_completed_ones():
    handle = wf.workflow_retry.start()
    run_all()
    assert handle.result(timeout=1) == 3
    run = handle.refresh().model
    assert run.attempt == 3
    assert executions(handle, "setup") == 1  # completed checkpoint kept across attempts
    assert executions(handle, "work") == 3
    assert steps_of(handle) == [(0, "step", "setup", "completed"), (1, "step", "work", "completed")]


# --- failures are the run's, never the worker's ---------------------------------------


def test_an_exception_in_the_workflow_fails_the_run_with_its_traceback():
    handle = wf.boom.start()
    run_all()
    with pytest.raises(durable.WorkflowFailed) as failed:
        handle.result(timeout=1)
    assert failed.value.error_type == "ValueError"
    assert 'raise ValueError("boom")' in failed.value.traceback
    assert handle.refresh().status == RunStatus.FAILED


def test_system_exit_in_a_workflow_fails_the_run_not_the_worker():
    handle = wf.exits.start()
    run_all()
    assert handle.refresh().status == RunStatus.FAILED
    assert handle.error["type"] == "SystemExit"


def test_a_non_json_step_result_fails_the_run_naming_the_step():
    handle = wf.non_json_step.start()
    run_all()
    with pytest.raises(durable.WorkflowFailed) as failed:
        handle.result(timeout=1)
    assert "The result of step 'make-object' cannot be stored as JSON" in str(failed.value)
    assert failed.value.error_type == "django_durable.exceptions.SerializationError"


def test_a_non_json_return_value_fails_the_run():
    handle = wf.non_json_result.start()
    run_all()
    with pytest.raises(durable.WorkflowFailed, match="return value of workflow"):
        handle.result(timeout=1)


def test_an_oversized_step_result_fails_the_run_clearly(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_PAYLOAD_BYTES": 1000}
    handle = wf.big_result.start(2000)
    run_all()
    with pytest.raises(durable.WorkflowFailed, match="over the limit of 1000 bytes"):
        handle.result(timeout=1)


def test_a_claimed_run_of_an_unknown_workflow_fails_in_the_engine():
    # Workers never claim one (tests/worker/test_unknown_workflows.py): a claim made without
    # naming the workflows still ends in a clear error, not a crash.
    Run.objects.create(workflow_name="gone.workflow", input={"args": [], "kwargs": {}})
    [claim] = claim_runs(worker_id="w", queues=["default"], limit=1, lease_seconds=10)
    outcome = execution.execute(claim)
    assert outcome.kind == "failed"
    assert "gone.workflow" in (outcome.error or "")
    assert "WorkflowNotFound" in (outcome.error or "")


def test_durable_operations_inside_a_step_body_are_an_error():
    handle = wf.nested_op.start()
    run_all()
    with pytest.raises(durable.WorkflowFailed, match="inside a step's body"):
        handle.result(timeout=1)


# --- determinism ---------------------------------------------------------------------


@pytest.fixture
def variant():
    wf.VARIANT["value"] = "a"
    yield wf.VARIANT
    wf.VARIANT["value"] = "a"


def test_a_changed_operation_raises_non_deterministic_workflow(worker, variant):
    handle = wf.variant.start()
    worker.run_once()  # records first, second-a, sleep; suspends
    assert handle.refresh().status == RunStatus.WAITING
    variant["value"] = "b"
    run_all()
    with pytest.raises(durable.WorkflowFailed) as failed:
        handle.result(timeout=1)
    assert failed.value.error_type == "django_durable.exceptions.NonDeterministicWorkflow"
    message = failed.value.error_message
    assert "at position 1 it recorded step 'second-a'" in message
    assert "the code now calls step 'second-b'" in message


def test_swallowing_non_determinism_does_not_save_the_run(worker, variant):
    handle = wf.swallows.start()
    worker.run_once()
    variant["value"] = "b"
    run_all()
    assert handle.refresh().status == RunStatus.FAILED
    assert handle.error["type"] == "django_durable.exceptions.NonDeterministicWorkflow"


def test_recorded_operations_the_code_no_longer_reaches_are_non_deterministic(worker, variant):
    handle = wf.shortened.start()
    worker.run_once()
    variant["value"] = "b"
    run_all()
    assert handle.refresh().status == RunStatus.FAILED
    assert "recorded 3 operations" in handle.error["message"]


# --- sleeping and deadlines ----------------------------------------------------------


def test_sleep_suspends_the_run_and_frees_the_worker(worker):
    handle = wf.sleeper.start(3600)
    assert worker.run_once() == 1
    run = Run.objects.get(pk=handle.id)
    assert run.status == RunStatus.WAITING
    assert run.claimed_by is None and run.lease_expires_at is None
    assert run.waiting_for.startswith("sleep until ")
    assert dt.timedelta(minutes=59) < run.wake_at - timezone.now() < dt.timedelta(minutes=61)
    # The wake time is recorded with the sleep, so replay keeps it.
    sleep = Step.objects.get(run_id=handle.id, kind="sleep")
    assert sleep.get_result() == run.wake_at
    # Nothing to claim while it sleeps: no worker holds it.
    assert worker.run_once() == 0


def test_a_sleeping_run_wakes_on_time_on_any_worker(worker):
    handle = wf.sleeper.start(0.5)
    started = time.monotonic()
    worker.run_once()
    assert handle.refresh().status == RunStatus.WAITING
    # A different worker (the first one is gone) wakes it once the time has come.
    run_all()
    assert handle.result(timeout=1) == "woke"
    assert time.monotonic() - started >= 0.5


def test_sleep_until_a_past_time_does_not_suspend():
    handle = wf.sleep_until.start(timezone.now() - dt.timedelta(seconds=1))
    run_all()
    assert handle.result(timeout=1) == "done"


def test_sleep_until_rejects_a_naive_datetime():
    handle = wf.sleep_until.start(dt.datetime(2030, 1, 1))
    run_all()
    with pytest.raises(durable.WorkflowFailed, match="aware datetime"):
        handle.result(timeout=1)


def test_a_workflow_timeout_fails_a_sleeping_run_at_its_deadline():
    handle = wf.timeout.start()
    run = Run.objects.get(pk=handle.id)
    assert run.deadline_at is not None
    run_all(timeout=10)
    with pytest.raises(durable.WorkflowFailed) as failed:
        handle.result(timeout=1)
    assert failed.value.error_type == "django_durable.exceptions.WorkflowTimedOut"
    # It slept until its deadline (0.5s), not the 60s it asked for.
    finished = handle.refresh().model
    assert finished.finished_at - finished.created_at < dt.timedelta(seconds=5)


def test_a_workflow_timeout_stops_a_run_that_keeps_doing_steps_at_its_next_operation():
    with time_machine():
        handle = rw.busy_past_deadline.start(10, 25)  # timeout=60: steps at 0, 25, 50 s
        run_all()
    with pytest.raises(durable.WorkflowFailed, match="passed its deadline") as failed:
        handle.result(timeout=1)
    assert failed.value.error_type == "django_durable.exceptions.WorkflowTimedOut"
    # The step begun at 50 s ran to its end (75 s); the next one never started.
    labels = Execution.objects.filter(run_id=handle.id).values_list("label", flat=True)
    assert sorted(labels) == ["tick-0", "tick-1", "tick-2"]
    assert [name for _, _, name, _ in steps_of(handle)] == ["tick-0", "tick-1", "tick-2"]


def test_a_claim_knows_the_database_time(worker):
    wf.add.start(1, 2)
    [claim] = worker.claim(1)
    assert abs((claim.db_now - timezone.now()).total_seconds()) < 5
    assert isinstance(claim, Claim)
    worker.process(claim)


def test_an_operation_name_too_long_fails_the_run_instead_of_looping():
    handle = wf.long_name.start()
    run_all()
    with pytest.raises(durable.WorkflowFailed, match="at most 200 characters"):
        handle.result(timeout=1)


def test_a_workflow_retry_reruns_only_the_step_that_failed_it():
    handle = wf.retry_after_handled_failure.start()
    run_all()
    assert handle.result(timeout=1) == "done"
    assert handle.refresh().model.attempt == 2
    # The handled failure and its compensation are kept; only "flaky" ran again.
    assert executions(handle, "refused") == 1
    assert executions(handle, "compensate") == 1
    assert executions(handle, "flaky") == 2


def test_a_checkpoint_the_database_refuses_fails_the_run(monkeypatch):
    from django.db import DataError

    def refuse(*args, **kwargs):
        raise DataError("value too long for type character varying(200)")

    monkeypatch.setattr(checkpoints, "record_step", refuse)
    handle = wf.add.start(1, 2)
    run_all()
    handle.refresh()
    assert handle.status == RunStatus.FAILED
    assert handle.error["type"] == "django.db.utils.DataError"


def test_a_run_whose_checkpoints_keep_failing_is_given_up_then_failed(monkeypatch, settings):
    from django.db import OperationalError

    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_RECOVERIES": 2}
    calls = []

    def unavailable(*args, **kwargs):
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(checkpoints, "record_step", unavailable)
    handle = wf.counted.start(1)
    worker = Worker()
    for _ in range(20):
        worker.run_once()
        if handle.refresh().is_finished:
            break
        time.sleep(0.01)
    assert handle.status == RunStatus.FAILED
    assert handle.error["type"] == "django_durable.WorkerLost"
    # Given up three times (not retried in a loop): 2 recoveries allowed, failed at the 3rd.
    assert len(calls) == 3
    assert executions(handle, "step-0") == 3
