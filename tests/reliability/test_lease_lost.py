"""A real worker that lost its run's lease between two operations stops without a write.

The run (``reliability.held_then_sleeps``) does a step, then waits in workflow code at a
gate the test holds (a ``SideEffect`` row named by the worker's ``DURABLE_TEST_GATE``),
then sleeps. While the first worker waits there, another worker takes the run over and
is held at its own gate. Then the first one is let through: its next operation is the
sleep, a suspend it no longer has the right to make.

- Its heartbeat found the lease lost first (the worker was frozen with SIGSTOP past its
  lease, then let go): the sleep never begins, the run stops with the heartbeat's words.
- Its heartbeat has not beaten since the lease ran out (a worker whose main thread wakes
  before its heartbeat thread): the sleep's checkpoint is refused by the fence, and
  neither it nor the suspend is stored.

Either way the database shows nothing of the first worker after the takeover, and the
second worker finishes the run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone

from django_durable.models import Run, RunStatus, Step, WorkerProcess
from tests.reliability.conftest import WorkerPool, wait_for
from tests.testapp import reliability_workflows as rw
from tests.testapp.models import Execution, SideEffect

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TAKER_ARGS = ("--lease", "1", "--poll-interval", "0.1")


def close_gates(*names: str) -> None:
    for name in names:
        SideEffect.objects.create(run_id="gate", label=name)


def open_gate(name: str) -> None:
    SideEffect.objects.filter(label=name).delete()


def at_gate(run_id: str, gate: str, pid: int) -> bool:
    return Execution.objects.filter(run_id=run_id, label=f"gate-{gate}", pid=pid).exists()


def taken_over(run_id: str) -> bool:
    return Run.objects.get(pk=run_id).lease_token >= 2


def freeze_until_taken_over(pool: WorkerPool, proc, run_id: str) -> None:
    """SIGSTOP ``proc`` until another worker claimed the run."""
    pool.pause(proc)
    wait_for(lambda: taken_over(run_id), 30, "takeover")


def wait_for_beats(worker_id: str, count: int) -> None:
    """Wait until the worker's heartbeat has marked it seen ``count`` times from now.

    A beat renews the leases, then marks the worker seen, then notes the runs it lost:
    once a later beat has marked it seen, the earlier beat's note is made.
    """
    seen: set[dt.datetime] = set()

    def beaten() -> bool:
        seen.add(WorkerProcess.objects.get(pk=worker_id).last_seen_at)
        return len(seen) > count

    wait_for(beaten, 30, f"{count} heartbeats of {worker_id}")


def assert_nothing_after_the_takeover(run_id: str, first_pid: int, taker_id: str) -> None:
    """The first worker left the run as the taker holds it: one step, no sleep, no wait."""
    run = Run.objects.get(pk=run_id)
    assert (run.status, run.claimed_by, run.lease_token) == (RunStatus.RUNNING, taker_id, 2)
    assert (run.wake_at, run.waiting_for) == (None, "")
    assert list(Step.objects.filter(run_id=run_id).values_list("position", "name", "result")) == [
        (0, "first", first_pid)
    ]
    assert set(Execution.objects.filter(pid=first_pid).values_list("label", flat=True)) == {
        "first",
        "gate-w1",
    }


def finish(run_id: str, handle, first_pool: WorkerPool, taker_pid: int) -> None:
    """Stop the first worker (it could claim the run after the sleep); the taker ends it."""
    first_pid = first_pool.started[0].pid
    assert first_pool.stop() == [0]
    open_gate("w2")
    assert handle.result(timeout=60) == [first_pid, taker_pid]
    names = list(Step.objects.filter(run_id=run_id).values_list("name", flat=True))
    assert names == ["first", "sleep", "second"]
    assert not Execution.objects.filter(pid=first_pid, label="second").exists()


def test_a_lease_lost_found_by_the_heartbeat_stops_the_run_before_its_sleep(
    worker_pool, tmp_path: Path
):
    close_gates("w1", "w2")
    handle = rw.held_then_sleeps.start()
    first_pool = worker_pool(1, *TAKER_ARGS, env={"DURABLE_TEST_GATE": "w1"}).start()
    first = first_pool.slots[0]
    first_id = first_pool.worker_id(first)
    first_pool.wait(lambda: at_gate(handle.id, "w1", first.pid), 60, "first worker at its gate")
    taker_pool = worker_pool(1, *TAKER_ARGS, env={"DURABLE_TEST_GATE": "w2"}).start()
    taker = taker_pool.slots[0]
    freeze_until_taken_over(first_pool, first, handle.id)
    taker_pool.wait(lambda: at_gate(handle.id, "w2", taker.pid), 60, "taker at its gate")
    first_pool.resume(first)
    # Its heartbeat finds the lease lost before its main thread goes on.
    wait_for_beats(first_id, 2)
    open_gate("w1")
    log = tmp_path / "worker-0.log"
    lost = f"Abandoning run {handle.id}: The lease of run {handle.id} was taken over."
    first_pool.wait(lambda: lost in log.read_text(), 30, "the heartbeat's verdict")
    assert_nothing_after_the_takeover(handle.id, first.pid, taker_pool.worker_id(taker))
    finish(handle.id, handle, first_pool, taker.pid)


def test_a_sleep_after_the_lease_ran_out_is_refused_before_the_heartbeat_knows(
    worker_pool, tmp_path: Path
):
    close_gates("w1", "w2")
    handle = rw.held_then_sleeps.start()
    # A long lease and a heartbeat far away: the lease is ended by hand below, and no beat
    # tells the first worker before its sleep is tried.
    slow_heart = {"LEASE_SECONDS": 600, "HEARTBEAT_INTERVAL": 500}
    first_pool = worker_pool(1, settings=slow_heart, env={"DURABLE_TEST_GATE": "w1"}).start()
    first = first_pool.slots[0]
    first_pool.wait(lambda: at_gate(handle.id, "w1", first.pid), 60, "first worker at its gate")
    Run.objects.filter(pk=handle.id).update(
        lease_expires_at=timezone.now() - dt.timedelta(minutes=5)
    )
    taker_pool = worker_pool(1, *TAKER_ARGS, env={"DURABLE_TEST_GATE": "w2"}).start()
    taker = taker_pool.slots[0]
    taker_pool.wait(lambda: at_gate(handle.id, "w2", taker.pid), 60, "taker at its gate")
    assert taken_over(handle.id)
    open_gate("w1")
    log = tmp_path / "worker-0.log"
    refused = (
        f"Abandoning run {handle.id}: Run {handle.id} was taken over before sleep 'sleep' "
        "at position 1 could be recorded"
    )
    first_pool.wait(lambda: refused in log.read_text(), 30, "the sleep refused")
    assert_nothing_after_the_takeover(handle.id, first.pid, taker_pool.worker_id(taker))
    finish(handle.id, handle, first_pool, taker.pid)
