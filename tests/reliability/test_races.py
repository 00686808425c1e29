"""Race windows forced open, one interleaving at a time, and what each must end in.

Each test parks one session at an exact point of the library's code, performs the racing
action from another session, lets the first go, and checks the outcome in the database:

- a message or an event that arrives while a run is between "nothing there" and "I wait"
  (``store.channels.suspend_waiting``): in the gap, holding the lock the suspension needs,
  and waiting for the suspension's lock. It must wake the run, never be missed;
- a cancellation racing a run (or its child) that finishes: the run ends completed, the
  cancellation moot, or cancelled; never both, never stuck; children end consistently;
- a worker whose lease was taken over writes late: its checkpoint and its outcome are
  refused, and the new owner's result stands.

The run executes in this process (``Worker.process`` in a thread), so a ``Pause`` can
stop it at a library call. Where the window is a lock, the other session holds it, and
``LockWatch`` sees in ``pg_stat_activity`` that the worker is blocked on it, by that
session, before the test moves on. Those tests need PostgreSQL; on SQLite one writing
transaction at a time serialises the sessions, and the gap tests (both backends) check
the re-check that closes the window.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db.models.functions import Now
from django.utils import timezone

import django_durable as durable
from django_durable import Worker
from django_durable.models import Event, Run, RunStatus, Step, StepStatus
from django_durable.store import channels, leases, trees
from django_durable.testing import run_all
from tests.conftest import ON_POSTGRES, wait_for
from tests.reliability._races import Holder, LockWatch, Pause, Racer, report
from tests.testapp import race_workflows as rw

pytestmark = pytest.mark.django_db(transaction=True)

postgres_only = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="forces a row or advisory lock wait and watches it in pg_stat_activity; SQLite "
    "runs one writing transaction at a time, and the gap tests cover its re-check",
)

WORKER = "race-worker"  # the thread that executes the run under test
# The statements a blocked session is parked on, as pg_stat_activity shows them (LIKE).
SUSPEND_UPDATE = "UPDATE durable_run SET %"  # suspend_waiting marks the run waiting
FINISH_UPDATE = "WITH changed AS (UPDATE durable_run SET %"  # a run's end, with NOTIFY
LOCK_RUN_ROW = "SELECT id FROM durable_run WHERE id = % FOR NO KEY UPDATE"  # cancel
# send: one statement that locks the run row, inserts, and wakes the run from the lock's view
SEND_MESSAGE = "WITH locked AS (SELECT id, status, wake_on FROM durable_run WHERE id = %"
EVENT_LOCK = "SELECT pg_advisory_xact_lock(%"  # the event name's lock
CHECKPOINT = "INSERT INTO durable_step %"  # a fenced checkpoint (FOR SHARE of the run)


@pytest.fixture
def watch() -> Iterator[LockWatch]:
    lock_watch = LockWatch()
    yield lock_watch
    lock_watch.close()


@pytest.fixture
def gates() -> Iterator[dict[str, rw.Gate]]:
    yield rw.GATES
    rw.GATES.clear()


def execute(worker: Worker, handle: durable.RunHandle, name: str = WORKER) -> Racer:
    """Claim the run of ``handle`` here and execute it in a thread named ``name``."""
    [claim] = worker.claim(1)
    assert str(claim.run_id) == handle.id
    return Racer(name, lambda: worker.process(claim))


def run_row(handle: durable.RunHandle) -> Run:
    return Run.objects.get(pk=handle.id)


def outcome_kind(racer: Racer) -> str:
    outcome = racer.join()
    assert outcome is not None, "the worker raised instead of storing an outcome"
    return str(outcome.kind)


# --- a message vs the recv that is about to wait ---------------------------------------------


def test_a_message_sent_in_the_gap_before_the_suspend_wakes_the_run(monkeypatch, worker):
    handle = rw.recv_one.start("go")
    pause = Pause(monkeypatch, channels, "suspend_waiting", thread=WORKER)
    racer = execute(worker, handle)
    pause.wait(racer)
    # The recv found no message and recorded its wait; the run does not wait yet.
    assert Step.objects.get(run_id=handle.id).status == "waiting"
    assert run_row(handle).status == RunStatus.RUNNING
    durable.send(handle.id, "in the gap", topic="go")  # commits; there is no waiter to wake
    pause.release()
    assert outcome_kind(racer) == "suspended"
    # The suspension looked again after marking the run waiting, found it, and undid it.
    run = run_row(handle)
    assert (run.status, run.wake_on) == (RunStatus.PENDING, None)
    run_all()
    assert handle.result(timeout=1) == "in the gap"
    report("race send-in-gap", outcome="woken-by-its-own-recheck", lost=0)


@postgres_only
def test_a_send_holding_the_run_row_delays_the_suspend_which_then_sees_it(
    monkeypatch, worker, watch
):
    handle = rw.recv_one.start("go")
    pause = Pause(monkeypatch, channels, "suspend_waiting", thread=WORKER)
    racer = execute(worker, handle)
    pause.wait(racer)
    sender = Holder("sender", lambda: durable.send(handle.id, "held", topic="go"))
    sender_pid = sender.wait_held()  # the message is in, uncommitted, the run row locked
    pause.release()
    watch.blocked(SUSPEND_UPDATE, by=sender_pid, racer=racer)
    sender.commit()
    assert outcome_kind(racer) == "suspended"
    assert run_row(handle).status == RunStatus.PENDING  # its re-check saw the message
    run_all()
    assert handle.result(timeout=1) == "held"
    report("race send-holds-row", outcome="suspend-waited-then-saw-it", lost=0)


@postgres_only
def test_a_send_blocked_by_the_suspend_wakes_the_run_once_it_waits(monkeypatch, worker, watch):
    handle = rw.recv_one.start("go")
    # Inside the suspension's transaction: run marked waiting, nothing found, row locked.
    pause = Pause(monkeypatch, channels, "_has_message", thread=WORKER, after=True)
    racer = execute(worker, handle)
    pause.wait(racer)
    assert pause.value is False
    sender = Racer("sender", lambda: durable.send(handle.id, "blocked", topic="go"))
    watch.blocked(SEND_MESSAGE, by=pause.pid, racer=sender)
    pause.release()
    assert outcome_kind(racer) == "suspended"  # committed as waiting ...
    sender.join()
    run = run_row(handle)  # ... and the send, let through after, woke it
    assert (run.status, run.wake_on) == (RunStatus.PENDING, None)
    run_all()
    assert handle.result(timeout=1) == "blocked"
    report("race send-blocked-by-suspend", outcome="woken-by-the-sender", lost=0)


# --- an event vs the wait that is about to suspend -------------------------------------------


def test_an_event_emitted_in_the_gap_before_the_suspend_wakes_the_run(monkeypatch, worker):
    handle = rw.wait_one.start("race:gap")
    pause = Pause(monkeypatch, channels, "suspend_waiting", thread=WORKER)
    racer = execute(worker, handle)
    pause.wait(racer)
    durable.emit_event("race:gap", "in the gap")
    pause.release()
    assert outcome_kind(racer) == "suspended"
    assert run_row(handle).status == RunStatus.PENDING
    run_all()
    assert handle.result(timeout=1) == "in the gap"
    report("race emit-in-gap", outcome="woken-by-its-own-recheck", lost=0)


@postgres_only
def test_an_emitter_holding_the_name_lock_delays_the_suspend_which_then_sees_it(worker, watch):
    handle = rw.wait_one.start("race:held")
    emitter = Holder("emitter", lambda: durable.emit_event("race:held", "held"))
    emitter_pid = emitter.wait_held()  # the event is in, uncommitted, its name locked
    # No hook: the worker looks (sees nothing committed), records its wait, and blocks on
    # the name's lock in suspend_waiting.
    racer = execute(worker, handle)
    watch.blocked(EVENT_LOCK, by=emitter_pid, racer=racer)
    emitter.commit()
    assert outcome_kind(racer) == "suspended"
    assert run_row(handle).status == RunStatus.PENDING
    run_all()
    assert handle.result(timeout=1) == "held"
    report("race emit-holds-lock", outcome="suspend-waited-then-saw-it", lost=0)


@postgres_only
def test_an_emitter_blocked_by_the_suspend_wakes_the_run_once_it_waits(monkeypatch, worker, watch):
    handle = rw.wait_one.start("race:blocked")
    # The first latest_event() is the wait's look; the second, the re-check under the lock.
    pause = Pause(monkeypatch, channels, "latest_event", thread=WORKER, after=True, skip=1)
    racer = execute(worker, handle)
    pause.wait(racer)
    assert pause.value is None
    emitter = Racer("emitter", lambda: durable.emit_event("race:blocked", "blocked"))
    watch.blocked(EVENT_LOCK, by=pause.pid, racer=emitter)
    pause.release()
    assert outcome_kind(racer) == "suspended"
    emitter.join()
    assert run_row(handle).status == RunStatus.PENDING
    run_all()
    assert handle.result(timeout=1) == "blocked"
    report("race emit-blocked-by-suspend", outcome="woken-by-the-emitter", lost=0)


@postgres_only
def test_emits_of_one_name_wait_for_each_other_so_ids_follow_commit_order(worker, watch):
    """A run that took event 41 next waits for "newer than 41": a 40 committed after 41
    would never reach it. So emitters of one name hold its lock alone (not shared): the
    second emit waits for the first to commit, and takes the larger id."""
    first = Holder("first emitter", lambda: durable.emit_event("race:two", "first"))
    first_pid = first.wait_held()  # its event is in, uncommitted, its name locked
    second = Racer("second emitter", lambda: durable.emit_event("race:two", "second"))
    watch.blocked(EVENT_LOCK, by=first_pid, racer=second)
    first.commit()
    second.join()
    ids = dict(Event.objects.filter(name="race:two").values_list("data", "id"))
    assert ids["first"] < ids["second"], ids


# --- cancel vs complete ----------------------------------------------------------------------


def parent_at_its_end(
    monkeypatch: pytest.MonkeyPatch, worker: Worker, where: str
) -> tuple[durable.RunHandle, Racer, Pause, durable.RunHandle]:
    """Run ``parent_leaves_child`` to its end, stopped before ``_finish`` or inside it.

    Its child waits for a message (executed by another worker) meanwhile.
    """
    handle = rw.parent_leaves_child.start()
    if where == "before-finish":
        pause = Pause(monkeypatch, worker._outcomes, "_finish", thread=WORKER)
    else:  # inside the finishing transaction: the run is completed, uncommitted, locked
        pause = Pause(monkeypatch, trees, "close_children", thread=WORKER)
    racer = execute(worker, handle)
    pause.wait(racer)
    Worker().run_once()  # the child, started by the parent, waits for "go"
    [child] = handle.children()
    assert child.refresh().status == RunStatus.WAITING
    return handle, racer, pause, child


def settle(handle: durable.RunHandle) -> None:
    run_all()
    assert not Run.objects.active().exists()


def assert_completed_once(handle: durable.RunHandle, *, cancel_asked: bool) -> None:
    run = run_row(handle)
    assert (run.status, run.error) == (RunStatus.COMPLETED, None)
    assert handle.result(timeout=1) == "done"
    assert not Step.objects.filter(run_id=handle.id, kind="cancel").exists()
    assert (run.cancel_requested_at is not None) is cancel_asked


def assert_cancelled(handle: durable.RunHandle, reason: str) -> None:
    run = run_row(handle)
    assert (run.status, run.result) == (RunStatus.CANCELLED, None)
    assert run.error["type"] == "django_durable.exceptions.Cancelled"
    assert run.error["message"] == reason


def test_a_cancel_between_the_last_operation_and_the_finish_is_moot(monkeypatch, worker):
    handle, racer, pause, child = parent_at_its_end(monkeypatch, worker, "before-finish")
    assert durable.cancel(handle.id, reason="too late") is True  # asked: still running
    pause.release()
    assert outcome_kind(racer) == "completed"  # no durable operation left to raise it at
    settle(handle)
    assert_completed_once(handle, cancel_asked=True)
    assert_cancelled(child, "too late")
    report("race cancel-before-finish", parent="completed", child="cancelled", stuck=0)


@postgres_only
def test_a_cancel_holding_the_run_row_when_it_finishes_is_moot(monkeypatch, worker, watch):
    handle, racer, pause, child = parent_at_its_end(monkeypatch, worker, "before-finish")
    canceller = Holder("canceller", lambda: durable.cancel(handle.id, reason="holding"))
    canceller_pid = canceller.wait_held()
    pause.release()
    watch.blocked(FINISH_UPDATE, by=canceller_pid, racer=racer)
    assert canceller.commit() is True
    assert outcome_kind(racer) == "completed"
    settle(handle)
    assert_completed_once(handle, cancel_asked=True)
    assert_cancelled(child, "holding")
    report("race cancel-holds-row", parent="completed", child="cancelled", stuck=0)


@postgres_only
def test_a_cancel_blocked_by_the_finish_finds_the_run_finished(monkeypatch, worker, watch):
    handle, racer, pause, child = parent_at_its_end(monkeypatch, worker, "in-finish")
    canceller = Racer("canceller", lambda: durable.cancel(handle.id, reason="blocked"))
    watch.blocked(LOCK_RUN_ROW, by=pause.pid, racer=canceller)
    pause.release()
    assert outcome_kind(racer) == "completed"
    assert canceller.join() is False  # nothing to cancel any more
    settle(handle)
    assert_completed_once(handle, cancel_asked=False)
    assert_cancelled(child, "its parent run finished")
    report("race finish-holds-row", parent="completed", child="cancelled", stuck=0)


def child_at_its_end(
    monkeypatch: pytest.MonkeyPatch, worker: Worker, where: str
) -> tuple[durable.RunHandle, durable.RunHandle, Racer, Pause]:
    """Make ``parent_waits_child`` wait for its child; stop the child at its finish."""
    parent = rw.parent_waits_child.start()
    worker.run_once()
    assert parent.refresh().status == RunStatus.WAITING
    [child] = parent.children()
    if where == "before-finish":
        pause = Pause(monkeypatch, worker._outcomes, "_finish", thread=WORKER)
    else:  # it locked its parent, completed and woke it, uncommitted
        pause = Pause(monkeypatch, trees, "close_children", thread=WORKER)
    racer = execute(worker, child)
    pause.wait(racer)
    return parent, child, racer, pause


@postgres_only
def test_a_child_finishing_under_a_parent_being_cancelled_completes(monkeypatch, worker, watch):
    parent, child, racer, pause = child_at_its_end(monkeypatch, worker, "before-finish")
    canceller = Holder("canceller", lambda: durable.cancel(parent.id, reason="parent"))
    canceller_pid = canceller.wait_held()  # holds the parent row, then the child's
    pause.release()
    watch.blocked(LOCK_RUN_ROW, by=canceller_pid, racer=racer)  # parent before child
    assert canceller.commit() is True
    assert outcome_kind(racer) == "completed"
    settle(parent)
    assert child.result(timeout=1) == "child done"
    assert_cancelled(parent, "parent")
    report("race cancel-vs-child-finish", parent="cancelled", child="completed", stuck=0)


@postgres_only
def test_a_parent_cancelled_while_its_child_finishes_is_cancelled(monkeypatch, worker, watch):
    parent, child, racer, pause = child_at_its_end(monkeypatch, worker, "in-finish")
    canceller = Racer("canceller", lambda: durable.cancel(parent.id, reason="parent"))
    watch.blocked(LOCK_RUN_ROW, by=pause.pid, racer=canceller)
    pause.release()
    assert outcome_kind(racer) == "completed"
    assert canceller.join() is True  # the parent was woken, not finished: it is cancelled
    settle(parent)
    assert child.result(timeout=1) == "child done"
    assert_cancelled(parent, "parent")
    report("race child-finish-vs-cancel", parent="cancelled", child="completed", stuck=0)


# --- lease takeover vs a late write ----------------------------------------------------------


def expire_lease(handle: durable.RunHandle) -> None:
    """End the run's lease now, as if its worker had stalled past it.

    Forced rather than waited for: a short real lease would also run out while the stale
    worker is still on its way to the point under test, on a busy machine.
    """
    now = Now() if ON_POSTGRES else timezone.now()
    Run.objects.filter(pk=handle.id).update(lease_expires_at=now - timedelta(seconds=1))


def stale_claim(handle: durable.RunHandle) -> tuple[Worker, Racer]:
    """Claim the run with no heartbeat, in thread ``stale``."""
    stale = Worker()
    return stale, execute(stale, handle, "stale")


def take_over() -> None:
    """Let a new worker, in thread ``owner``, take the run back and finish it."""
    Racer("owner", lambda: run_all()).join()


def test_a_stale_checkpoint_after_a_takeover_is_refused(gates):
    handle = rw.gated.start()
    gate = gates[handle.id] = rw.Gate()
    _, racer = stale_claim(handle)
    wait_for(gate.entered.is_set, message="the stale worker in its step")
    expire_lease(handle)
    take_over()  # the step ran again in the owner, which recorded it and finished
    assert handle.result(timeout=1) == {"step": "owner", "finished_by": "owner"}
    gate.opened.set()  # the stale worker's step ends; it tries to record it
    assert outcome_kind(racer) == "abandoned"
    run = run_row(handle)
    assert (run.status, run.lease_token) == (RunStatus.COMPLETED, 2)
    assert Step.objects.get(run_id=handle.id, name="gated").get_result() == "owner"
    report("race stale-checkpoint", stale_write="refused", result_by="owner")


def test_a_stale_completion_after_a_takeover_is_discarded(monkeypatch):
    handle = rw.gated.start()
    stale = Worker()
    # In place before the thread starts: its execution is short, and may end before the
    # next line of this thread runs.
    pause = Pause(monkeypatch, stale._outcomes, "_finish", thread="stale")
    racer = execute(stale, handle, "stale")  # claimed with no heartbeat, as stale_claim
    pause.wait(racer)  # its execution completed; the outcome is not stored yet
    expire_lease(handle)
    take_over()
    # The owner replayed the stale worker's step (recorded in time) and finished the run.
    assert handle.result(timeout=1) == {"step": "stale", "finished_by": "owner"}
    pause.release()
    assert outcome_kind(racer) == "completed"  # what the engine said; the write matched nothing
    assert handle.result(timeout=1) == {"step": "stale", "finished_by": "owner"}
    assert run_row(handle).lease_token == 2
    report("race stale-completion", stale_write="discarded", result_by="owner")


@postgres_only
def test_a_takeover_committing_while_a_checkpoint_waits_refuses_it(gates, watch):
    handle = rw.gated.start()
    gate = gates[handle.id] = rw.Gate()
    _, racer = stale_claim(handle)
    wait_for(gate.entered.is_set, message="the stale worker in its step")
    expire_lease(handle)
    error = json.dumps({"type": "lost", "message": "lost", "traceback": ""})
    rescuer = Holder("rescuer", lambda: leases.recover_expired_runs(max_recoveries=5, error=error))
    rescuer_pid = rescuer.wait_held()  # the run is pending again, uncommitted, row locked
    gate.opened.set()
    watch.blocked(CHECKPOINT, by=rescuer_pid, racer=racer)  # FOR SHARE on the run row
    assert [(r.run_id, r.status) for r in rescuer.commit()] == [
        (uuid.UUID(handle.id), RunStatus.PENDING)
    ]
    # After the wait the checkpoint re-read the row: no longer running, nothing written.
    assert outcome_kind(racer) == "abandoned"
    # Only the record that its body began (written before the takeover): no outcome.
    records = Step.objects.filter(run_id=handle.id)
    assert [(r.status, r.executions) for r in records] == [(StepStatus.RUNNING, 1)]
    take_over()
    assert handle.result(timeout=1) == {"step": "owner", "finished_by": "owner"}
    report("race takeover-vs-checkpoint", stale_write="refused-after-wait", result_by="owner")
