"""Step timeouts (``ctx.step(..., timeout=)``): an attempt that overruns fails with
``StepTimeout`` and is retried like any failure. An async body is cancelled; a plain body
is abandoned in its helper thread, and its late result is never recorded; the run's lease
is not held for it. Bodies that overrun wait on gates the tests open, never on the clock.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest

import django_durable as durable
from django_durable.models import Run, RunStatus, Step, StepStatus
from django_durable.testing import run_ready, run_until_finished, time_machine
from tests.conftest import wait_for
from tests.testapp import timeout_workflows as tw
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

STEP_TIMEOUT = "django_durable.exceptions.StepTimeout"
SHORT = tw.SHORT
FAST = ("--lease", "2", "--poll-interval", "0.1")


@pytest.fixture
def key() -> Iterator[str]:
    """A test's gate name; the gate opens at teardown, so no abandoned body lingers."""
    name = uuid.uuid4().hex
    yield name
    tw.GATES[name].set()


def helper_threads() -> list[threading.Thread]:
    """Return the helper threads of timed plain bodies still alive in this process."""
    return [t for t in threading.enumerate() if t.name.startswith("durable-step-")]


def labels(handle: durable.RunHandle) -> list[str]:
    rows = Execution.objects.filter(run_id=handle.id).order_by("id")
    return list(rows.values_list("label", flat=True))


def step(handle: durable.RunHandle, name: str = "slow") -> Step:
    return Step.objects.get(run_id=handle.id, name=name)


def earlier_types(record: Step) -> list[str]:
    return [attempt["type"] for attempt in record.error.get("earlier", [])]


def assert_timed_out_then_fresh(handle: durable.RunHandle) -> None:
    assert handle.result(timeout=1) == "fresh"
    record = step(handle)
    assert (record.status, record.attempts, record.executions) == (StepStatus.COMPLETED, 2, 2)
    assert record.result == "fresh"
    assert earlier_types(record) == [STEP_TIMEOUT]
    first = record.error["earlier"][0]
    assert first["message"] == "Attempt 1 of step 'slow' ran past its timeout of 0.2 seconds."


def test_a_plain_body_that_overruns_fails_its_attempt_and_the_retry_succeeds(key):
    handle = tw.timeout_retried.start(key)
    run_until_finished(handle)
    assert_timed_out_then_fresh(handle)
    assert labels(handle) == ["attempt-1", "attempt-2"]
    tw.GATES[key].set()
    assert tw.ENDED[key].wait(10), "the abandoned body did not end"
    assert step(handle).result == "fresh"


def test_the_late_result_of_an_abandoned_body_is_never_recorded(key):
    handle = tw.timeout_retried.start(key, policy="later")
    with time_machine() as clock:
        run_ready()
        # The attempt ended at its deadline: the run waits for its retry, the worker let
        # it go, while the abandoned body still runs.
        assert not tw.ENDED[key].is_set()
        run = Run.objects.get(pk=handle.id)
        assert run.status == RunStatus.WAITING
        assert (run.claimed_by, run.lease_expires_at) == (None, None)
        assert run.waiting_for == "retry of step 'slow' (attempt 2)"
        record = step(handle)
        assert (record.status, record.result, record.attempts) == (StepStatus.RETRYING, None, 1)
        assert record.error["type"] == STEP_TIMEOUT

        tw.GATES[key].set()  # the abandoned body returns "late" now
        assert tw.ENDED[key].wait(10), "the abandoned body did not end"
        wait_for(lambda: not helper_threads(), 10, "the helper thread ended")
        assert tw.CONNECTIONS[key].connection is None  # its own connection, closed
        record = step(handle)
        assert (record.status, record.result, record.attempts) == (StepStatus.RETRYING, None, 1)

        clock.skip(timedelta(hours=2))
        run_until_finished(handle)
    assert handle.result(timeout=1) == "fresh"
    assert step(handle).result == "fresh"
    assert labels(handle) == ["attempt-1", "attempt-2"]


def test_exhausted_attempts_fail_the_run_with_step_timeout(key):
    handle = tw.timeout_exhausted.start(key)
    run_until_finished(handle)
    assert handle.refresh().status == RunStatus.FAILED
    assert handle.error["type"] == STEP_TIMEOUT
    assert handle.error["step"] == "slow"
    assert handle.error["message"] == (
        "Attempt 2 of step 'slow' ran past its timeout of 0.2 seconds."
    )
    with pytest.raises(durable.WorkflowFailed) as failed:
        handle.result(timeout=1)
    assert failed.value.error_type == STEP_TIMEOUT
    record = step(handle)
    assert (record.status, record.attempts, record.executions) == (StepStatus.FAILED, 2, 2)
    assert earlier_types(record) == [STEP_TIMEOUT]
    assert labels(handle) == ["slow", "slow"]
    assert issubclass(durable.StepTimeout, TimeoutError)
    assert issubclass(durable.StepTimeout, durable.DurableError)


def test_a_caught_step_timeout_is_raised_again_on_replay(key):
    handle = tw.timeout_exhausted.start(key, catch=True)
    run_until_finished(handle)
    # Caught on the execution where it failed, and again, rebuilt from the record, on
    # the replay after the sleep: the body is not run again.
    assert handle.result(timeout=1) == (
        "caught: Attempt 2 of step 'slow' ran past its timeout of 0.2 seconds."
    )
    assert labels(handle) == ["slow", "slow"]


def test_a_step_within_its_timeout_keeps_its_result_and_replays_it():
    handle = tw.timeout_in_time.start()
    run_until_finished(handle)
    assert handle.result(timeout=1) == {"timeout": 60.0, "left": True}
    assert labels(handle) == ["quick"]  # replayed after the sleep, not run again
    record = step(handle, "quick")
    assert (record.status, record.attempts, record.error) == (StepStatus.COMPLETED, 1, None)


