"""``ctx.first_of()``: whichever of an event, a message, a timer, a child comes first."""

from __future__ import annotations

import datetime as dt

import pytest

import django_durable as durable
from django_durable.models import Message, Run, RunStatus, Step, WakeKey
from django_durable.testing import run_all
from tests.testapp import waits_workflows as ww
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def run_of(handle: durable.RunHandle) -> Run:
    return Run.objects.get(pk=handle.id)


def suspend(worker, handle: durable.RunHandle) -> Run:
    worker.run_once()
    run = run_of(handle)
    assert run.status == RunStatus.WAITING
    return run


def test_a_waiting_run_waits_on_each_thing_and_the_event_wakes_it(worker):
    handle = ww.first_of.start("paid:1", "review", 3600)
    run = suspend(worker, handle)
    assert run.wake_on == "f:any"
    assert run.waiting_for == "the first of: event 'paid:1', message on 'review', a timer"
    assert run.wake_at is not None  # the timer
    keys = set(WakeKey.objects.filter(run_id=handle.id).values_list("key", flat=True))
    assert keys == {"e:paid:1", "m:review"}
    marker = Step.objects.get(run_id=handle.id, kind="first_of")
    assert marker.status == "waiting"
    assert marker.name == "event paid:1 | message review | timer"
    event_id = durable.emit_event("paid:1", {"amount": 5})
    # Made pending in the emitting transaction, like a run waiting for that event alone.
    assert run_of(handle).status == RunStatus.PENDING
    run_all()
    assert handle.result(timeout=1) == {
        "index": 0,
        "kind": "event",
        "value": {"event_id": event_id, "data": {"amount": 5}},
    }
    assert not WakeKey.objects.filter(run_id=handle.id).exists()  # cleared with the winner
    record = Step.objects.get(run_id=handle.id, kind="first_of")
    assert record.status == "completed"


def test_a_message_wakes_it_and_a_later_message_stays_unconsumed(worker):
    handle = ww.first_of.start("paid:2", "review", 3600)
    suspend(worker, handle)
    durable.send(handle.id, {"ok": True}, topic="review")
    assert run_of(handle).status == RunStatus.PENDING
    durable.send(handle.id, "second", topic="review")
    run_all()
    assert handle.result(timeout=1) == {"index": 1, "kind": "message", "value": {"ok": True}}
    taken = Message.objects.filter(run_id=handle.id, consumed_at__isnull=False)
    assert [m.get_data() for m in taken] == [{"ok": True}]
    assert Message.objects.filter(run_id=handle.id, consumed_at__isnull=True).count() == 1


def test_the_timer_wins_when_nothing_comes_and_replays_as_the_timer(worker):
    handle = ww.first_of.start("paid:3", "review", 0.2)
    suspend(worker, handle)
    run_all()
    result = handle.result(timeout=1)
    assert (result["index"], result["kind"]) == (2, "timer")
    assert isinstance(result["value"], dt.datetime)


def test_what_is_already_there_wins_without_suspending():
    durable.emit_event("paid:4", "early")
    handle = ww.first_of.start("paid:4", "review", 3600)
    run_all()
    assert handle.result(timeout=1)["kind"] == "event"
    record = Step.objects.get(run_id=handle.id, kind="first_of")
    assert record.status == "completed"
    assert not WakeKey.objects.exists()


@pytest.mark.parametrize(("first", "winner"), [("event", "event"), ("message", "message")])
def test_of_two_already_there_the_one_that_came_first_wins(first, winner):
    # The message is the first argument: arrival, not the order of the arguments, decides.
    handle = ww.first_of_then_the_rest.start("paid:5", "review")
    if first == "event":
        durable.emit_event("paid:5", "e")
        durable.send(handle.id, "m", topic="review")
    else:
        durable.send(handle.id, "m", topic="review")
        durable.emit_event("paid:5", "e")
    run_all()
    result = handle.result(timeout=1)
    assert result["kind"] == winner
    # The loser was not consumed: the next recv (or wait) took it.
    assert result["rest"] == ("m" if winner == "event" else "e")
    message = Message.objects.get(run_id=handle.id)
    recv = Step.objects.filter(run_id=handle.id, kind="recv").first()
    expected = recv.position if winner == "event" else 0
    assert message.consumed_position == expected


