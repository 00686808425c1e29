"""Race windows of ``first_of`` and callbacks, forced open one interleaving at a time.

As in ``test_races``: a run about to wait for the first of several things (or for a
callback) is parked inside its suspension while a message, an event or a completion
arrives from another session. Whatever the order, the run must be woken, never left
waiting for something that is already there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import django_durable as durable
from django_durable import Worker
from django_durable.models import Run, RunStatus
from django_durable.store import callbacks, channels
from django_durable.testing import run_all
from tests.conftest import ON_POSTGRES
from tests.reliability._races import LockWatch, Pause, Racer, report
from tests.testapp import waits_workflows as ww

pytestmark = pytest.mark.django_db(transaction=True)

postgres_only = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="forces a row or advisory lock wait and watches it in pg_stat_activity; SQLite "
    "runs one writing transaction at a time, and the gap tests cover its re-check",
)

WORKER = "race-worker"
SEND_MESSAGE = "WITH locked AS (SELECT id, status, wake_on FROM durable_run WHERE id = %"
EVENT_LOCK = "SELECT pg_advisory_xact_lock(%"
LOCK_RUN_ROW = "SELECT id FROM durable_run WHERE id = % FOR NO KEY UPDATE"


@pytest.fixture
def watch() -> Iterator[LockWatch]:
    lock_watch = LockWatch()
    yield lock_watch
    lock_watch.close()


def execute(worker: Worker, handle: durable.RunHandle) -> Racer:
    [claim] = worker.claim(1)
    assert str(claim.run_id) == handle.id
    return Racer(WORKER, lambda: worker.process(claim))


def suspended(racer: Racer) -> None:
    outcome = racer.join()
    assert outcome is not None and outcome.kind == "suspended"


def woken(handle: durable.RunHandle) -> None:
    run = Run.objects.get(pk=handle.id)
    assert (run.status, run.wake_on) == (RunStatus.PENDING, None)


@pytest.mark.parametrize("what", ["message", "event"])
def test_what_arrives_in_the_gap_before_a_first_of_suspends_wakes_it(monkeypatch, worker, what):
    handle = ww.first_of.start("race:first", "review", 3600)
    pause = Pause(monkeypatch, channels, "suspend_waiting", thread=WORKER)
    racer = execute(worker, handle)
    pause.wait(racer)
    if what == "message":
        durable.send(handle.id, "in the gap", topic="review")
    else:
        durable.emit_event("race:first", "in the gap")
    pause.release()
    suspended(racer)
    woken(handle)  # the suspension looked again at each thing, and found it
    run_all()
    assert handle.result(timeout=1)["kind"] == what
    report(f"race first_of-{what}-in-gap", outcome="woken-by-its-own-recheck", lost=0)


@postgres_only
def test_a_send_blocked_by_a_first_of_suspend_wakes_the_run_once_it_waits(
    monkeypatch, worker, watch
):
    handle = ww.first_of.start("race:send", "review", 3600)
    # Inside the suspension: run marked waiting on f:any, keys written, nothing found.
    pause = Pause(monkeypatch, channels, "_has_message", thread=WORKER, after=True)
    racer = execute(worker, handle)
    pause.wait(racer)
    assert pause.value is False
    sender = Racer("sender", lambda: durable.send(handle.id, "blocked", topic="review"))
    watch.blocked(SEND_MESSAGE, by=pause.pid, racer=sender)
    pause.release()
    suspended(racer)
    sender.join()
    # The send's locking statement saw f:any; its own key test, a statement later, saw
    # the keys the suspension committed while it waited for the lock.
    woken(handle)
    run_all()
    assert handle.result(timeout=1)["value"] == "blocked"
    report("race first_of-send-blocked", outcome="woken-by-the-sender", lost=0)


@postgres_only
def test_an_emitter_blocked_by_a_first_of_suspend_wakes_the_run_by_its_key(
    monkeypatch, worker, watch
):
    handle = ww.first_of.start("race:emit", "review", 3600)
    # The first latest_event() is first_of's look; the second, the re-check under the lock.
    pause = Pause(monkeypatch, channels, "latest_event", thread=WORKER, after=True, skip=1)
    racer = execute(worker, handle)
    pause.wait(racer)
    assert pause.value is None
    emitter = Racer("emitter", lambda: durable.emit_event("race:emit", "blocked"))
    watch.blocked(EVENT_LOCK, by=pause.pid, racer=emitter)
    pause.release()
    suspended(racer)
    emitter.join()
    woken(handle)
    run_all()
    assert handle.result(timeout=1)["kind"] == "event"
    report("race first_of-emit-blocked", outcome="woken-by-the-emitter", lost=0)


def test_a_completion_in_the_gap_before_a_callback_wait_suspends_wakes_it(monkeypatch, worker):
    handle = ww.callback.start()
    pause = Pause(monkeypatch, channels, "suspend_waiting", thread=WORKER)
    racer = execute(worker, handle)
    pause.wait(racer)
    callback_id = durable.get_value(handle.id, "callback")["id"]
    durable.complete_callback(callback_id, "in the gap")
    pause.release()
    suspended(racer)
    woken(handle)
    run_all()
    assert handle.result(timeout=1)["value"] == "in the gap"
    report("race callback-in-gap", outcome="woken-by-its-own-recheck", lost=0)


@postgres_only
def test_a_completion_blocked_by_the_suspend_wakes_the_run_once_it_waits(
    monkeypatch, worker, watch
):
    handle = ww.callback.start()
    pause = Pause(monkeypatch, callbacks, "settled", thread=WORKER, after=True)
    racer = execute(worker, handle)
    pause.wait(racer)
    assert pause.value is False
    callback_id = durable.get_value(handle.id, "callback")["id"]
    settler = Racer("settler", lambda: durable.complete_callback(callback_id, "blocked"))
    watch.blocked(LOCK_RUN_ROW, by=pause.pid, racer=settler)
    pause.release()
    suspended(racer)
    settler.join()
    woken(handle)
    run_all()
    assert handle.result(timeout=1)["value"] == "blocked"
    report("race callback-blocked", outcome="woken-by-the-settler", lost=0)
