"""Events, messages, values and streams, with a worker in this thread."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction

import django_durable as durable
from django_durable import Worker
from django_durable.models import Event, Message, Run, RunStatus, RunValue, Step, StreamItem
from django_durable.testing import run_all
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def status(handle: durable.RunHandle) -> str:
    return handle.refresh().status


# --- events ------------------------------------------------------------------------------


def test_an_event_emitted_before_the_wait_is_received_without_suspending(worker):
    event_id = durable.emit_event(
        "payment.confirmed:order-1", {"amount": 10}, source="psp", type="paid"
    )
    handle = wf.waits_event.start("payment.confirmed:order-1")
    worker.run_once()
    result = handle.result(timeout=1)
    assert result["id"] == event_id
    assert result["data"] == {"amount": 10}
    assert (result["source"], result["type"]) == ("psp", "paid")
    assert isinstance(result["time"], dt.datetime)
    # Received on the first pass: the workflow body ran once.
    assert Execution.objects.filter(run_id=handle.id, label="before-wait").count() == 1


def test_a_waiting_run_is_suspended_then_woken_by_the_event(worker):
    handle = wf.waits_event.start("approved:doc-7")
    worker.run_once()
    run = Run.objects.get(pk=handle.id)
    assert run.status == RunStatus.WAITING
    assert run.wake_on == "e:approved:doc-7"
    assert run.waiting_for == "event 'approved:doc-7'"
    assert run.claimed_by is None and run.wake_at is None
    marker = Step.objects.get(run_id=handle.id)
    assert (marker.kind, marker.status) == ("event", "waiting")
    durable.emit_event("approved:doc-7", {"by": "ada"})
    # The emission made the run pending at once: no timer, no poll of the event table.
    run.refresh_from_db()
    assert (run.status, run.wake_on) == (RunStatus.PENDING, None)
    run_all()
    assert handle.result(timeout=1)["data"] == {"by": "ada"}
    marker.refresh_from_db()
    assert marker.status == "completed"


def test_per_entity_names_reach_only_their_waiter(worker):
    first = wf.waits_event.start("paid:order-1")
    second = wf.waits_event.start("paid:order-2")
    drain_until_waiting(worker, first, second)
    durable.emit_event("paid:order-1", 1)
    worker.run_once()
    assert first.result(timeout=1)["data"] == 1
    assert status(second) == RunStatus.WAITING


def test_a_broadcast_event_reaches_every_waiter(worker):
    runs = [wf.waits_event.start("daily.report.ready") for _ in range(3)]
    drain_until_waiting(worker, *runs)
    event_id = durable.emit_event("daily.report.ready", "report-42")
    run_all()
    assert {run.result(timeout=1)["id"] for run in runs} == {event_id}


def test_a_new_waiter_receives_the_latest_emission_then_only_newer_ones(worker):
    durable.emit_event("price", 1)
    durable.emit_event("price", 2)  # the latest when the run first waits
    handle = wf.waits_twice.start("price")
    worker.run_once()
    # The first wait took emission 2; the second waits for one newer than that.
    assert status(handle) == RunStatus.WAITING
    durable.emit_event("price", 3)
    run_all()
    assert handle.result(timeout=1) == [2, 3]


def test_an_event_timeout_is_recorded_and_replays_as_a_timeout(worker):
    handle = wf.event_timeout.start("never:1", timeout=0.2)
    drain_until(
        worker, lambda: Step.objects.filter(run_id=handle.id, name="after-timeout").exists()
    )
    # The event arrives after the timeout: the replay must still see the timeout.
    durable.emit_event("never:1", "late")
    run_all()
    assert handle.result(timeout=1) == "timed out"
    wait = Step.objects.get(run_id=handle.id, kind="event")
    assert wait.status == "failed"
    assert wait.error["type"] == "django_durable.exceptions.EventTimeout"


def test_an_uncaught_event_timeout_fails_the_run_with_event_timeout():
    handle = wf.waits_event.start("never:2", timeout=0.1)
    run_all()
    with pytest.raises(durable.WorkflowFailed) as failed:
        handle.result(timeout=1)
    assert failed.value.error_type == "django_durable.exceptions.EventTimeout"
    assert "No event 'never:2' arrived within 0.1 seconds" in failed.value.error_message


def test_event_timeout_is_a_timeout_error():
    assert issubclass(durable.EventTimeout, TimeoutError)


def test_ctx_emit_event_emits_once_per_position():
    handle = wf.emits.start("from-a-run")
    run_all()
    event_id = handle.result(timeout=1)
    # The workflow was replayed after its sleep; the emission was not repeated.
    events = Event.objects.filter(name="from-a-run")
    assert [e.id for e in events] == [event_id]
    event = events.get()
    assert str(event.run_id) == handle.id
    assert (event.source, event.type, event.get_data()) == ("tests", "demo", {"from": handle.id})


def test_an_event_emitted_by_a_run_wakes_another_run():
    waiter = wf.waits_event.start("relay")
    wf.emits.start("relay")
    run_all()
    assert waiter.result(timeout=1)["data"]["from"]


def test_a_typed_event_is_validated_by_its_model():
    good = wf.typed_event.start("pay:1")
    bad = wf.typed_event.start("pay:2")
    durable.emit_event("pay:1", {"amount": "12.5", "currency": "EUR"})
    durable.emit_event("pay:2", {"amount": "lots"})
    run_all()
    assert good.result(timeout=1) == {"amount": 12.5, "currency": "EUR"}
    with pytest.raises(durable.WorkflowFailed) as failed:
        bad.result(timeout=1)
    assert failed.value.error_type == "django_durable.exceptions.EventDataInvalid"
    assert "Event 'pay:2'" in failed.value.error_message
    assert "does not match Payment" in failed.value.error_message


def test_an_event_emitted_in_a_rolled_back_transaction_never_existed(worker):
    handle = wf.waits_event.start("maybe")
    worker.run_once()

    class Rollback(Exception):
        pass

    def emit_then_fail() -> None:
        with transaction.atomic():
            durable.emit_event("maybe", 1)
            raise Rollback

    with pytest.raises(Rollback):
        emit_then_fail()
    assert not Event.objects.exists()
    assert status(handle) == RunStatus.WAITING


def test_emit_event_refuses_bad_input():
    with pytest.raises(ValueError, match="event name"):
        durable.emit_event("", 1)
    with pytest.raises(durable.SerializationError, match="data of event 'x'"):
        durable.emit_event("x", object())
    with pytest.raises(durable.SerializationError, match="NUL"):
        durable.emit_event("x", "\x00")
    with pytest.raises(ValueError, match="source="):
        durable.emit_event("x", 1, source="s" * 300)
    assert not Event.objects.exists()


# --- messages ----------------------------------------------------------------------------


def test_a_message_sent_before_recv_waits_for_it(worker):
    handle = wf.receives.start(1)
    message_id = durable.send(handle.id, {"approved": True})
    run_all()
    assert handle.result(timeout=1) == [{"approved": True}]
    message = Message.objects.get(pk=message_id)
    assert message.consumed_at is not None
    assert message.consumed_position == 0


def test_recv_suspends_and_send_wakes_the_run(worker):
    handle = wf.receives.start(2, topic="approval")
    worker.run_once()
    run = Run.objects.get(pk=handle.id)
    assert (run.status, run.wake_on) == (RunStatus.WAITING, "m:approval")
    handle.send("first", topic="approval")
    assert status(handle) == RunStatus.PENDING
    worker.run_once()
    assert status(handle) == RunStatus.WAITING  # waits for the second
    durable.send(handle.id, "second", topic="approval")
    run_all()
    assert handle.result(timeout=1) == ["first", "second"]


def test_messages_are_fifo_per_topic_and_topics_are_separate():
    handle = wf.receives.start(3, topic="a")
    for value in ("b1", "a1", "b2", "a2", "a3"):
        durable.send(handle.id, value, topic=value[0])
    durable.send(handle.id, "no topic")
    run_all()
    assert handle.result(timeout=1) == ["a1", "a2", "a3"]
    left = Message.objects.filter(run_id=handle.id, consumed_at__isnull=True)
    assert sorted(m.get_data() for m in left) == ["b1", "b2", "no topic"]


def test_a_recv_timeout_returns_none_and_replays_as_none(worker):
    handle = wf.recv_timeout.start(0.2)
    drain_until(worker, lambda: Step.objects.filter(run_id=handle.id, kind="sleep").exists())
    durable.send(handle.id, "too late", topic="late")
    run_all()
    assert handle.result(timeout=1) == [None]
    assert Message.objects.get(run_id=handle.id).consumed_at is None


@pytest.mark.parametrize("workflow", [wf.recv_with_default, wf.async_recv_with_default])
def test_recv_returns_its_default_on_timeout_and_a_none_message_as_none(worker, workflow):
    args = (2, 0) if workflow is wf.recv_with_default else (0,)
    handle = workflow.start(*args)
    durable.send(handle.id, None)  # a message that is None, then nothing: a timeout
    run_all()
    assert handle.result(timeout=1) == [None, "timed out"]
    assert Message.objects.get(run_id=handle.id).consumed_at is not None


def test_the_same_idempotency_key_stores_one_message():
    handle = wf.receives.start(1)
    first = durable.send(handle.id, "charge", idempotency_key="webhook-1")
    second = durable.send(handle.id, "charge again", idempotency_key="webhook-1")
    assert first == second
    assert [m.get_data() for m in Message.objects.all()] == ["charge"]


def test_send_to_an_unknown_run_or_bad_input_is_a_clear_error():
    with pytest.raises(durable.RunNotFound):
        durable.send("00000000-0000-0000-0000-000000000000", 1)
    with pytest.raises(durable.RunNotFound):
        durable.send("nope", 1)
    handle = wf.receives.start(1)
    with pytest.raises(durable.SerializationError, match="The message cannot be stored"):
        durable.send(handle.id, {1, 2})
    with pytest.raises(ValueError, match="message topic"):
        durable.send(handle.id, 1, topic="t" * 201)
    assert not Message.objects.exists()


def test_a_message_sent_in_a_rolled_back_transaction_never_existed(worker):
    handle = wf.receives.start(1)
    worker.run_once()

    def send_then_fail() -> None:
        with transaction.atomic():
            durable.send(handle.id, "oops")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        send_then_fail()
    assert not Message.objects.exists()
    assert status(handle) == RunStatus.WAITING


def test_payloads_over_the_limit_are_refused_before_anything_is_stored(settings):
    handle = wf.receives.start(1)
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_PAYLOAD_BYTES": 64}
    with pytest.raises(durable.PayloadTooLarge):
        durable.send(handle.id, "x" * 100)
    with pytest.raises(durable.PayloadTooLarge):
        durable.emit_event("big", "x" * 100)
    assert not Message.objects.exists()
    assert not Event.objects.exists()


# --- values and progress -----------------------------------------------------------------


def test_values_latest_wins_history_kept_and_replay_adds_nothing():
    handle = wf.publishes.start(3)
    run_all()
    assert handle.result(timeout=1) == "published"
    assert handle.values() == {
        "last": {"index": 2},
        "progress": {"done": 3, "total": 3, "percent": 100.0, "message": "item 2"},
    }
    assert durable.get_value(handle.id, "last") == {"index": 2}
    # Every version is kept, once: the replay after the sleep wrote nothing new.
    history = RunValue.objects.filter(run_id=handle.id, key="last").order_by("id")
    assert [v.get_value()["index"] for v in history] == [0, 1, 2]
    assert RunValue.objects.filter(run_id=handle.id).count() == 6


def test_get_value_without_timeout_returns_the_default_at_once():
    handle = wf.publishes.start(1)
    assert durable.get_value(handle.id, "last") is None
    assert durable.get_value(handle.id, "last", default="none yet") == "none yet"
    with pytest.raises(durable.RunNotFound):
        durable.get_value("00000000-0000-0000-0000-000000000000", "last")


def test_get_value_waits_for_a_value_set_by_a_worker_in_another_thread():
    handle = wf.publishes.start(2, pause=0.2)
    worker = threading.Thread(target=_drain_in_thread)
    worker.start()
    try:
        progress = durable.get_value(handle.id, "progress", timeout=10)
        assert progress["total"] == 2
        assert progress["done"] in (1, 2)
    finally:
        worker.join()


def test_get_value_stops_waiting_when_the_run_finishes_without_it():
    handle = wf.add.start(1, 2)
    run_all()
    started = time.monotonic()
    assert durable.get_value(handle.id, "never", timeout=600, default="gone") == "gone"
    assert time.monotonic() - started < 60  # not the 600 s timeout, even on a busy machine


def test_get_value_finds_a_value_set_just_before_the_run_finished(monkeypatch):
    """The run sets its value and finishes between the waiter's two reads.

    Read value-then-status, the waiter saw "no value" and then "finished", and returned
    the default although the value was there (a flaky demo on PostgreSQL). Status first,
    it waits one more round and finds the value.
    """
    from django_durable.client import values

    handle = wf.publishes.start(1)
    real_newest = values._newest
    calls = []

    def newest_then_the_run_finishes(run, key, after):
        found = real_newest(run, key, after)
        calls.append(found)
        if len(calls) == 2:  # the first read while waiting: the run commits its end now
            RunValue.objects.create(run_id=handle.id, key="last", value={"index": 0}, position=9)
            Run.objects.filter(pk=handle.id).update(status=RunStatus.COMPLETED)
        return found

    monkeypatch.setattr(values, "_newest", newest_then_the_run_finishes)
    assert durable.get_value(handle.id, "last", timeout=5, default="gone") == {"index": 0}
    assert calls[:2] == [None, None]


def test_get_value_times_out_with_the_default():
    handle = wf.publishes.start(1)
    started = time.monotonic()
    assert durable.get_value(handle.id, "last", timeout=0.3) is None
    assert time.monotonic() - started >= 0.3


def test_set_progress_percent():
    from django_durable.engine.channels import progress

    assert progress(1, 3, "x")["percent"] == 33.3
    assert progress(5, None, "")["percent"] is None
    assert progress(7, 5, "")["percent"] == 100.0


# --- streams -----------------------------------------------------------------------------


def test_stream_offsets_are_dense_and_replay_writes_nothing_twice():
    handle = wf.streams.start(5)
    run_all()
    assert handle.result(timeout=1) == 5
    items = StreamItem.objects.filter(run_id=handle.id).order_by("offset")
    assert [(i.offset, i.closes) for i in items] == [(n, False) for n in range(5)] + [(5, True)]
    assert list(durable.read_stream(handle.id, "out")) == [{"index": n} for n in range(5)]
    assert list(durable.read_stream(handle.id, "out", offset=3)) == [{"index": 3}, {"index": 4}]
    assert list(handle.read_stream("missing")) == []


def test_read_stream_follow_yields_items_as_committed_and_stops_at_close():
    handle = wf.stream_in_lockstep.start(3)  # writes an item once the reader has the last
    thread = threading.Thread(target=_drain_in_thread)
    thread.start()
    try:
        seen = []
        for value in durable.read_stream(handle.id, "out", follow=True):
            seen.append(value)
            wf.STREAM_SEEN.setdefault(f"{handle.id}:{value['index']}", threading.Event()).set()
    finally:
        thread.join()
    assert seen == [{"index": n} for n in range(3)]
    # Each item arrived while the run waited for it to arrive, not all at the close.
    assert handle.result(timeout=1) == [True, True, True]


def test_read_stream_follow_stops_when_the_run_ends_without_closing():
    handle = wf.streams.start(2, close=False)
    run_all()
    assert list(durable.read_stream(handle.id, "out", follow=True)) == [{"index": 0}, {"index": 1}]


def test_writing_to_a_closed_stream_fails_the_run():
    handle = wf.write_after_close.start()
    run_all()
    with pytest.raises(durable.WorkflowFailed, match=r"Stream 'out' of run .* is closed"):
        handle.result(timeout=1)


def test_read_stream_of_an_unknown_run_raises_at_once():
    with pytest.raises(durable.RunNotFound):
        durable.read_stream("00000000-0000-0000-0000-000000000000", "out")
    with pytest.raises(ValueError, match="offset"):
        durable.read_stream(wf.add.start(1, 1).id, "out", offset=-1)


# --- async workflows and async twins -----------------------------------------------------


def test_an_async_workflow_uses_every_channel(worker):
    handle = wf.async_channels.start("async-go")
    worker.run_once()
    assert status(handle) == RunStatus.WAITING
    async_to_sync(durable.aemit_event)("async-go", {"n": 1})
    worker.run_once()
    assert status(handle) == RunStatus.WAITING  # now waiting for the message
    async_to_sync(handle.asend)({"m": 2}, topic="go")
    run_all()
    result = handle.result(timeout=1)
    assert result["event"] == {"n": 1}
    assert result["message"] == {"m": 2}
    assert result["offset"] == 0
    assert Event.objects.get(pk=result["emitted"]).name == "async-go:done"
    assert async_to_sync(handle.aget_value)("progress")["percent"] == 50.0
    assert async_to_sync(handle.avalues)()["progress"]["message"] == "half"

    async def read() -> list:
        return [value async for value in durable.aread_stream(handle.id, "out", follow=True)]

    assert async_to_sync(read)() == [{"m": 2}]


def test_async_get_value_waits():
    handle = wf.publishes.start(1, pause=0.2)
    thread = threading.Thread(target=_drain_in_thread)
    thread.start()
    try:
        value = async_to_sync(durable.aget_value)(handle.id, "last", timeout=10)
    finally:
        thread.join()
    assert value == {"index": 0}


# --- helpers -----------------------------------------------------------------------------


def _drain_in_thread() -> None:
    try:
        run_all()
    finally:
        connection.close()


def drain_until(worker: Worker, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        worker.run_once()
        time.sleep(0.02)


def drain_until_waiting(worker: Worker, *handles: durable.RunHandle) -> None:
    drain_until(worker, lambda: all(status(h) == RunStatus.WAITING for h in handles))


# --- workflow retries rewind what the rewound operations wrote ----------------------------


def test_a_workflow_retry_undoes_the_channel_writes_it_rewinds():
    handle = wf.retry_rewinds_channels.start()
    durable.send(handle.id, "m1", topic="in")
    run_all()
    # The message the failed attempt took was handed back and taken by the retry.
    assert handle.result(timeout=1) == "m1"
    assert handle.refresh().model.attempt == 2
    message = Message.objects.get(run_id=handle.id)
    assert message.consumed_position is not None
    # The failed attempt's stream item and value are gone; the retry's item has offset 0.
    assert list(durable.read_stream(handle.id, "out")) == ["written by the retry"]
    assert handle.values() == {}
    # The event it emitted was already broadcast; running the emit again emitted nothing.
    assert Event.objects.filter(name="rewind-test").count() == 1


def test_event_idempotency_keys_are_per_name():
    first = durable.emit_event("a", 1, idempotency_key="k")
    assert durable.emit_event("a", 2, idempotency_key="k") == first
    other = durable.emit_event("b", 3, idempotency_key="k")
    assert other != first
    assert Event.objects.count() == 2


def test_invalid_event_data_is_never_retried():
    handle = wf.typed_event_retried.start("pay:invalid")
    durable.emit_event("pay:invalid", {"amount": "lots"})
    run_all()
    run = handle.refresh().model
    assert run.status == RunStatus.FAILED
    assert run.attempt == 1
    assert run.error["type"] == "django_durable.exceptions.EventDataInvalid"


def test_prune_deletes_old_events_too():
    from django.utils import timezone

    old = durable.emit_event("old", 1)
    recent = durable.emit_event("recent", 2)
    Event.objects.filter(pk=old).update(created_at=timezone.now() - dt.timedelta(days=10))
    durable.prune(older_than=dt.timedelta(days=1))
    assert list(Event.objects.values_list("id", flat=True)) == [recent]


def test_following_a_stream_stops_at_its_timeout():
    handle = wf.receives.start(1)  # writes nothing, waits forever
    started = time.monotonic()
    assert list(durable.read_stream(handle.id, "out", follow=True, timeout=0.5)) == []
    assert 0.5 <= time.monotonic() - started < 60  # the run waits for ever


def test_a_quiet_follower_gives_its_connection_back(monkeypatch, settings):
    from django_durable.client import streams

    released = []
    monkeypatch.setattr(streams, "RELEASE_IDLE_SECONDS", 0.2)
    monkeypatch.setattr(streams, "_release_connection", lambda: released.append(1))
    handle = wf.receives.start(1)
    list(durable.read_stream(handle.id, "out", follow=True, timeout=1.0))
    assert released


def test_watch_value_waits_for_a_newer_version(worker):
    from django_durable import watch_value

    handle = wf.publishes.start(2)
    assert watch_value(handle.id, "last") is None
    run_all()
    newest = watch_value(handle.id, "last")
    assert newest.value == {"index": 1}
    # Nothing newer, and the run finished: no waiting for what will never come.
    started = time.monotonic()
    assert watch_value(handle.id, "last", after=newest.version, timeout=600) is None
    assert time.monotonic() - started < 60  # not the 600 s timeout, even on a busy machine
