"""Callbacks: ``ctx.callback()``, ``cb.wait()``, ``complete_callback``, ``fail_callback``."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

import django_durable as durable
from django_durable.core.signing import callback_token
from django_durable.models import Callback, Run, RunStatus, Step
from django_durable.testing import run_all, time_machine
from tests.testapp import waits_workflows as ww
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def waiting_callback(worker, handle: durable.RunHandle) -> str:
    """Run until the workflow waits on its callback; return the callback's id."""
    worker.run_once()
    run = Run.objects.get(pk=handle.id)
    assert run.status == RunStatus.WAITING, run.status
    return durable.get_value(handle.id, "callback")["id"]


def test_a_completion_wakes_the_waiting_run_with_the_value(worker):
    handle = ww.callback.start()
    callback_id = waiting_callback(worker, handle)
    run = Run.objects.get(pk=handle.id)
    assert run.wake_on == f"cb:{callback_id}"
    assert run.waiting_for == f"callback {callback_id}"
    durable.complete_callback(callback_id, {"approved": True})
    # Made pending in the completing transaction: no poll of the callbacks.
    assert Run.objects.get(pk=handle.id).status == RunStatus.PENDING
    run_all()
    result = handle.result(timeout=1)
    assert result["value"] == result["again"] == {"approved": True}
    assert result["url"] == f"/durable/callbacks/{callback_token(callback_id)}/"
    row = Callback.objects.get(pk=callback_id)
    assert (row.status, row.get_value(), row.position) == ("completed", {"approved": True}, 0)
    assert row.settled_at is not None


def test_the_callback_is_made_once_and_replays_with_the_same_id(worker):
    handle = ww.callback.start()
    callback_id = waiting_callback(worker, handle)
    durable.complete_callback(callback_id, 1)
    run_all()
    assert Callback.objects.filter(run_id=handle.id).count() == 1
    # The body handed it out once, though the run executed three times.
    assert Execution.objects.filter(run_id=handle.id, label="hand-out").count() == 1
    record = Step.objects.get(run_id=handle.id, kind="callback")
    assert record.get_result()["id"] == callback_id


def test_a_second_completion_is_refused_and_changes_nothing(worker):
    handle = ww.callback.start()
    callback_id = waiting_callback(worker, handle)
    durable.complete_callback(callback_id, "first")
    with pytest.raises(durable.CallbackClosed) as refused:
        durable.complete_callback(callback_id, "second")
    assert refused.value.reason == "completed"
    assert "was completed before" in str(refused.value)
    with pytest.raises(durable.CallbackClosed):
        durable.fail_callback(callback_id, "too late")
    run_all()
    assert handle.result(timeout=1)["value"] == "first"
    assert Callback.objects.get(pk=callback_id).get_value() == "first"


def test_a_failure_raises_callback_failed_with_its_details(worker):
    handle = ww.callback.start()
    callback_id = waiting_callback(worker, handle)
    durable.fail_callback(callback_id, "card declined", details={"code": 51})
    with pytest.raises(durable.CallbackClosed) as refused:
        durable.complete_callback(callback_id, "after all")
    assert refused.value.reason == "failed"
    run_all()
    result = handle.result(timeout=1)
    assert result == {
        "failed": f"Callback {callback_id} was failed: card declined",
        "details": {"code": 51},
    }


def test_a_completion_before_the_wait_is_there_when_the_run_gets_there(worker):
    handle = ww.callback_after_sleep.start(0.2)
    worker.run_once()
    callback_id = durable.get_value(handle.id, "callback")["id"]
    durable.complete_callback(callback_id, "early")
    run_all()
    assert handle.result(timeout=1) == "early"
    wait = Step.objects.get(run_id=handle.id, kind="wait_callback")
    assert wait.status == "completed"


def test_a_timeout_raises_callback_timeout_and_later_completions_are_refused(worker):
    handle = ww.callback.start(0.2)
    callback_id = waiting_callback(worker, handle)
    assert Run.objects.get(pk=handle.id).wake_at is not None
    run_all()
    assert handle.result(timeout=1) == "timed out"
    assert Callback.objects.get(pk=callback_id).status == "expired"
    with pytest.raises(durable.CallbackClosed) as refused:
        durable.complete_callback(callback_id, "late")
    assert refused.value.reason == "expired"


def test_a_callback_past_its_time_is_refused_before_its_run_notices(worker):
    # A minute, skipped by the test clock: a loaded machine cannot pass it before the wait.
    handle = ww.callback.start(60)
    callback_id = waiting_callback(worker, handle)
    with time_machine() as machine:
        machine.skip(61)
        with pytest.raises(durable.CallbackClosed) as refused:
            durable.complete_callback(callback_id, "late")
        assert refused.value.reason == "expired"
        run_all()
    assert handle.result(timeout=1) == "timed out"


