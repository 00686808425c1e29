"""Leases, fencing, recovery and draining, driven step by step in this process."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connections
from django.utils import timezone

import django_durable as durable
from django_durable import Worker
from django_durable.core.statuses import StepStatus
from django_durable.engine import execution
from django_durable.exceptions import LeaseLost
from django_durable.models import Message, Run, RunStatus, Step, WorkerProcess
from django_durable.store import checkpoints, leases
from django_durable.store import claims as store_claims
from django_durable.testing import run_all, time_machine
from django_durable.worker.heartbeat import Heartbeat
from tests.conftest import ON_POSTGRES, wait_for
from tests.testapp import reliability_workflows as rw
from tests.testapp import workflows as wf
from tests.testapp.models import Execution, SideEffect

pytestmark = pytest.mark.django_db(transaction=True)


def expire(handle) -> None:
    Run.objects.filter(pk=handle.id).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )


def test_a_claim_takes_a_lease_and_increments_the_fencing_token():
    handle = wf.add.start(1, 2)
    worker = Worker()
    [claim] = worker.claim(5)
    run = Run.objects.get(pk=handle.id)
    assert run.status == RunStatus.RUNNING
    assert run.claimed_by == worker.id
    assert run.lease_token == claim.token == 1
    assert run.lease_expires_at > timezone.now()
    assert worker.claim(5) == []  # nothing else is ready


def test_an_expired_lease_is_taken_over_and_the_old_worker_is_fenced_out():
    handle = wf.counted.start(3)
    old, new = Worker(), Worker()
    [stale] = old.claim(1)
    expire(handle)
    new.maintain()  # takes the run back: pending again, recoveries counted
    run = Run.objects.get(pk=handle.id)
    assert (run.status, run.recoveries, run.claimed_by) == (RunStatus.PENDING, 1, None)
    [fresh] = new.claim(1)
    assert fresh.token == stale.token + 1
    # The old worker wakes up and tries to record a step: refused.
    assert not checkpoints.record_step(
        stale, position=0, kind="step", name="step-0", status=StepStatus.COMPLETED, result="0"
    )
    # ... and to complete the run: refused.
    assert not store_claims.update_claimed_run(
        stale, {"status": RunStatus.COMPLETED, "result": "1"}
    )
    # Executing with the stale claim abandons at its first checkpoint and writes nothing.
    assert execution.execute(stale).kind == "abandoned"
    assert not Step.objects.filter(run_id=handle.id).exists()
    new.process(fresh)
    assert handle.result(timeout=1) == 3
    assert Step.objects.filter(run_id=handle.id).count() == 3


def test_an_atomic_step_of_a_worker_that_lost_its_lease_leaves_no_trace():
    handle = wf.atomic_counted.start(1)
    old, new = Worker(), Worker()
    [stale] = old.claim(1)
    expire(handle)
    new.maintain()
    assert execution.execute(stale).kind == "abandoned"
    # The step body ran, but its ORM write rolled back with the refused checkpoint.
    assert SideEffect.objects.count() == 0
    run_all()
    assert handle.result(timeout=1) == 1
    assert SideEffect.objects.filter(run_id=handle.id).count() == 1


def test_a_recv_of_a_worker_that_lost_its_lease_leaves_the_message_for_the_new_holder():
    handle = rw.sm_receives.start(1)  # recv("go"), then a step
    old, new = Worker(), Worker()
    [stale] = old.claim(1)
    expire(handle)
    new.maintain()
    [fresh] = new.claim(1)
    durable.send(handle.id, "hello", topic="go")
    # The old worker reaches the recv: its checkpoint is refused, and the message stays.
    assert execution.execute(stale).kind == "abandoned"
    message = Message.objects.get(run_id=handle.id)
    assert (message.consumed_at, message.consumed_position) == (None, None)
    assert not Step.objects.filter(run_id=handle.id).exists()
    new.process(fresh)
    assert handle.result(timeout=1) == ["hello"]
    message.refresh_from_db()
    assert message.consumed_at is not None and message.consumed_position == 0


def test_a_run_that_keeps_losing_its_worker_fails_with_a_reason(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_RECOVERIES": 2}
    handle = wf.add.start(1, 2)
    worker = Worker()
    for expected in (1, 2):
        worker.claim(1)
        worker._inflight.clear()  # the worker "died" holding it
        expire(handle)
        worker.maintain()
        assert Run.objects.get(pk=handle.id).recoveries == expected
    worker.claim(1)
    expire(handle)
    worker.maintain()
    run = Run.objects.get(pk=handle.id)
    assert run.status == RunStatus.FAILED
    assert run.error["type"] == "django_durable.WorkerLost"
    assert "more than 2 times in a row" in run.error["message"]
    assert run.finished_at is not None


def test_finishing_a_claim_normally_resets_the_recovery_count():
    handle = wf.sleeper.start(0.05)
    worker = Worker()
    worker.claim(1)
    worker._inflight.clear()
    expire(handle)
    worker.maintain()
    assert Run.objects.get(pk=handle.id).recoveries == 1
    worker.run_once()  # runs to the sleep: the claim ends normally
    assert Run.objects.get(pk=handle.id).recoveries == 0


def test_a_worker_never_reclaims_a_run_it_still_executes():
    handle = wf.add.start(1, 2)
    worker = Worker()
    [claim] = worker.claim(1)
    expire(handle)
    worker.maintain()  # the lease ran out while "executing"; it is pending again
    assert worker.claim(1) == []
    assert [c.run_id for c in Worker().claim(1)] == [claim.run_id]


def test_heartbeat_extends_held_leases_and_spots_lost_ones():
    first, second = wf.add.start(1, 1), wf.add.start(2, 2)
    worker = Worker()
    claims = worker.claim(2)
    Run.objects.filter(pk=second.id).update(claimed_by="someone-else")
    before = Run.objects.get(pk=first.id).lease_expires_at
    renewal = leases.extend_leases(worker.id, [c.run_id for c in claims], 120)
    assert {str(run_id) for run_id in renewal.held} == {first.id}
    assert renewal.busy == frozenset()
    assert Run.objects.get(pk=first.id).lease_expires_at > before + dt.timedelta(seconds=60)


def test_a_lost_lease_spotted_by_the_heartbeat_stops_the_run_at_its_next_step():
    handle = wf.counted.start(3)
    worker = Worker()
    [claim] = worker.claim(1)
    worker._inflight[claim.run_id].lost = True
    worker.process(claim)
    # Nothing ran: the first new operation saw the lost lease.
    assert not Execution.objects.filter(run_id=handle.id).exists()
    assert isinstance(
        worker._interrupt(worker._inflight.get(claim.run_id) or _lost(claim)), LeaseLost
    )


def _lost(claim):
    from django_durable.worker.inflight import InFlight

    return InFlight(claim, lost=True)


def test_a_draining_worker_hands_runs_back_at_a_step_boundary():
    handle = wf.counted.start(3)
    worker = Worker()
    [claim] = worker.claim(1)
    worker.request_stop()
    outcome = worker.process(claim)
    assert outcome is not None and outcome.kind == "released"
    run = Run.objects.get(pk=handle.id)
    assert (run.status, run.claimed_by, run.lease_expires_at) == (RunStatus.PENDING, None, None)
    run_all()
    assert handle.result(timeout=1) == 3
    assert Execution.objects.filter(run_id=handle.id).count() == 3


def test_run_in_burst_mode_processes_everything_and_records_the_worker():
    handles = [wf.counted.start(2) for _ in range(5)]
    worker = Worker(burst=True, concurrency=2)
    assert worker.run() is True
    assert [h.result(timeout=1) for h in handles] == [1] * 5
    record = WorkerProcess.objects.get(pk=worker.id)
    assert record.stopped_at is not None
    assert record.concurrency == 2 and record.queues == ["default"]


def test_a_worker_failure_outside_the_workflow_gives_the_run_up_for_recovery(monkeypatch):
    handle = wf.add.start(1, 2)
    worker = Worker()

    def broken(*args, **kwargs):
        raise RuntimeError("engine bug")

    monkeypatch.setattr(execution, "execute", broken)
    [claim] = worker.claim(1)
    assert worker.process(claim) is None
    run = Run.objects.get(pk=handle.id)
    # Given up like a lost worker: the lease is expired, and recovery counts it.
    assert run.status == RunStatus.RUNNING
    assert run.lease_expires_at <= timezone.now()
    worker.maintain()
    run.refresh_from_db()
    assert (run.status, run.claimed_by, run.recoveries) == (RunStatus.PENDING, None, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"poll_interval": 0}, "poll interval must be greater than 0"),
        ({"lease_seconds": -1}, "lease must be greater than 0"),
        ({"concurrency": 0}, "concurrency must be greater than 0"),
        ({"shutdown_timeout": -1}, "cannot be negative"),
    ],
)
def test_worker_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Worker(**kwargs)


def test_the_worker_command_refuses_bad_options():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="lease must be greater than 0"):
        call_command("run_workflow_worker", "--lease", "-1")


def test_a_worker_started_while_the_database_is_down_waits_for_it(monkeypatch, caplog):
    from django.db import OperationalError

    handle = wf.add.start(2, 3)
    register = Worker._register
    failures = iter([OperationalError("the database system is starting up")] * 2)

    def flaky(self):
        error = next(failures, None)
        if error is not None:
            raise error
        register(self)

    monkeypatch.setattr(Worker, "_register", flaky)
    worker = Worker(burst=True)
    assert worker.run() is True  # it waited, registered, and ran what was ready
    assert WorkerProcess.objects.filter(pk=worker.id).exists()
    assert handle.result(timeout=1) == 5
    assert caplog.text.count("database unavailable at start") == 2


def test_a_hand_back_the_database_refused_is_written_once_it_answers(monkeypatch):
    from django.db import OperationalError

    handle = wf.counted.start(2)
    worker = Worker()
    [claim] = worker.claim(1)
    update = store_claims.update_claimed_run
    monkeypatch.setattr(
        store_claims,
        "update_claimed_run",
        lambda *a, **k: (_ for _ in ()).throw(OperationalError("down")),
    )
    worker._give_up(claim)
    assert worker._unreleased == [claim]  # kept, not forgotten
    assert Run.objects.get(pk=handle.id).lease_expires_at > timezone.now()
    monkeypatch.setattr(store_claims, "update_claimed_run", update)
    worker._retry_give_ups()  # the database is back
    assert worker._unreleased == []
    assert Run.objects.get(pk=handle.id).lease_expires_at <= timezone.now()
    worker.maintain()  # takes it back at once: pending again, one recovery counted
    run = Run.objects.get(pk=handle.id)
    assert (run.status, run.recoveries) == (RunStatus.PENDING, 1)


# --- what a run's end costs ----------------------------------------------------------------


def test_a_run_that_never_started_a_child_ends_without_looking_for_children():
    handle = wf.add.start(1, 2)
    worker = Worker()
    [claim] = worker.claim(1)
    outcome = worker.process(claim)
    assert outcome is not None
    assert (outcome.kind, outcome.children) == ("completed", False)
    assert handle.result(timeout=1) == 3


def test_a_child_started_in_an_earlier_execution_is_closed_when_its_parent_ends():
    handle = wf.parent_naps_then_leaves.start()
    worker = Worker()
    [claim] = worker.claim(1)
    first = worker.process(claim)  # starts the child, then sleeps a minute
    assert first is not None and (first.kind, first.children) == ("suspended", True)
    [claim] = worker.claim(1)
    worker.process(claim)  # the child goes to sleep for an hour
    with time_machine() as machine:
        machine.skip(61)  # past the parent's nap, not the child's
        worker.maintain()
        [claim] = worker.claim(1)
        assert str(claim.run_id) == handle.id
        second = worker.process(claim)  # replays the start from its record, then ends
        assert second is not None and (second.kind, second.children) == ("completed", True)
        run_all()  # the child, woken to stop
    child = Run.objects.get(pk=handle.result(timeout=1))
    assert child.status == RunStatus.CANCELLED  # parent_close="cancel", the default
    assert child.cancel_reason == "its parent run finished"


@pytest.mark.parametrize(
    ("saturated", "limited", "claims_on_postgres"),
    [(False, False, False), (True, False, True), (False, True, True)],
)
def test_the_thread_that_ends_a_run_claims_the_next_itself_only_when_it_may_claim_more(
    settings, saturated, limited, claims_on_postgres
):
    """On PostgreSQL, notifications bring new work: a run's end claims again only when the
    loop stopped for want of a slot, or the queue's limits may now let another run in.
    SQLite has no notifications: every end claims. The thread claims for itself, so the
    loop is not woken for it."""
    if limited:
        settings.DJANGO_DURABLE = {"QUEUES": {"default": {"concurrency": 2}}}
    first, second = wf.add.start(1, 2), wf.add.start(3, 4)
    worker = Worker(concurrency=2)
    [claim] = worker.claim(1)
    assert str(claim.run_id) == first.id
    worker._saturated = saturated
    worker._wake.clear()
    worker.process(claim)
    following = worker.next_here(claim)
    claims = claims_on_postgres if worker._listener is not None else True
    assert (following is not None) == claims
    assert not worker._wake.is_set()
    if claims:
        assert following is not None and str(following.run_id) == second.id
        assert worker.in_flight == 1
        assert Run.objects.get(pk=second.id).claimed_by == worker.id
    else:
        assert Run.objects.get(pk=second.id).status == RunStatus.PENDING


def test_a_thread_claims_nothing_when_the_worker_holds_as_many_runs_as_its_concurrency():
    """The loop and the threads reserve slots before they claim: never more than
    ``concurrency`` runs at once, whoever claims."""
    first, _ = wf.add.start(1, 2), wf.add.start(3, 4)
    busy = wf.add.start(5, 6)
    worker = Worker(concurrency=2)
    [claim, other] = worker.claim(2)
    assert {str(claim.run_id), str(other.run_id)} == {first.id, _.id}
    worker._saturated = True
    worker.process(claim)  # one slot frees: one claim fills it
    following = worker.next_here(claim)
    assert following is not None and str(following.run_id) == busy.id
    wf.add.start(7, 8)
    # Both slots are taken (other, following): a thread ending nothing new claims nothing.
    assert worker.next_here(claim) is None
    assert worker.in_flight == 2
    assert Run.objects.filter(status=RunStatus.PENDING).count() == 1


def test_a_thread_claims_nothing_after_a_run_once_the_worker_stops_and_wakes_the_loop():
    """Draining (and burst mode) leave claiming to the loop, which counts runs in flight."""
    wf.add.start(1, 2)
    waiting = wf.add.start(3, 4)
    worker = Worker(concurrency=2)
    [claim] = worker.claim(1)
    worker._saturated = True
    worker.process(claim)
    worker.request_stop()
    worker._wake.clear()
    assert worker.next_here(claim) is None
    assert worker._wake.is_set()
    assert Run.objects.get(pk=waiting.id).status == RunStatus.PENDING


def test_a_thread_whose_own_claim_finds_nothing_stops_claiming_after_each_run():
    """A claim that found nothing ready says the worker is no longer saturated: on
    PostgreSQL the next run's end then claims nothing (a notification brings new work)."""
    worker = Worker(concurrency=2)
    wf.add.start(1, 2)
    [claim] = worker.claim(1)
    worker._saturated = True
    worker.process(claim)
    assert worker.next_here(claim) is None
    assert worker._saturated is False
    assert worker.in_flight == 0


