"""durable.wake_now(): a support person's "wake it now" for sleeps, timeouts and backoffs."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

import django_durable as durable
from django_durable.models import Run, RunStatus
from django_durable.testing import run_all, run_ready
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_sleep_ends_now():
    handle = wf.sleeper.start(3600)
    run_ready()
    assert handle.refresh().status == RunStatus.WAITING
    assert durable.wake_now(handle.id) == "sleep"
    assert handle.refresh().status == RunStatus.PENDING
    run_ready()
    assert handle.result(timeout=1) == "woke"


def test_the_timeout_of_an_event_wait_comes_now():
    handle = wf.waits_event.start("never/sent", timeout=3600)
    run_ready()
    assert durable.wake_now(handle.id) == "timeout"
    run_all()
    with pytest.raises(durable.WorkflowFailed, match="EventTimeout"):
        handle.result(timeout=1)


def test_the_timeout_of_a_message_wait_comes_now_unless_the_message_came():
    quiet = wf.receives.start(1, "go", 3600)
    answered = wf.receives.start(1, "go", 3600)
    run_ready()
    durable.send(answered.id, "here", topic="go")
    assert async_to_sync(durable.awake_now)(quiet.id) == "timeout"
    run_all()
    assert quiet.result(timeout=1) == [None]
    assert answered.result(timeout=1) == ["here"]


def test_a_retry_backoff_ends_now():
    handle = wf.cancelled_in_backoff.start()  # its step fails once, then backs off an hour
    run_ready()
    assert handle.refresh().status == RunStatus.WAITING
    assert durable.wake_now(handle.id) == "retry"
    run_all()
    assert handle.result(timeout=1) == "second attempt worked"


def test_nothing_to_wake_is_said_in_words():
    forever = wf.waits_event.start("never/sent")  # no timeout
    done = wf.add.start(1, 2)
    run_ready()
    with pytest.raises(durable.NothingToWake, match="with no time limit: send it what it"):
        durable.wake_now(forever.id)
    assert Run.objects.get(pk=forever.id).status == RunStatus.WAITING  # untouched
    with pytest.raises(durable.NothingToWake, match="is completed, not waiting"):
        durable.wake_now(done.id)
    with pytest.raises(durable.RunNotFound):
        durable.wake_now("00000000-0000-0000-0000-000000000000")