def test_unknown_and_malformed_ids_are_callback_not_found():
    with pytest.raises(durable.CallbackNotFound) as unknown:
        durable.complete_callback("01900000-0000-7000-8000-000000000000", 1)
    assert "No callback has the id" in str(unknown.value)
    with pytest.raises(durable.CallbackNotFound):
        durable.fail_callback("not-an-id", "x")
    assert isinstance(unknown.value, LookupError)


def test_a_callback_of_a_finished_run_is_refused(worker):
    handle = ww.callback.start()
    callback_id = waiting_callback(worker, handle)
    durable.cancel(handle.id)
    run_all()
    assert handle.refresh().status == RunStatus.CANCELLED
    with pytest.raises(durable.CallbackClosed) as refused:
        durable.complete_callback(callback_id, 1)
    assert refused.value.reason == "run_finished"


def test_bad_values_are_refused_before_anything_is_stored(worker, settings):
    handle = ww.callback.start()
    callback_id = waiting_callback(worker, handle)
    settings.DJANGO_DURABLE = {"MAX_PAYLOAD_BYTES": 100}
    with pytest.raises(durable.PayloadTooLarge):
        durable.complete_callback(callback_id, "x" * 200)
    with pytest.raises(durable.SerializationError):
        durable.complete_callback(callback_id, "nul \x00")
    with pytest.raises(durable.SerializationError):
        durable.complete_callback(callback_id, object())
    with pytest.raises(TypeError):
        durable.fail_callback(callback_id, {"not": "a string"})  # type: ignore[arg-type]
    assert Callback.objects.get(pk=callback_id).status == "pending"
    assert Run.objects.get(pk=handle.id).status == RunStatus.WAITING


def test_a_completion_in_a_rolled_back_transaction_never_happened(worker):
    handle = ww.callback.start()
    callback_id = waiting_callback(worker, handle)

    def complete_then_fail() -> None:
        with transaction.atomic():
            durable.complete_callback(callback_id, "rolled back")
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        complete_then_fail()
    assert Callback.objects.get(pk=callback_id).status == "pending"
    assert Run.objects.get(pk=handle.id).status == RunStatus.WAITING
    durable.complete_callback(callback_id, "kept")
    run_all()
    assert handle.result(timeout=1)["value"] == "kept"


def test_the_async_face_and_the_async_twins(worker):
    handle = ww.async_callback.start()
    callback_id = waiting_callback(worker, handle)
    async_to_sync(durable.acomplete_callback)(callback_id, {"n": 1})
    with pytest.raises(durable.CallbackClosed):
        async_to_sync(durable.afail_callback)(callback_id, "no")
    run_all()
    assert handle.result(timeout=1) == {"value": {"n": 1}, "id": callback_id}
    assert Step.objects.get(run_id=handle.id, kind="callback").name == "approval"


def test_a_callback_in_first_of_wins_when_completed(worker):
    handle = ww.first_of_callback.start()
    callback_id = waiting_callback(worker, handle)
    run = Run.objects.get(pk=handle.id)
    assert run.wake_on == "f:any"
    durable.complete_callback(callback_id, "done")
    assert Run.objects.get(pk=handle.id).status == RunStatus.PENDING
    run_all()
    assert handle.result(timeout=1) == {"index": 1, "kind": "callback", "value": "done"}


def test_a_callback_in_first_of_times_out_when_it_expires_first(worker):
    handle = ww.first_of_callback.start(0.2)
    callback_id = waiting_callback(worker, handle)
    run_all()
    assert handle.result(timeout=1) == {"kind": "callback", "value": "timed out"}
    assert Callback.objects.get(pk=callback_id).status == "expired"


def test_a_message_that_wins_over_a_callback_leaves_it_pending(worker):
    handle = ww.first_of_callback.start()
    callback_id = waiting_callback(worker, handle)
    durable.send(handle.id, "stop", topic="cancel")
    run_all()
    assert handle.result(timeout=1) == {"index": 0, "kind": "message", "value": "stop"}
    assert Callback.objects.get(pk=callback_id).status == "pending"


def test_a_waiting_run_says_which_callback_it_waits_for(worker):
    from django_durable import display

    handle = ww.callback.start(3600)
    callback_id = waiting_callback(worker, handle)
    summary = display.summarize(Run.objects.get(pk=handle.id))
    assert (summary.waiting, summary.name) == ("callback", callback_id)
    assert summary.sentence.startswith(f"Waiting for callback {callback_id} since")
    assert "times out" in summary.sentence
