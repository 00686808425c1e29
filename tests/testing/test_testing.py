"""django_durable.testing: the helpers users execute runs with in their own tests."""

from __future__ import annotations

import pytest

import django_durable as durable
from django_durable.models import Run, RunStatus
from django_durable.testing import run_all, run_ready, run_until_finished
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_run_until_finished_executes_children_timers_and_other_queues():
    fanout = wf.parent_fanout.start(3)
    napper = wf.sleeper.start(0.2)
    elsewhere = wf.add.using(queue="reports").start(2, 3)  # a queue no worker was told of
    handles = run_until_finished(fanout, str(napper.id), elsewhere.id, timeout=30)
    assert [handle.id for handle in handles] == [fanout.id, napper.id, elsewhere.id]
    assert [handle.status for handle in handles] == [RunStatus.COMPLETED] * 3
    assert fanout.result() == [0, 2, 4]  # the handles passed in are read again too
    assert handles[1].result() == "woke"
    assert elsewhere.result() == 5
    assert Run.objects.filter(parent_id=fanout.id, status=RunStatus.COMPLETED).count() == 3


def test_a_failed_run_is_finished_too():
    handle = wf.child_fails.start()
    run_until_finished(handle)
    with pytest.raises(durable.WorkflowFailed, match="child broke"):
        handle.result()


def test_a_run_waiting_for_a_message_times_out_saying_what_it_waits_for():
    handle = wf.receives.start(1, "go")
    with pytest.raises(TimeoutError, match=r"waiting for message on 'go'") as stuck:
        run_until_finished(handle, timeout=0.3)
    assert f"- {handle.id} (tests.receives): waiting" in str(stuck.value)
    durable.send(handle.id, "now", topic="go")
    run_until_finished(handle)
    assert handle.result() == ["now"]


def test_run_ready_executes_what_is_ready_and_does_not_wait_for_time():
    ready = [wf.add.start(1, index) for index in range(3)]
    napper = wf.sleeper.start(3600)
    assert run_ready() == 4  # three runs, and the sleeper up to its sleep
    assert [handle.refresh().status for handle in ready] == [RunStatus.COMPLETED] * 3
    assert napper.refresh().status == RunStatus.WAITING
    assert run_ready() == 0


def test_run_all_takes_every_run_to_its_end_and_counts_the_executions():
    fanout = wf.parent_fanout.start(2)  # starts two children on the way
    napper = wf.sleeper.start(0.2)
    elsewhere = wf.add.using(queue="reports").start(2, 3)
    executed = run_all(timeout=30)
    assert not Run.objects.active().exists()
    assert Run.objects.count() == 5
    assert executed >= 5  # the parent and the sleeper ran more than once
    assert (fanout.result(), napper.result(), elsewhere.result()) == ([0, 2], "woke", 5)
    assert run_all() == 0  # nothing left


def test_run_all_times_out_naming_the_runs_still_waiting():
    done = wf.add.start(1, 1)
    stuck = wf.receives.start(1, "go")
    with pytest.raises(TimeoutError, match=r"waiting for message on 'go'") as error:
        run_all(timeout=0.3)
    assert f"- {stuck.id} (tests.receives): waiting" in str(error.value)
    assert str(done.id) not in str(error.value)
    assert done.result() == 2


def test_bad_calls_are_clear_errors():
    with pytest.raises(TypeError, match="needs at least one run"):
        run_until_finished()
    with pytest.raises(durable.RunNotFound):
        run_until_finished("00000000-0000-0000-0000-000000000000")


@pytest.mark.django_db(transaction=False)
def test_inside_a_test_transaction_they_say_how_to_let_commits_happen():
    handle = wf.add.start(1, 2)
    for helper in (lambda: run_until_finished(handle), run_ready, run_all):
        with pytest.raises(durable.DurableError, match=r"django_db\(transaction=True\)"):
            helper()
