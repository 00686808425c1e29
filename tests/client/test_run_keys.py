"""Runs addressed by their own key: every function that takes a run id takes ``key=`` too,
the idempotency key the run was started with."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

import django_durable as durable
from django_durable.models import Message, Run, RunStatus, RunToken
from django_durable.testing import run_ready, run_until_finished
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_get_run_and_aget_run_by_key():
    handle = wf.add.using(idempotency_key="sum-1").start(1, 2)
    assert durable.get_run(key="sum-1") == handle
    assert async_to_sync(durable.aget_run)(key="sum-1") == handle
    assert durable.get_run(handle.id) == handle  # by id, as always


def test_send_cancel_and_wake_by_key():
    handle = wf.http_receives.using(idempotency_key="approval-7").start("x")
    run_ready()
    message_id = durable.send(key="approval-7", message={"approved": True}, topic="approval")
    assert Message.objects.get(pk=message_id).run_id == Run.objects.get(pk=handle.id).pk
    async_to_sync(durable.asend)(key="approval-7", message="again", topic="other")
    waiting = wf.http_receives.using(idempotency_key="waits").start("y")
    run_ready()
    assert waiting.refresh().status == RunStatus.WAITING
    assert durable.cancel(reason="by key", key="waits") is True
    assert Run.objects.get(pk=waiting.id).cancel_reason == "by key"
    wf.add.using(idempotency_key="never-ran").start(1, 1)
    assert async_to_sync(durable.acancel)(key="never-ran") is True
    assert durable.get_run(key="never-ran").status == RunStatus.CANCELLED
    with pytest.raises(durable.NothingToWake):
        async_to_sync(durable.awake_now)(key="never-ran")


def test_retry_and_fork_by_key():
    handle = wf.http_fails.using(idempotency_key="fails-1").start()
    run_until_finished(handle)
    assert handle.status == RunStatus.FAILED
    fork = durable.fork(key="fails-1", from_step=0)
    assert fork.forked_from_id == handle.id
    assert async_to_sync(durable.afork)(key="fails-1", from_step=0).forked_from_id == handle.id
    retried = durable.retry(key="fails-1")
    assert retried == handle and retried.status == RunStatus.PENDING
    run_until_finished(handle)
    assert async_to_sync(durable.aretry)(key="fails-1") == handle


def test_tokens_by_key():
    handle = wf.add.using(idempotency_key="tok").start(1, 1)
    token = durable.create_token(key="tok", abilities=("read",))
    assert token.startswith("dur_")
    assert RunToken.objects.get().run_id == Run.objects.get(pk=handle.id).pk
    assert durable.revoke_tokens(key="tok") == 1
    assert async_to_sync(durable.arevoke_tokens)(key="tok") == 0


def test_a_key_of_a_run_started_over_http_is_the_stored_one():
    handle = wf.add.using(idempotency_key="api:5:order-42").start(1, 1)
    assert durable.get_run(key="api:5:order-42") == handle
    with pytest.raises(durable.RunNotFound):
        durable.get_run(key="order-42")


@pytest.mark.parametrize(
    "call",
    [
        lambda: durable.get_run(key="nope"),
        lambda: durable.cancel(key="nope"),
        lambda: durable.retry(key="nope"),
        lambda: durable.send(key="nope", message=1),
        lambda: durable.fork(key="nope", from_step=0),
        lambda: durable.wake_now(key="nope"),
        lambda: durable.revoke_tokens(key="nope"),
    ],
)
def test_an_unknown_key_is_run_not_found_in_words(call):
    with pytest.raises(durable.RunNotFound, match="No run was started with the idempotency key"):
        call()


def test_an_id_and_a_key_together_or_neither_is_a_type_error():
    handle = wf.add.using(idempotency_key="both").start(1, 1)
    with pytest.raises(TypeError, match="not both"):
        durable.get_run(handle.id, key="both")
    with pytest.raises(TypeError, match="Name the run"):
        durable.get_run()
    with pytest.raises(TypeError, match="Name the run"):
        durable.cancel()
    with pytest.raises(TypeError, match="send\\(\\) needs the message"):
        durable.send(key="both")
    for bad in ("", "k" * 256, 5):
        with pytest.raises(ValueError, match="key= must be an idempotency key"):
            durable.get_run(key=bad)