def _executing(workflow):
    """Start a run of ``workflow`` and execute it in a thread until its gate step."""
    wf.GATE.clear()
    handle = workflow.start()
    worker = Worker()
    [claim] = worker.claim(1)

    def execute() -> None:
        try:
            worker.process(claim)
        finally:
            connections.close_all()

    thread = threading.Thread(target=execute, daemon=True)
    thread.start()
    wait_for(
        lambda: (
            Execution.objects.exists()
            or Step.objects.filter(run_id=handle.id).exists()
            or thread.is_alive()
        ),
        message="started",
    )
    return handle, worker, claim, thread


def _finish(handle, thread) -> None:
    wf.GATE.set()
    thread.join(10)
    assert not thread.is_alive()
    handle.refresh()
    assert handle.status == RunStatus.CANCELLED, handle.error
    assert handle.error["message"] == "stop it"
    # Cancelled at its next operation: the step after the gate never ran.
    kinds = list(
        Step.objects.filter(run_id=handle.id).order_by("position").values_list("name", flat=True)
    )
    assert "after" not in kinds


@pytest.mark.skipif(
    not ON_POSTGRES,
    reason="LISTEN/NOTIFY exists only on PostgreSQL; the heartbeat test covers SQLite",
)
@pytest.mark.parametrize("workflow", [wf.gated, wf.async_gated], ids=["def", "async def"])
def test_a_cancel_heard_through_notify_stops_an_executing_run_at_its_next_operation(workflow):
    handle, worker, claim, thread = _executing(workflow)
    durable.cancel(handle.id, "stop it")
    wait_for(lambda: worker._inflight[claim.run_id].cancel_heard, message="the NOTIFY")
    assert worker._inflight[claim.run_id].cancel_reason is None  # read when the run asks
    _finish(handle, thread)


