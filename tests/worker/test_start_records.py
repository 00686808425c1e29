"""Start records put off: a step whose body ends within ``RECORD_STEP_START_AFTER`` is
written once, by its checkpoint; a longer body gets its "running" record while it runs;
either way each execution is counted once, and a lease the worker cannot vouch for still
fences the body before it starts."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from django.test import override_settings

import django_durable as durable
from django_durable.core import clock
from django_durable.models import Step, StepStatus
from django_durable.store import checkpoints as stored
from django_durable.store.records import Claim
from django_durable.worker import startmarks
from django_durable.worker.inflight import InFlight
from django_durable.worker.worker import Worker
from tests.conftest import serve, wait_for
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every start record written (its position), before the body or by the worker's
    thread for a long body."""
    written: list[int] = []
    real = stored.record_start

    def counting(claim: Claim, *, position: int, **kwargs: Any) -> bool:
        written.append(position)
        return real(claim, position=position, **kwargs)

    monkeypatch.setattr(stored, "record_start", counting)
    monkeypatch.setattr(startmarks, "record_start", counting)
    return written


def test_quick_bodies_are_recorded_by_their_checkpoints_alone(starts):
    handle = wf.counted.start(3)
    Worker(concurrency=1, burst=True).run()
    assert handle.result(timeout=1) == 0 + 1 + 2
    assert starts == []  # one write per step: the checkpoint
    steps = Step.objects.filter(run_id=handle.id).order_by("position")
    # Each execution counted once, by the checkpoint.
    assert [(s.status, s.attempts, s.executions) for s in steps] == [
        (StepStatus.COMPLETED, 1, 1)
    ] * 3


@override_settings(DJANGO_DURABLE={"RECORD_STEP_START_AFTER": 0})
def test_with_no_delay_every_start_is_recorded_before_its_body(starts):
    handle = wf.counted.start(3)
    Worker(concurrency=1, burst=True).run()
    assert handle.result(timeout=1) == 3
    assert starts == [0, 1, 2]
    steps = Step.objects.filter(run_id=handle.id)
    assert {(s.attempts, s.executions) for s in steps} == {(1, 1)}


@override_settings(DJANGO_DURABLE={"RECORD_STEP_START_AFTER": 0.2})
def test_a_long_body_shows_running_while_it_runs_and_is_counted_once(starts):
    handle = wf.counted.start(2, pause=1.5)
    thread = serve(Worker(concurrency=1, burst=True))
    begun = Step.objects.filter(run_id=handle.id, position=0, status=StepStatus.RUNNING)
    wait_for(begun.exists, 10, "the running record of the first step")
    assert Execution.objects.filter(run_id=handle.id).count() == 1  # still in its body
    assert (begun.get().executions, begun.get().attempts) == (1, 0)
    thread.join(30)
    assert handle.result(timeout=1) == 1
    assert starts == [0, 1]  # each body outlasted the delay
    steps = Step.objects.filter(run_id=handle.id)
    assert {(s.status, s.attempts, s.executions) for s in steps} == {
        (StepStatus.COMPLETED, 1, 1)  # the start record and the checkpoint: one execution
    }


def test_a_retried_quick_body_counts_each_attempt_once(starts):
    handle = wf.flaky.start(2)
    deadline = time.monotonic() + 30
    while not handle.refresh().is_finished and time.monotonic() < deadline:
        Worker(concurrency=1, burst=True).run()  # until the backoff
        time.sleep(0.05)
    assert handle.result(timeout=1) == 3
    assert starts == []
    step = Step.objects.get(run_id=handle.id, position=0)
    assert step.attempts == step.executions == 3


def test_a_lease_the_worker_cannot_vouch_for_is_fenced_before_the_body():
    claim = Claim(
        run_id=uuid.uuid4(),
        workflow_name="w",
        input="{}",
        token=1,
        attempt=1,
        queue="default",
        deadline_at=None,
        db_now=clock.now(),
    )
    entry = InFlight(claim)
    assert entry.lease_left() <= 0  # never given: unknown
    entry.renewed(time.monotonic(), clock.skipped(), 30)
    assert 29 < entry.lease_left() <= 30
    entry.renewed(time.monotonic() - 29.9, clock.skipped(), 30)
    assert entry.lease_left() < 0.5  # too little left to put the start off
    entry.renewed(time.monotonic(), clock.skipped(), 30)
    entry.lost = True
    assert entry.lease_left() <= 0


def test_a_test_clock_skip_ends_the_lease_it_vouches_for():
    from django_durable.testing import time_machine

    claim = Claim(uuid.uuid4(), "w", "{}", 1, 1, "default", None, clock.now())
    entry = InFlight(claim)
    entry.renewed(time.monotonic(), clock.skipped(), 30)
    with time_machine() as machine:
        machine.skip(31)
        assert entry.lease_left() <= 0


def _nothing(number: int) -> int:
    return number


@durable.workflow(name="tests.quick_steps")
def quick_steps(ctx: durable.Context, steps: int) -> int:
    """Steps whose bodies hold on to the interpreter lock from start to end, as most do
    (the test app's bodies write a row, and let other threads run meanwhile)."""
    return sum(ctx.step(f"s{i}", _nothing, i) for i in range(steps))


class _CountedCondition(threading.Condition):
    """A condition that counts how often the start-marks thread wakes from waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.wakes = 0

    def wait(self, timeout: float | None = None) -> bool:
        woke = super().wait(timeout)
        if threading.current_thread().name == "durable-start-marks":
            self.wakes += 1
        return woke


@override_settings(DJANGO_DURABLE={"RECORD_STEP_START_AFTER": 30})
def test_quick_bodies_do_not_wake_the_start_record_thread_each(starts, monkeypatch):
    """The thread that writes the start records of long bodies sleeps through quick ones:
    it is woken for the first mark and then only when a mark comes due, never once a step
    (a context switch and a turn of its loop for nothing). Before, it dropped the marks
    settled before their time as soon as it woke, after the body had ended and before the
    next step's mark: each next step found no mark and woke it again."""
    made: list[startmarks.StartMarks] = []
    real_init = startmarks.StartMarks.__init__

    def counted_init(self: startmarks.StartMarks, **kwargs: Any) -> None:
        real_init(self, **kwargs)
        self.cond = _CountedCondition()
        made.append(self)

    monkeypatch.setattr(startmarks.StartMarks, "__init__", counted_init)
    handle = quick_steps.start(40)
    Worker(concurrency=1, burst=True, lease_seconds=120).run()
    assert handle.result(timeout=1) == sum(range(40))
    assert starts == []
    [marks] = made
    assert marks.cond.wakes <= 2, f"the thread woke {marks.cond.wakes} times for 40 quick steps"


def test_the_lease_vouched_for_covers_the_delay_and_the_slack():
    """A long body's record may be written up to ``SLACK`` of the delay late: the lease the
    worker vouches for must last that long too, or a takeover could come before it."""
    asked: list[float] = []

    def vouch(run_id: uuid.UUID, seconds: float) -> bool:
        asked.append(seconds)
        return False

    marks = startmarks.StartMarks(delay=2.0, alias="default", vouch=vouch)
    claim = Claim(uuid.uuid4(), "w", "{}", 1, 1, "default", None, clock.now())
    assert marks.defer(claim, 0, "step", "s0") is None  # not vouched for: written first
    assert asked == [pytest.approx(2.0 * (1 + startmarks.SLACK))]
