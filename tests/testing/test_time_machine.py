"""django_durable.testing.time_machine(): days of timers and timeouts tested in milliseconds.

Every test here would wait days of real time (and fail on run_until_finished's timeout) if
the clock did not move: the database's now(), the worker's timers and ctx.now() all follow
skip().
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

import django_durable as durable
from django_durable.core import clock
from django_durable.models import Event, Run, RunStatus, Schedule
from django_durable.orchestration.schedules import dispatch_due_schedules
from django_durable.store.dialect import dialect
from django_durable.testing import (
    TimeMachine,
    run_ready,
    run_until_finished,
    skip,
    time_machine,
)
from tests.conftest import ON_POSTGRES
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)


@durable.workflow(name="tests.time_machine.three_days")
def three_days(ctx: durable.Context) -> dict:
    before = ctx.now()
    ctx.sleep(3 * DAY)
    return {"before": before, "after": ctx.now()}


@durable.workflow(name="tests.time_machine.payment")
def payment(ctx: durable.Context, order: str) -> str:
    try:
        ctx.wait_for_event(f"tests/paid:{order}", timeout=timedelta(weeks=1))
    except durable.EventTimeout:
        return "cancelled"
    return "paid"


@durable.workflow(name="tests.time_machine.approval")
def approval(ctx: durable.Context) -> object:
    return ctx.recv("approve", timeout=2 * DAY, default="nobody answered")


@durable.workflow(name="tests.time_machine.deadline", timeout=DAY)
def deadline(ctx: durable.Context) -> str:
    ctx.sleep(2 * DAY)
    return "slept"


def waiting(handle: durable.RunHandle) -> bool:
    return handle.refresh().status == RunStatus.WAITING


def test_a_three_day_sleep_ends_when_the_clock_passes_it_and_not_before():
    started = time.monotonic()
    with time_machine():
        handle = three_days.start()
        assert run_ready() == 1
        assert waiting(handle)
        skip(2 * DAY + timedelta(hours=23))
        assert run_ready() == 0  # an hour short
        assert waiting(handle)
        skip(timedelta(hours=1))
        run_until_finished(handle, timeout=5)
    result = handle.result()
    assert result["after"] - result["before"] >= 3 * DAY  # ctx.now() followed the clock
    assert time.monotonic() - started < 60  # not three days, even on a busy machine


def test_a_one_week_event_timeout_times_out_after_a_week_and_an_event_still_wins_before():
    with time_machine():
        late, prompt = payment.start("A-1"), payment.start("A-2")
        run_ready()
        assert waiting(late) and waiting(prompt)
        skip(6 * DAY)
        assert run_ready() == 0
        durable.emit_event("tests/paid:A-2")
        skip(DAY)
        run_until_finished(late, prompt, timeout=5)
    assert late.result() == "cancelled"
    assert prompt.result() == "paid"


def test_a_recv_timeout_a_retry_backoff_and_a_workflow_deadline_follow_the_clock():
    with time_machine():
        asked = approval.start()
        retried = wf.flaky.start(1, retry_after=DAY.total_seconds())
        bounded = deadline.start()
        run_ready()
        assert all(waiting(handle) for handle in (asked, retried, bounded))
        skip(DAY + timedelta(seconds=1))  # the deadline and the backoff have come
        run_until_finished(retried, bounded, timeout=5)
        assert waiting(asked)
        skip(DAY)
        run_until_finished(asked, timeout=5)
    assert retried.result() == 2
    with pytest.raises(durable.WorkflowFailed, match="deadline"):
        bounded.result()
    assert asked.result() == "nobody answered"


def test_rows_written_meanwhile_are_dated_on_the_test_clock():
    with time_machine() as machine:
        machine.skip(10 * DAY)
        event_id = durable.emit_event("tests/dated")
    assert Event.objects.get(pk=event_id).created_at > timezone.now() + 9 * DAY


def test_a_schedule_ticks_when_the_clock_passes_its_next_tick():
    schedule = Schedule.objects.create(
        name="daily", workflow_name="tests.tick", cron="0 6 * * *", time_zone="UTC"
    )
    assert dispatch_due_schedules() == 0
    with time_machine():
        skip(DAY)
        assert dispatch_due_schedules() == 1
        [run] = Run.objects.filter(workflow_name="tests.tick")
    assert run.get_input()[1]["scheduled_time"] == schedule.next_tick_at


def test_the_clock_moves_only_inside_the_block_and_comes_back_after():
    with time_machine() as machine:
        assert isinstance(machine, TimeMachine)
        assert machine.skipped == timedelta(0)
        now = skip(DAY)
        assert now - timezone.now() > DAY - timedelta(minutes=1)
        assert machine.skip(DAY) >= now + DAY
        assert machine.skipped == 2 * DAY
        assert machine.now() - timezone.now() > 2 * DAY - timedelta(minutes=1)
    assert clock.skipped() == 0.0
    assert abs(clock.now() - timezone.now()) < timedelta(seconds=1)
    with pytest.raises(durable.DurableError, match="has ended"):
        machine.skip(1)
    assert machine.skipped == timedelta(0)


def test_an_error_in_the_block_brings_the_clock_back_too():
    def failing_test() -> None:
        with time_machine():
            skip(DAY)
            raise RuntimeError("the test failed")

    with pytest.raises(RuntimeError):
        failing_test()
    assert clock.skipped() == 0.0


@time_machine()
def test_time_machine_is_a_decorator_too():
    handle = three_days.start()
    run_ready()
    skip(3 * DAY)
    run_until_finished(handle, timeout=5)


def test_misuse_is_refused_saying_how_to_use_it():
    with pytest.raises(durable.DurableError, match="wrap the test in `with time_machine"):
        skip(DAY)
    with time_machine():
        with pytest.raises(durable.DurableError, match="active already"), time_machine():
            pass
        with pytest.raises(ValueError, match="cannot be negative"):
            skip(-1)
        with pytest.raises(TypeError, match="seconds or a timedelta"):
            skip("3 days")
        with pytest.raises(ValueError, match="100 years"):
            skip(timedelta(days=365 * 101))
        assert clock.skipped() == 0.0  # refused skips moved nothing


def test_the_worker_timers_follow_the_clock():
    worker = durable.Worker()
    with time_machine():
        skip(DAY)
        assert worker._db_now() - timezone.now() > DAY - timedelta(minutes=1)


def test_without_a_time_machine_the_sql_is_what_production_runs():
    params: dict = {}
    d = dialect()
    if ON_POSTGRES:
        assert d.now(params) == "now()"
        assert params == {}
        assert d.later(5, params) == "now() + %(later)s * interval '1 second'"
        assert params == {"later": 5.0}
    else:
        d.now(params)
        stored = d.read_datetime(params["now"])
        assert abs(stored - timezone.now()) < timedelta(seconds=1)
    with time_machine():
        skip(DAY)
        params = {}
        if ON_POSTGRES:
            assert d.now(params) == "(now() + %(skipped)s * interval '1 second')"
            assert params == {"skipped": DAY.total_seconds()}
        else:
            d.now(params)
            assert d.read_datetime(params["now"]) - timezone.now() > DAY - timedelta(minutes=1)