def test_an_event_won_by_first_of_is_received_the_next_wait_takes_a_newer_one(worker):
    durable.emit_event("price", 1)
    handle = ww.first_of_twice.start("price")
    worker.run_once()
    assert run_of(handle).status == RunStatus.WAITING  # the wait wants an emission newer than 1
    durable.emit_event("price", 2)
    worker.run_once()
    assert run_of(handle).status == RunStatus.WAITING  # so does the second first_of
    durable.emit_event("price", 3)
    run_all()
    assert handle.result(timeout=1) == [1, 2, 3]


def test_the_async_face(worker):
    handle = ww.async_first_of.start("paid:6", "review", 3600)
    suspend(worker, handle)
    durable.send(handle.id, [1, 2], topic="review")
    run_all()
    assert handle.result(timeout=1) == {"index": 1, "kind": "message", "value": [1, 2]}


def test_a_child_that_ends_first_wins_and_its_result_is_still_there():
    handle = ww.first_of_child.start(0.0, 3600)
    run_all()
    assert handle.result(timeout=1) == {"index": 0, "kind": "child", "value": 42, "result": 42}


def test_a_timer_beats_a_slow_child_which_is_still_waited_for_after():
    handle = ww.first_of_child.start(1.0, 0.1)
    run_all()
    result = handle.result(timeout=1)
    assert (result["kind"], result["result"]) == ("timer", 42)


def test_a_failed_child_that_comes_first_raises_child_workflow_failed():
    handle = ww.first_of_failed_child.start()
    run_all()
    assert handle.result(timeout=1) == "child failed: True"


def test_a_typed_event_is_validated_by_its_model():
    durable.emit_event("typed:1", {"amount": "19.90", "currency": "EUR"})
    durable.emit_event("typed:2", {"amount": "lots"})
    good = ww.first_of_typed.start("typed:1")
    bad = ww.first_of_typed.start("typed:2")
    run_all()
    assert good.result(timeout=1) == {"amount": 19.9, "index": 1}
    with pytest.raises(durable.WorkflowFailed) as failed:
        bad.result(timeout=1)
    assert failed.value.error_type == "django_durable.exceptions.EventDataInvalid"


def test_timers_alone_are_a_sleep(worker):
    handle = ww.first_of_timer_only.start(0.1)
    worker.run_once()
    run = run_of(handle)
    assert run.status in (RunStatus.WAITING, RunStatus.PENDING)
    assert run.wake_on is None and run.wake_at is not None
    run_all()
    assert handle.result(timeout=1)["kind"] == "timer"


def test_the_timer_counts_from_the_first_wait_and_wake_now_ends_it(worker):
    handle = ww.first_of.start("paid:7", "review", 3600)
    wake_at = suspend(worker, handle).wake_at
    # Woken without what it waits for (a cancelled-then-retried wake, say): same timer.
    Run.objects.filter(pk=handle.id).update(status=RunStatus.PENDING, wake_on=None)
    assert suspend(worker, handle).wake_at == wake_at
    assert durable.wake_now(handle.id) == "timeout"
    run_all()
    assert handle.result(timeout=1)["kind"] == "timer"


@pytest.mark.parametrize("what", ["nothing", "not a thing"])
def test_first_of_refuses_what_it_cannot_wait_for(what):
    handle = ww.first_of_bad.start(what)
    run_all()
    with pytest.raises(durable.WorkflowFailed) as failed:
        handle.result(timeout=1)
    expected = "at least one thing" if what == "nothing" else "not str"
    assert expected in failed.value.error_message


def test_a_replay_returns_the_recorded_winner_and_takes_nothing_again(worker):
    handle = ww.first_of_then_the_rest.start("paid:8", "review")
    suspend(worker, handle)
    durable.send(handle.id, "m1", topic="review")
    durable.emit_event("paid:8", "e1")
    run_all()
    assert handle.result(timeout=1) == {"index": 0, "kind": "message", "value": "m1", "rest": "e1"}
    assert Message.objects.filter(run_id=handle.id, consumed_at__isnull=False).count() == 1
    assert Execution.objects.filter(run_id=handle.id).count() == 0


def test_a_waiting_run_says_what_it_waits_for_in_words(worker):
    from django_durable import display

    handle = ww.first_of.start("paid:9", "review", 3600)
    summary = display.summarize(suspend(worker, handle))
    assert summary.waiting == "first_of"
    assert summary.sentence.startswith(
        "Waiting for the first of: event 'paid:9', message on 'review', a timer since"
    )
    assert summary.until is not None
