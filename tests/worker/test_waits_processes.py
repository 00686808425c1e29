"""``first_of`` and callbacks with real worker processes, killed with SIGKILL.

A run waits in a worker that is then killed; what it waits for arrives; a second worker
takes the winner and is killed in the step after it; a third finishes the run. The winner
must be the same throughout, and nothing taken twice: the message that lost is taken by
the later ``recv``, the callback's value is the one completion it accepted.
"""

from __future__ import annotations

import signal

import pytest

import django_durable as durable
from django_durable.models import Callback, Message, Run, RunStatus, Step, WakeKey
from tests.conftest import wait_for
from tests.testapp import waits_workflows as ww
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--lease", "1", "--poll-interval", "0.1")


def status(handle: durable.RunHandle) -> str:
    return Run.objects.get(pk=handle.id).status


def kill(worker_processes, proc) -> None:
    worker_processes.signal(proc, signal.SIGKILL)
    proc.wait(5)


def slow_started(handle: durable.RunHandle, times: int = 1) -> bool:
    return Execution.objects.filter(run_id=handle.id, label="slow").count() >= times


@pytest.mark.parametrize("first", ["event", "message"])
def test_a_killed_first_of_resumes_with_the_same_winner_and_takes_nothing_twice(
    worker_processes, first
):
    name = f"paid:{first}"
    handle = ww.race_then_slow.start(name, "review", 3.0)
    waiter = worker_processes.start(*FAST)
    wait_for(lambda: status(handle) == RunStatus.WAITING, message="waiting in first_of")
    assert Run.objects.get(pk=handle.id).wake_on == "f:any"
    kill(worker_processes, waiter)  # killed while the run waits
    if first == "event":
        durable.emit_event(name, "the event")
        durable.send(handle.id, "the message", topic="review")
    else:
        durable.send(handle.id, "the message", topic="review")
        durable.emit_event(name, "the event")
    taker = worker_processes.start(*FAST)
    wait_for(lambda: slow_started(handle), 20, "the step after first_of began")
    winner = Step.objects.get(run_id=handle.id, kind="first_of")
    assert winner.status == "completed"
    kill(worker_processes, taker)  # killed in the step after the winner was recorded
    worker_processes.start(*FAST)
    wait_for(lambda: Run.objects.get(pk=handle.id).is_terminal, 40, "run finished")
    result = handle.result(timeout=1)
    print(f"\n[first_of killed twice] {result} slow ran {Execution.objects.count()} times")
    assert result["kind"] == first, worker_processes.logs()
    expected_rest = "the message" if first == "event" else "the event"
    assert result["rest"] == expected_rest
    # The record of the winner is the one the killed worker wrote: replayed, not redone.
    again = Step.objects.get(run_id=handle.id, kind="first_of")
    assert (again.result, again.recorded_at) == (winner.result, winner.recorded_at)
    message = Message.objects.get(run_id=handle.id)  # one message, taken once, by one op
    taker_kind = "first_of" if first == "message" else "recv"
    assert message.consumed_position == Step.objects.get(run_id=handle.id, kind=taker_kind).position
    assert not WakeKey.objects.filter(run_id=handle.id).exists()
    assert 2 <= Execution.objects.filter(run_id=handle.id, label="slow").count() <= 3


def test_a_killed_callback_wait_resumes_with_the_one_completion(worker_processes):
    handle = ww.callback_then_slow.start(3.0)
    waiter = worker_processes.start(*FAST)
    wait_for(lambda: status(handle) == RunStatus.WAITING, message="waiting on the callback")
    callback_id = durable.get_value(handle.id, "callback")["id"]
    kill(worker_processes, waiter)
    durable.complete_callback(callback_id, {"approved": "yes"})
    with pytest.raises(durable.CallbackClosed):
        durable.complete_callback(callback_id, {"approved": "no"})
    taker = worker_processes.start(*FAST)
    wait_for(lambda: slow_started(handle), 20, "the step after the wait began")
    waited = Step.objects.get(run_id=handle.id, kind="wait_callback")
    kill(worker_processes, taker)
    with pytest.raises(durable.CallbackClosed):
        durable.fail_callback(callback_id, "too late")
    worker_processes.start(*FAST)
    wait_for(lambda: Run.objects.get(pk=handle.id).is_terminal, 40, "run finished")
    assert handle.result(timeout=1) == {"value": {"approved": "yes"}, "id": callback_id}, (
        worker_processes.logs()
    )
    again = Step.objects.get(run_id=handle.id, kind="wait_callback")
    assert (again.result, again.recorded_at) == (waited.result, waited.recorded_at)
    assert Callback.objects.filter(run_id=handle.id).count() == 1
    assert Callback.objects.get(pk=callback_id).get_value() == {"approved": "yes"}