def test_the_timeout_of_a_declared_step_is_its_default(key):
    handle = tw.timeout_declared.start(key)
    run_until_finished(handle)
    assert handle.result(timeout=1) == "fresh"
    record = Step.objects.get(run_id=handle.id)
    assert (record.name, record.attempts) == ("declared_slow", 2)
    assert earlier_types(record) == [STEP_TIMEOUT]
    assert tw.declared_slow.timeout == 0.2


def test_an_async_body_is_cancelled_at_its_timeout(key):
    handle = tw.timeout_async.start(key)
    run_until_finished(handle)
    assert tw.CANCELLED[key].is_set(), "the async body was not cancelled"
    assert_timed_out_then_fresh(handle)
    assert labels(handle) == ["attempt-1", "attempt-2"]


def test_an_async_body_that_blocks_the_loop_past_its_timeout_has_its_result_dropped(key):
    # It cannot be cancelled (it never awaits); it returns "late" once the gate opens,
    # which is after its deadline whatever the machine's speed: 2 x SHORT after it began.
    def open_late() -> None:
        tw.STARTED[key].wait(20)
        time.sleep(SHORT * 2)
        tw.GATES[key].set()

    opener = threading.Thread(target=open_late)
    opener.start()
    handle = tw.timeout_async.start(key, kind="blocking")
    run_until_finished(handle)
    opener.join()
    assert_timed_out_then_fresh(handle)


def test_a_plain_body_in_an_async_workflow_is_abandoned_at_its_timeout(key):
    handle = tw.timeout_async.start(key, kind="plain")
    run_until_finished(handle)
    assert_timed_out_then_fresh(handle)
    tw.GATES[key].set()
    assert tw.ENDED[key].wait(10), "the abandoned body did not end"
    assert step(handle).result == "fresh"


@pytest.mark.parametrize("workflow", [tw.timeout_saga, tw.timeout_async_saga])
def test_saga_step_passes_its_timeout_on(workflow, key):
    handle = workflow.start(key)
    run_until_finished(handle)
    assert handle.refresh().status == RunStatus.FAILED
    assert handle.error["type"] == STEP_TIMEOUT
    assert labels(handle) == ["reserve", "slow", "undo-reserved"]
    rows = Step.objects.filter(run_id=handle.id).order_by("position")
    assert list(rows.values_list("name", "status")) == [
        ("reserve", StepStatus.COMPLETED),
        ("charge", StepStatus.FAILED),
        ("compensate:reserve", StepStatus.COMPLETED),
    ]


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ("text", "TypeError", "The timeout of step 'bad-one' takes seconds or a timedelta"),
        ("bool", "TypeError", "The timeout of step 'bad-one' takes seconds or a timedelta"),
        ("zero", "ValueError", "The timeout of step 'bad-one' must be more than zero"),
        ("empty_timedelta", "ValueError", "The timeout of step 'bad-one' must be more than"),
        ("negative", "ValueError", "The timeout of step 'bad-one' cannot be negative"),
        ("nan", "ValueError", "The timeout of step 'bad-one' must be a number of seconds"),
        ("infinite", "ValueError", "The timeout of step 'bad-one' must be under 100 years"),
        ("atomic", "ValueError", "Step 'atomic-one' is atomic and has a timeout"),
    ],
)
def test_an_invalid_timeout_fails_at_the_call_naming_the_step(bad, error, message):
    handle = tw.timeout_invalid.start(bad)
    run_until_finished(handle)
    assert handle.refresh().status == RunStatus.FAILED
    assert handle.error["type"] == error
    assert handle.error["message"].startswith(message)
    assert labels(handle) == []  # the body never ran
    assert not Step.objects.filter(run_id=handle.id).exists()


def test_an_invalid_declared_timeout_fails_at_the_declaration():
    def nap() -> None: ...

    with pytest.raises(TypeError, match="The timeout of step 'nap' takes seconds"):
        durable.step(timeout="soon")(nap)
    with pytest.raises(ValueError, match="The timeout of step 'nap' must be more than zero"):
        durable.step(timeout=0)(nap)
    with pytest.raises(ValueError, match="Step 'nap' is atomic and has a timeout"):
        durable.step(atomic=True, timeout=5)(nap)
    assert durable.step(timeout=timedelta(minutes=1))(nap).timeout == 60.0
    assert durable.step(nap).timeout is None


@pytest.mark.slow
def test_a_step_that_overruns_in_a_worker_process_is_retried_while_its_body_goes_on(
    worker_processes,
):
    handle = tw.timeout_in_worker.start()
    worker_processes.start(*FAST)
    wait_for(lambda: Run.objects.get(pk=handle.id).is_terminal, 60, "the run ended")
    assert handle.result(timeout=1) == "fresh", worker_processes.logs()
    # The run completed without waiting for the abandoned first attempt, still running.
    assert labels(handle) == ["attempt-1", "attempt-2"]
    record = step(handle)
    assert (record.attempts, record.executions) == (2, 2)
    assert earlier_types(record) == [STEP_TIMEOUT]
    Execution.objects.create(run_id=handle.id, label="release", pid=0)
    ended = Execution.objects.filter(run_id=handle.id, label="abandoned-end")
    wait_for(ended.exists, 60, "the abandoned body ended")
    assert step(handle).result == "fresh"  # its "late" was dropped
    logs = worker_processes.logs()
    assert "overran its timeout of 0.5 s" in logs
    wait_for(lambda: "its result is dropped" in worker_processes.logs(), 30, "the late log")
