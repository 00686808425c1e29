"""Zombie fencing: a worker stalled past its lease writes nothing once it wakes up.

A worker is stopped with SIGSTOP in the middle of a run, for at least 1.5 times its lease.
Another worker takes the run over. The stalled one is then let go with SIGCONT: it finishes
the step body it was in and tries to go on with the run, as a process paused by the
operating system, a long garbage collection or a frozen VM would. Every checkpoint records
the pid that computed it (the steps return ``os.getpid()``), so the database itself shows
that nothing the stalled worker did after the takeover was recorded.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from django_durable.models import Run, RunStatus, Step
from tests.reliability.conftest import WorkerPool, report, wait_for
from tests.testapp import reliability_workflows as rw
from tests.testapp.models import Execution, SideEffect

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LEASE = 1.0
STEPS = 20  # even positions sleep PAUSE; enough to outlast the stall and the takeover
PAUSE = 0.4


def writers(run_id: str) -> dict[int, int]:
    """Return the pid that wrote each checkpoint of the run, by position."""
    return dict(Step.objects.filter(run_id=run_id).values_list("position", "result"))


def stall_until_taken_over(pool: WorkerPool, proc, run_id: str) -> float:
    """SIGSTOP ``proc`` until another worker claimed the run; return when it stopped."""
    pool.pause(proc)
    stopped_at = time.monotonic()
    wait_for(lambda: Run.objects.get(pk=run_id).lease_token >= 2, 30, "takeover")
    return stopped_at


def test_a_worker_stalled_past_its_lease_writes_nothing_after_the_takeover(
    worker_pool, tmp_path: Path
):
    handle = rw.steps.start(STEPS, PAUSE)
    args = ("--lease", str(LEASE), "--poll-interval", "0.1")
    stalled_pool = worker_pool(1, *args).start()
    stalled = stalled_pool.slots[0]
    # Stop it inside a step body (a plain step sleeps PAUSE after recording itself).
    wait_for(lambda: Execution.objects.filter(run_id=handle.id, label="step-2").exists(), 60)
    rescuer_pool = worker_pool(1, *args).start()
    rescuer = rescuer_pool.slots[0]
    stopped_at = stall_until_taken_over(stalled_pool, stalled, handle.id)
    # What the stalled worker had written when it lost the run: that must not change.
    before = writers(handle.id)
    kept = {position for position, pid in before.items() if pid == stalled.pid}
    bodies_before = Execution.objects.filter(pid=stalled.pid).count()
    time.sleep(max(0.0, 1.5 * LEASE - (time.monotonic() - stopped_at)))
    stalled_for = time.monotonic() - stopped_at
    stalled_pool.resume(stalled)
    resumed_while = Run.objects.get(pk=handle.id).status
    # It wakes up, goes on with the run, and is refused: it gives the run up.
    log = Path(tmp_path / "worker-0.log")
    wait_for(lambda: f"Abandoning run {handle.id}" in log.read_text(), 30, "stalled worker fenced")
    assert handle.result(timeout=60) == STEPS, stalled_pool.logs()
    after = writers(handle.id)
    bodies_after = Execution.objects.filter(pid=stalled.pid).count() - bodies_before
    late = sorted(p for p, pid in after.items() if pid == stalled.pid and p not in kept)
    run = Run.objects.get(pk=handle.id)
    report(
        "fencing",
        lease=LEASE,
        stalled_seconds=stalled_for,
        run_when_resumed=resumed_while,
        checkpoints_before_stall=len(kept),
        checkpoints_by_rescuer=sum(1 for pid in after.values() if pid == rescuer.pid),
        checkpoints_by_stalled_after_takeover=len(late),
        bodies_started_by_stalled_after_resume=bodies_after,
    )
    # Nothing from the stalled worker after the takeover: its checkpoints are those it
    # had before, every later one is the rescuer's, and positions stay dense.
    assert late == []
    assert {p for p, pid in after.items() if pid == stalled.pid} == kept
    assert all(after[p] == rescuer.pid for p in after if p not in kept)
    assert sorted(after) == list(range(STEPS))
    # Atomic steps: their writes exist once each, the stalled worker's rolled back.
    effects = Counter(SideEffect.objects.filter(run_id=handle.id).values_list("label", flat=True))
    assert effects == {f"step-{i}": 1 for i in range(1, STEPS, 2)}
    # Waking, it finishes the body it was in. If it was stopped between two steps instead
    # (the test saw the row late, or stopped it again), it may start one more body before
    # it learns that it lost the run: the at-least-once window of docs/concepts/steps.md.
    assert bodies_after <= 1
    assert (run.lease_token, run.status) == (2, RunStatus.COMPLETED)
    # The stalled worker survived all this: it executes the next run on its own.
    assert rescuer_pool.stop() == [0]
    next_run = rw.steps.start(1)
    assert next_run.result(timeout=60) == 1, stalled_pool.logs()
    assert Execution.objects.get(run_id=next_run.id).pid == stalled.pid
    assert stalled_pool.stop() == [0]
