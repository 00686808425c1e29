"""django_durable.display.summary: a run in one sentence, in every state it can be in."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

import django_durable as durable
from django_durable.display import clock, moment, relative, summarize
from django_durable.models import Run, RunStatus, Step, StepStatus
from django_durable.testing import run_all, run_ready
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

NOW = dt.datetime(2026, 12, 4, 14, 37, tzinfo=dt.UTC)


def read(handle) -> Run:
    return Run.objects.get(pk=handle.id)


def test_relative_and_clock_times():
    assert relative(NOW + dt.timedelta(hours=5), NOW) == "in 5 h"
    assert relative(NOW - dt.timedelta(minutes=12), NOW) == "12 min ago"
    assert relative(NOW - dt.timedelta(seconds=3), NOW) == "3 s ago"
    assert relative(NOW + dt.timedelta(days=2, hours=1), NOW) == "in 2 days"
    assert relative(NOW, NOW) == "now"
    assert clock(NOW - dt.timedelta(minutes=12), NOW) == "14:25"
    assert clock(NOW + dt.timedelta(days=2), NOW) == "6 Dec 14:37"
    assert clock(dt.datetime(2025, 3, 1, 9, 5, tzinfo=dt.UTC), NOW) == "1 Mar 2025 09:05"
    assert moment(NOW - dt.timedelta(minutes=12), NOW) == "14:25 (12 min ago)"


def test_in_the_users_time_zone(settings):
    settings.TIME_ZONE = "Europe/Paris"
    timezone.activate("Europe/Paris")
    try:
        assert clock(NOW - dt.timedelta(minutes=12), NOW) == "15:25"
    finally:
        timezone.deactivate()


def test_waiting_for_an_event_with_a_timeout():
    handle = wf.waits_event.start("payment.confirmed:1042", timeout=3600)
    run_ready()
    run = read(handle)
    summary = summarize(run, now=run.updated_at + dt.timedelta(minutes=12))
    assert summary.waiting == "event" and summary.name == "payment.confirmed:1042"
    assert summary.sentence.startswith("Waiting for event `payment.confirmed:1042` since ")
    assert "(12 min ago); times out " in summary.sentence
    assert summary.until == run.wake_at


def test_waiting_for_a_message_and_for_a_child():
    message = wf.receives.start(1, "approval")
    parent = wf.parent_of_waiting_child.start()
    run_ready()
    assert summarize(read(message)).sentence.startswith("Waiting for a message on `approval` since")
    child = read(parent).children.get()
    summary = summarize(read(parent))
    assert summary.waiting == "child" and summary.name == str(child.pk)


def test_sleeping_retrying_and_starting_later():
    napper = wf.sleeper.start(3600)
    later = wf.add.using(delay=dt.timedelta(hours=2)).start(1, 2)
    backoff = wf.cancelled_in_backoff.start()
    run_ready()
    sleeping = summarize(read(napper))
    assert sleeping.waiting == "sleep" and sleeping.sentence.startswith("Sleeping until ")
    assert sleeping.sentence.endswith("(in 59 min)") or sleeping.sentence.endswith("(in 1 h)")
    retrying = summarize(read(backoff))
    assert retrying.waiting == "retry"
    assert retrying.sentence.startswith("Retrying step `flaky` (attempt 2) ")
    assert retrying.sentence.endswith("; last error: first attempt fails")
    starting = summarize(read(later))
    assert starting.sentence.startswith("Starts ") and "in queue `default`" in starting.sentence


def test_failed_at_a_step_after_its_attempts_and_failed_without_one():
    flaky = wf.flaky.start(10)  # fails more often than its 4 attempts
    fatal = wf.fatal.start()
    run_all()
    assert summarize(read(flaky)).sentence == (
        "Failed at step `flaky` after 4 attempts: ConnectionError: try 4 failed"
    )
    assert summarize(read(fatal)).sentence == (
        "Failed at step `charge` after 1 attempt: FatalError: card declined"
    )
    Run.objects.filter(pk=fatal.id).update(
        error={"type": "django_durable.WorkerLost", "message": "lost"}
    )
    assert summarize(read(fatal)).sentence == "Failed: WorkerLost: lost"


def test_completed_cancelled_pending_and_running():
    done = wf.add.start(1, 2)
    run_all()
    summary = summarize(read(done)).sentence
    assert summary.startswith("Completed in ") and summary.endswith(", 1 step")
    multi = wf.counted.start(3)
    run_all()
    assert summarize(read(multi)).sentence.endswith(", 3 steps")
    cancelled = wf.sleeper.start(3600)
    durable.cancel(cancelled.id, "customer left")
    assert summarize(read(cancelled)).sentence.startswith("Cancelled ")
    assert summarize(read(cancelled)).sentence.endswith(": customer left")
    ready = wf.add.start(3, 4)
    assert summarize(read(ready)).sentence.startswith("Ready in queue `default` since ")
    Run.objects.filter(pk=ready.id).update(
        status=RunStatus.RUNNING,
        claimed_by="host-7:4242:abc",
        lease_expires_at=timezone.now() + dt.timedelta(seconds=28),
    )
    running = summarize(read(ready))
    assert running.worker == "host-7:4242"
    assert running.sentence.startswith("Running on worker host-7:4242, lease renewed ")


@pytest.mark.django_db(transaction=True)
def test_running_run_names_a_retrying_step_as_current_not_done():
    handle = wf.add.start(5, 6)
    run_all()
    run = read(handle)
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING,
        claimed_by="host-7:4242:abc",
        lease_expires_at=timezone.now() + dt.timedelta(seconds=28),
    )
    step = Step.objects.filter(run=run).order_by("-position").first()
    assert step is not None
    done = summarize(read(handle)).sentence
    assert done.endswith(f"; last done: {step.kind} `{step.name}`")
    Step.objects.filter(pk=step.pk).update(status=StepStatus.RETRYING)
    retrying = summarize(read(handle)).sentence
    assert "last done" not in retrying
    assert retrying.endswith(f"; at {step.kind} `{step.name}` (retrying)")