@pytest.mark.parametrize("workflow", [wf.gated, wf.async_gated], ids=["def", "async def"])
def test_a_cancel_found_by_the_heartbeat_stops_an_executing_run_at_its_next_operation(workflow):
    handle, worker, claim, thread = _executing(workflow)
    if worker._listener is not None:  # hear nothing: the heartbeat must find it
        worker._listener.unsubscribe(
            [f"x:{claim.run_id}"], worker._inflight[claim.run_id].heard_cancel
        )
    durable.cancel(handle.id, "stop it")
    heartbeat = Heartbeat(
        worker.id, worker._inflight, worker._lock, interval=60, lease_seconds=30, alias="default"
    )
    heartbeat.beat()
    assert worker._inflight[claim.run_id].cancel_reason == "stop it"
    _finish(handle, thread)


def test_a_claim_works_with_the_query_log_on():
    """DEBUG=True (a development server's worker) logs every query with its parameters:
    the claim must bind each one it passes (PostgreSQL's prepared claim skips the log)."""
    from django.test.utils import CaptureQueriesContext

    handle = wf.add.start(1, 2)
    with CaptureQueriesContext(connections["default"]) as queries:
        [claim] = Worker().claim(1)
    assert str(claim.run_id) == handle.id
    assert queries.captured_queries or ON_POSTGRES


def test_a_claim_that_found_no_room_for_a_claim_under_way_wakes_the_loop_after_it():
    """A NOTIFY can wake the loop while a thread's claim holds the only slot; the thread's
    claim may have looked before the new run was ready. The loop must look again once the
    slot is free, not sleep its poll interval (300 s in the restart test) with a run ready."""
    worker = Worker(concurrency=1)
    entered, release = threading.Event(), threading.Event()
    claim = worker.claim

    def slow_claim(limit: int):
        entered.set()
        release.wait(10)
        return claim(limit)

    worker.claim = slow_claim  # type: ignore[method-assign]
    result = []

    def in_a_thread() -> None:
        try:
            result.append(worker._claim_free(1))
        finally:
            connections.close_all()

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    assert entered.wait(10)
    worker._wake.clear()
    worker.claim = claim  # type: ignore[method-assign]
    assert worker._claim_free(1) == (0, [])  # the loop, woken meanwhile: no room
    assert not worker._wake.is_set()
    release.set()
    thread.join(10)
    assert result == [(1, [])]  # the thread's claim found nothing
    assert worker._wake.is_set()  # so the loop looks again
