"""Compensation (``ctx.saga()``): what succeeded is undone, newest first, when the run fails
for good or is cancelled; never on a failure the workflow retries; each undo once."""

from __future__ import annotations

import pytest

import django_durable as durable
from django_durable.engine.saga import Saga
from django_durable.models import RunStatus, Step
from django_durable.testing import run_all, run_ready
from tests.testapp import saga_workflows as sw
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def ran(handle: durable.RunHandle) -> list[str]:
    """Return the labels the run's bodies and compensations recorded, in order."""
    rows = Execution.objects.filter(run_id=handle.id).order_by("id")
    return list(rows.values_list("label", flat=True))


def steps_of(handle: durable.RunHandle) -> list[tuple[str, str]]:
    rows = Step.objects.filter(run_id=handle.id).order_by("position")
    return list(rows.values_list("name", "status"))


def test_a_run_that_succeeds_undoes_nothing():
    handle = sw.saga_order.start()
    run_all()
    assert handle.result(timeout=1) == ["reserve-id", "charge-id", "ship-id"]
    assert ran(handle) == ["reserve", "charge", "ship"]


def test_a_final_failure_undoes_what_succeeded_newest_first_then_fails_the_run():
    handle = sw.saga_order.start(fail_at="ship")
    run_all()
    assert handle.refresh().status == RunStatus.FAILED
    assert handle.error["type"] == "django_durable.exceptions.FatalError"
    assert "ship refused" in handle.error["message"]
    assert ran(handle) == ["reserve", "charge", "ship", "undo-charge-id", "undo-reserve-id"]
    assert steps_of(handle) == [
        ("reserve", "completed"),
        ("charge", "completed"),
        ("ship", "failed"),
        ("compensate:charge", "completed"),
        ("compensate:reserve", "completed"),
    ]


def test_a_failure_the_workflow_retries_is_not_compensated_the_final_one_is_once():
    handle = sw.saga_retried.start()
    run_all()
    run = handle.refresh().model
    assert (run.status, run.attempt) == (RunStatus.FAILED, 2)
    assert "attempt 2 failed" in handle.error["message"]
    # The charge is kept across the retry (its checkpoint), and refunded once, at the end.
    assert ran(handle) == ["charge", "flaky", "flaky", "undo-charge-id"]


def test_a_cancelled_run_is_compensated_and_ends_cancelled():
    handle = sw.saga_waits.start()
    run_ready()
    assert handle.refresh().status == RunStatus.WAITING
    assert ran(handle) == ["charge"]
    handle.cancel(reason="the customer changed their mind")
    run_all()
    assert handle.refresh().status == RunStatus.CANCELLED
    assert ran(handle) == ["charge", "undo-charge-id"]
    assert steps_of(handle)[-1] == ("compensate:refund", "completed")


def test_a_failed_compensation_does_not_stop_the_others_and_is_noted_in_the_error():
    handle = sw.saga_order.start(fail_at="ship", broken="charge")
    run_all()
    assert handle.refresh().status == RunStatus.FAILED
    assert ran(handle) == ["reserve", "charge", "ship", "undo-charge-id", "undo-reserve-id"]
    assert "ship refused" in handle.error["message"]  # the run fails with its own error
    assert "Compensation step 'compensate:charge' failed too" in handle.error["traceback"]
    assert ("compensate:charge", "failed") in steps_of(handle)
    assert ("compensate:reserve", "completed") in steps_of(handle)


def test_compensate_by_hand_after_catching_and_complete():
    handle = sw.saga_handled.start()
    run_all()
    assert handle.result(timeout=1) == "cancelled the order"
    assert ran(handle) == ["charge", "ship", "undo-charge-id"]


def test_the_async_face_undoes_the_same_way():
    handle = sw.saga_async.start(fail_at="charge")
    run_all()
    assert handle.refresh().status == RunStatus.FAILED
    assert ran(handle) == ["reserve", "charge", "undo-reserve-id"]
    done = sw.saga_async.start()
    run_all()
    assert done.result(timeout=1) == ["reserve-id", "charge-id", "ship-id"]


def test_a_compensation_must_be_callable():
    with pytest.raises(TypeError, match="'refund' must be callable, not str"):
        Saga(None).add("refund", "not a function")  # type: ignore[arg-type]
