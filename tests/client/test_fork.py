"""``durable.fork(run_id, from_step=N)``: a new run whose first N checkpoints are copies of a
finished run's; the rest runs again, on the code deployed now."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.utils import timezone

import django_durable as durable
from django_durable.models import Event, Message, Run, RunStatus, RunValue, Step, StreamItem
from django_durable.testing import run_ready, run_until_finished
from tests.testapp import fork_workflows as fw
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bug() -> Iterator[None]:
    """The original runs on code with the bug; the test "deploys the fix" when it returns."""
    fw.BUG["on"] = True
    yield
    fw.BUG["on"] = False


def failed(handle: durable.RunHandle) -> durable.RunHandle:
    """Run ``handle`` (the bug on) until it has failed; turn the bug off: the fix is deployed."""
    fw.BUG["on"] = True
    try:
        run_until_finished(handle)
    finally:
        fw.BUG["on"] = False
    assert handle.status == RunStatus.FAILED, handle.error
    return handle


def bodies(run_id: str) -> list[str]:
    """Return the labels of the step bodies that ran for ``run_id``, in order."""
    return list(
        Execution.objects.filter(run_id=run_id).order_by("id").values_list("label", flat=True)
    )


def records(run_id: str) -> list[tuple]:
    return list(
        Step.objects.filter(run_id=run_id)
        .order_by("position")
        .values_list("position", "kind", "name", "status", "result")
    )


# --- the use: a bug fixed in step 5, forked from step 5 ----------------------------------


def test_a_run_failed_by_a_bug_is_forked_from_the_failed_step_without_repeating_payments():
    original = failed(fw.fork_orders.start("o-1"))
    position = original.error["position"]  # the shipping step: the fifth step, position 12
    assert records(original.id)[position][1:3] == ("step", "ship")

    fork = durable.fork(original.id, from_step=position)

    assert fork.forked_from_id == original.id and fork.status == RunStatus.PENDING
    # The first 12 records are copies: replay returns them, in the same order.
    assert records(fork.id) == records(original.id)[:position]
    # One execution: the worker's claim reads the copied records (a fork has records before
    # its first claim), so that the first write does not find them in its way.
    assert run_ready() == 1
    assert fork.result(timeout=1)["shipped"] == "shipped o-1"
    # The payments ran once, in the original; the fork ran only the fixed step.
    assert bodies(original.id) == ["pay-1", "pay-2", "pay-3", "pay-4", "ship"]
    assert bodies(fork.id) == ["ship"]
    # What the copied operations published is the fork's too, then what it published itself.
    assert [item.get_value() for item in StreamItem.objects.filter(run_id=fork.id)] == [
        "paid 1",
        "paid 2",
        "paid 3",
        "paid 4",
        None,  # closed by the fork
    ]
    history = RunValue.objects.filter(run_id=fork.id, key="progress").order_by("id")
    assert [value.get_value()["done"] for value in history] == [1, 2, 3, 4, 5]
    assert durable.get_run(original.id).status == RunStatus.FAILED  # the original is untouched


def test_the_fork_is_a_new_top_level_run_with_the_same_input_owner_queue_and_priority():
    owner = get_user_model().objects.create_user("olive")
    options = fw.fork_orders.using(owner=owner, queue="default", priority=3)
    original = failed(options.start("o-2"))
    fork = durable.fork(original.id, from_step=3).model
    source = Run.objects.get(pk=original.id)
    assert (fork.workflow_name, fork.input, fork.queue, fork.priority) == (
        source.workflow_name,
        source.input,
        source.queue,
        source.priority,
    )
    assert (fork.owner_id, fork.forked_from_id, fork.attempt) == (owner.pk, source.pk, 1)
    assert (fork.parent_id, fork.depth, fork.idempotency_key, fork.lease_token) == (
        None,
        0,
        None,
        0,
    )
    assert [run.pk for run in source.forks.all()] == [fork.pk]


def test_a_fork_from_the_middle_runs_the_rest_again_and_its_stream_goes_on():
    original = failed(fw.fork_orders.start("o-3"))
    # Positions: pay-1 0, progress 1, log 2, pay-2 3, progress 4, ...: keep pay-1 and pay-2.
    fork = durable.fork(original.id, from_step=4)
    assert RunValue.objects.filter(run_id=fork.id).count() == 1  # only progress at position 1
    assert StreamItem.objects.filter(run_id=fork.id).count() == 1
    run_until_finished(fork)
    assert fork.status == RunStatus.COMPLETED
    assert bodies(fork.id) == ["pay-3", "pay-4", "ship"]
    offsets = StreamItem.objects.filter(run_id=fork.id).order_by("offset")
    assert [(item.offset, item.get_value()) for item in offsets] == [
        (0, "paid 1"),
        (1, "paid 2"),
        (2, "paid 3"),
        (3, "paid 4"),
        (4, None),
    ]


def test_a_fork_from_step_0_runs_everything_again():
    original = failed(fw.fork_orders.start("o-4"))
    fork = durable.fork(original.id, from_step=0)
    assert not Step.objects.filter(run_id=fork.id).exists()
    run_until_finished(fork)
    assert bodies(fork.id) == ["pay-1", "pay-2", "pay-3", "pay-4", "ship"]


def test_a_completed_run_forked_from_its_end_replays_to_the_same_result():
    original = fw.fork_orders.start("o-5")
    run_until_finished(original)
    end = Step.objects.filter(run_id=original.id).count()
    fork = durable.fork(original.id, from_step=end)
    run_until_finished(fork)
    assert fork.result() == original.result()
    assert bodies(fork.id) == []


def test_handle_fork_afork_and_a_fork_of_a_fork():
    original = failed(fw.fork_orders.start("o-6"))
    first = original.fork(2)
    run_until_finished(first)
    second = async_to_sync(durable.afork)(first.id, from_step=1)
    third = async_to_sync(original.afork)(0)
    assert (first.forked_from_id, second.forked_from_id) == (original.id, first.id)
    assert third.forked_from_id == original.id
    assert records(second.id) == records(original.id)[:1]


# --- what a fork refuses ------------------------------------------------------------------


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING])
def test_a_run_that_has_not_finished_cannot_be_forked(status):
    handle = wf.add.start(1, 2)
    Run.objects.filter(pk=handle.id).update(status=status)
    with pytest.raises(durable.RunNotForkable, match=f"is {status}: only a completed") as caught:
        durable.fork(handle.id, from_step=0)
    assert caught.value.reason == "unfinished"
    assert Run.objects.count() == 1


@pytest.mark.parametrize("step", [-1, 1.0, "2", True, None])
def test_from_step_must_be_a_whole_number_from_0(step):
    original = failed(fw.fork_orders.start("o-7"))
    with pytest.raises(ValueError, match="from_step= must be a whole number from 0"):
        durable.fork(original.id, from_step=step)
    assert Run.objects.count() == 1


def test_from_step_past_the_records_is_refused_and_says_how_far_it_can_go():
    original = failed(fw.fork_orders.start("o-8"))
    count = Step.objects.filter(run_id=original.id).count()  # 13: the failed step included
    with pytest.raises(durable.RunNotForkable, match=f"recorded {count} operations") as caught:
        durable.fork(original.id, from_step=count + 1)
    assert f"from a step from 0 to {count}." in str(caught.value)
    assert caught.value.reason == "from_step"
    # Up to the end is allowed: the failed step is copied, and fails the fork again.
    fork = durable.fork(original.id, from_step=count)
    run_until_finished(fork)
    assert fork.status == RunStatus.FAILED and bodies(fork.id) == []


def test_a_record_still_running_is_never_copied_as_if_it_had_finished():
    # A run whose worker was lost in the shipping step too often: the step's record is
    # still "running" (its body began; its outcome is not known).
    original = failed(fw.fork_orders.start("o-9"))
    position = original.error["position"]
    Step.objects.filter(run_id=original.id, position=position).update(
        status="running", result=None, error=None
    )
    with pytest.raises(durable.RunNotForkable, match=f"at position {position} is running"):
        durable.fork(original.id, from_step=position + 1)
    fork = durable.fork(original.id, from_step=position)  # up to it is fine: it runs again
    run_until_finished(fork)
    assert fork.status == RunStatus.COMPLETED and bodies(fork.id) == ["ship"]


def test_an_unknown_run_is_run_not_found():
    with pytest.raises(durable.RunNotFound, match="No run has the id"):
        durable.fork("00000000-0000-0000-0000-000000000000", from_step=0)
    with pytest.raises(durable.RunNotFound):
        durable.fork("not-a-run", from_step=0)
    with pytest.raises(TypeError, match="Name the run"):
        durable.fork(from_step=0)


# --- cancelled runs -----------------------------------------------------------------------


def test_a_cancelled_run_is_forked_up_to_where_it_was_cancelled():
    original = fw.fork_messages.start()
    durable.send(original.id, "first", "approval")
    run_ready()  # took it, shipped, waits for the second message
    original.cancel("no second approval")
    run_until_finished(original)
    assert original.status == RunStatus.CANCELLED
    marker = Step.objects.get(run_id=original.id, kind="cancel").position
    with pytest.raises(durable.RunNotForkable, match=f"cancelled at position {marker}"):
        durable.fork(original.id, from_step=marker + 1)
    fork = durable.fork(original.id, from_step=marker)
    run_ready()
    assert fork.refresh().status == RunStatus.WAITING  # for a second message, sent to it
    fork.send("second", "approval")
    run_until_finished(fork)
    assert fork.result() == {"first": "first", "second": "second"}


def test_a_fork_cancelled_before_a_worker_took_it_ends_at_once():
    original = failed(fw.fork_orders.start("o-10"))
    fork = durable.fork(original.id, from_step=4)
    assert fork.cancel() is True
    assert fork.refresh().status == RunStatus.CANCELLED


# --- messages, events, children -----------------------------------------------------------


def test_messages_the_original_took_are_replayed_not_taken_again():
    original = fw.fork_messages.start()
    durable.send(original.id, "first", "approval")
    durable.send(original.id, "second", "approval")
    failed(original)  # took "first" at position 0, then failed at position 1
    fork = durable.fork(original.id, from_step=1)
    run_ready()
    # The copied recv returned "first"; the second recv waits for a message to the fork:
    # the original's messages are the original's.
    assert fork.refresh().status == RunStatus.WAITING
    taken = Message.objects.filter(run_id=original.id).order_by("id")
    assert [(m.get_data(), m.consumed_position) for m in taken] == [("first", 0), ("second", None)]
    assert not Message.objects.filter(run_id=fork.id).exists()
    fork.send("for the fork", "approval")
    run_until_finished(fork)
    assert fork.result() == {"first": "first", "second": "for the fork"}


def test_a_fork_that_runs_a_recv_again_waits_for_a_message_to_it():
    original = fw.fork_messages.start()
    durable.send(original.id, "first", "approval")
    failed(original)
    fork = durable.fork(original.id, from_step=0)
    run_ready()
    assert fork.refresh().status == RunStatus.WAITING
    assert Message.objects.get(run_id=original.id).consumed_position == 0  # still the original's


def test_events_emitted_by_copied_operations_are_not_emitted_again():
    original = fw.fork_events.start()
    durable.emit_event("fork/go", {"n": 1})
    failed(original)
    assert Event.objects.filter(name="fork/emitted").count() == 1
    fork = durable.fork(original.id, from_step=2)  # the wait and the emit are copied
    run_until_finished(fork)
    assert fork.result()["event"] == {"n": 1}
    assert fork.result()["emitted"] == Event.objects.get(name="fork/emitted").id
    # From after the wait: the emit runs again, as the fork's own event.
    again = durable.fork(original.id, from_step=1)
    run_until_finished(again)
    emitted = Event.objects.filter(name="fork/emitted").order_by("id")
    assert [str(event.run_id) for event in emitted] == [original.id, again.id]


def test_a_finished_child_is_read_by_the_fork_never_adopted_or_started_again():
    original = failed(fw.fork_parent.start())
    child_id = original.children()[0].id
    for step in (original.error["position"], 1):  # with its result copied, or read again
        fork = durable.fork(original.id, from_step=step)
        run_until_finished(fork)
        assert fork.result() == {"child": child_id, "total": 3}
        assert fork.children() == []  # the child is still the original's alone
    assert Run.objects.filter(workflow_name="tests.add").count() == 1
    assert str(Run.objects.get(pk=child_id).parent_id) == original.id


def test_a_child_still_running_stops_the_fork_before_it():
    original = failed(fw.fork_abandons.start())
    (child,) = original.children()
    run_ready()
    assert child.refresh().status == RunStatus.WAITING  # abandoned, waiting for "go"
    with pytest.raises(durable.RunNotForkable, match=f"child run {child.id}.*has not finished"):
        durable.fork(original.id, from_step=original.error["position"])
    # From the child's own position, the fork starts a child of its own.
    fork = durable.fork(original.id, from_step=0)
    run_ready()
    (own,) = fork.children()
    assert own.id != child.id


# --- keys, deadlines, and the original's later life ---------------------------------------


def test_the_same_idempotency_key_returns_the_same_fork():
    original = failed(fw.fork_orders.start("o-11"))
    fork = durable.fork(original.id, from_step=4, idempotency_key="fix-1234:o-11")
    again = durable.fork(original.id, from_step=4, idempotency_key="fix-1234:o-11")
    assert again == fork and Run.objects.count() == 2
    assert durable.get_run(key="fix-1234:o-11") == fork
    other = failed(fw.fork_orders.start("o-12"))
    with pytest.raises(durable.DurableError, match="not a fork of run"):
        durable.fork(other.id, from_step=4, idempotency_key="fix-1234:o-11")


def test_a_fork_gets_a_deadline_counted_from_now():
    original = wf.timeout.start()
    Run.objects.filter(pk=original.id).update(
        status=RunStatus.FAILED, deadline_at=timezone.now() - dt.timedelta(days=1)
    )
    fork = durable.fork(original.id, from_step=0).model
    assert fork.deadline_at > timezone.now()


def test_retrying_the_original_after_a_fork_leaves_the_fork_alone():
    original = failed(fw.fork_orders.start("o-13"))
    fork = durable.fork(original.id, from_step=4)
    copied = records(fork.id)
    durable.retry(original.id)  # rewinds the original's failed step
    run_until_finished(original, fork)  # both: run_until_finished runs every ready run
    assert original.status == fork.status == RunStatus.COMPLETED
    assert records(fork.id)[:4] == copied
    assert bodies(fork.id) == ["pay-3", "pay-4", "ship"]
