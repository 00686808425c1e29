"""Event-triggered workflows: deliveries written with the event, dispatched exactly once."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

import django_durable as durable
from django_durable.declarations import registry
from django_durable.models import Event, Run, RunStatus, TriggerDelivery
from django_durable.orchestration import triggers
from django_durable.testing import run_all
from tests.conftest import ON_POSTGRES
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_orphan_warnings(monkeypatch):
    monkeypatch.setattr(triggers, "_orphans_warned", {})


def runs_of(name: str) -> list[Run]:
    return list(Run.objects.filter(workflow_name=name).order_by("created_at", "id"))


def payload_of(run: Run) -> dict:
    args, kwargs = run.get_input()
    assert kwargs == {}
    [payload] = args
    return payload


def event_ids(run: Run) -> list[int]:
    return [event["id"] for event in payload_of(run)["events"]]


def pending(name: str) -> list[int]:
    rows = TriggerDelivery.objects.filter(workflow_name=name).order_by("event_id")
    return list(rows.values_list("event_id", flat=True))


def test_an_event_starts_one_run_with_the_event_as_payload():
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    data = {"order": "A-1", "placed": when, "total": Decimal("9.90")}
    event_id = durable.emit_event("tests/order", data, source="shop", type="created")
    run_all()
    [run] = runs_of("tests.on_order")
    assert run.status == RunStatus.COMPLETED
    assert run.idempotency_key == f"trigger:tests.on_order:{event_id}"
    [event] = durable.get_run(run.id).result(timeout=1)["events"]
    assert event["id"] == event_id
    assert event["name"] == "tests/order"
    assert event["data"] == data  # tagged JSON: datetime and Decimal come back as such
    assert (event["source"], event["type"]) == ("shop", "created")
    assert isinstance(event["time"], dt.datetime)
    assert event["time"] == Event.objects.get(pk=event_id).created_at
    assert not TriggerDelivery.objects.exists()


def test_the_delivery_is_written_with_the_event_and_deleted_with_the_start():
    other = durable.emit_event("tests/unrelated", 1)
    event_id = durable.emit_event("tests/order", 2)
    delivery = TriggerDelivery.objects.get()
    assert (delivery.workflow_name, delivery.event_id) == ("tests.on_order", event_id)
    assert not TriggerDelivery.objects.filter(event_id=other).exists()
    assert not Run.objects.exists()  # the worker's dispatcher starts it
    assert triggers.dispatch_triggers() == 1
    assert triggers.dispatch_triggers() == 0
    assert not TriggerDelivery.objects.exists()
    [run] = runs_of("tests.on_order")
    assert (run.status, event_ids(run)) == (RunStatus.PENDING, [event_id])


def test_an_event_emitted_in_a_rolled_back_transaction_triggers_nothing():
    class Rollback(Exception):
        pass

    seen = []

    def emit_then_fail() -> None:
        with transaction.atomic():
            durable.emit_event("tests/order", 1)
            seen.append(TriggerDelivery.objects.count())
            raise Rollback

    with pytest.raises(Rollback):
        emit_then_fail()
    assert seen == [1]  # written in the transaction, and rolled back with it
    assert not Event.objects.exists()
    assert not TriggerDelivery.objects.exists()
    assert triggers.dispatch_triggers() == 0
    assert not Run.objects.exists()


def test_an_event_emitted_by_a_workflow_triggers_once():
    emitter = wf.emits.start("tests/order")  # emits, sleeps, and is replayed
    run_all()
    event_id = emitter.result(timeout=1)
    [run] = runs_of("tests.on_order")
    [event] = payload_of(run)["events"]
    assert event["id"] == event_id
    assert event["data"] == {"from": emitter.id}
    assert (event["source"], event["type"]) == ("tests", "demo")
    assert run.status == RunStatus.COMPLETED


def test_an_idempotency_key_used_twice_triggers_once():
    first = durable.emit_event("tests/order", 1, idempotency_key="delivery-7")
    again = durable.emit_event("tests/order", 2, idempotency_key="delivery-7")
    assert first == again
    assert pending("tests.on_order") == [first]
    run_all()
    [run] = runs_of("tests.on_order")
    assert event_ids(run) == [first]


def test_full_batches_start_in_emission_order_and_a_partial_one_waits():
    emitted = [durable.emit_event("tests/batch", {"n": n}) for n in range(25)]
    assert triggers.dispatch_triggers() == 2
    runs = runs_of("tests.on_batch")
    assert [event_ids(run) for run in runs] == [emitted[:10], emitted[10:20]]
    assert [event["data"] for event in payload_of(runs[0])["events"]] == [
        {"n": n} for n in range(10)
    ]
    assert pending("tests.on_batch") == emitted[20:]  # 5 < batch_size: not due for an hour
    run_all()
    assert triggers.dispatch_triggers() == 0
    assert [run.refresh_from_db() or run.status for run in runs] == [RunStatus.COMPLETED] * 2


def test_a_partial_batch_starts_once_its_oldest_event_waited_batch_timeout():
    emitted = [durable.emit_event("tests/batch", n) for n in range(3)]
    oldest = TriggerDelivery.objects.filter(event_id=emitted[0])
    oldest.update(created_at=timezone.now() - dt.timedelta(seconds=3500))
    assert triggers.dispatch_triggers() == 0  # 3500 s < batch_timeout=3600
    oldest.update(created_at=timezone.now() - dt.timedelta(seconds=3601))
    assert triggers.dispatch_triggers() == 1
    [run] = runs_of("tests.on_batch")
    assert event_ids(run) == emitted
    assert not TriggerDelivery.objects.exists()
    # The next events start a new batch, with a timer of its own.
    later = durable.emit_event("tests/batch", 3)
    assert triggers.dispatch_triggers() == 0
    assert pending("tests.on_batch") == [later]


def test_every_workflow_triggered_by_a_name_gets_each_event_once():
    emitted = [durable.emit_event("tests/signup", {"user": n}) for n in range(3)]
    assert TriggerDelivery.objects.count() == 6
    run_all()
    for name in ("tests.on_signup_mail", "tests.on_signup_crm"):  # sync and async
        runs = runs_of(name)
        results = [durable.get_run(run.id).result(timeout=1) for run in runs]
        assert sorted(event for result in results for event in result) == emitted, name
    assert not TriggerDelivery.objects.exists()


@pytest.mark.parametrize("locked", [True, False], ids=["advisory-lock", "idempotency-key-only"])
def test_concurrent_dispatchers_never_start_an_event_twice_nor_drop_one(monkeypatch, locked):
    if not locked:
        # Without the advisory lock dispatchers race for the same batches on PostgreSQL;
        # the run's idempotency key must still make each batch start once.
        monkeypatch.setattr(triggers, "lock_workflow", lambda d, name: True)
    stop = threading.Event()
    errors: list[BaseException] = []
    started: list[int] = []

    def dispatch() -> None:
        try:
            while not stop.is_set():
                started.append(triggers.dispatch_triggers())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatch) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        orders, batched = [], []
        for n in range(100):  # while the dispatchers run
            orders.append(durable.emit_event("tests/order", n))
            batched.append(durable.emit_event("tests/batch", n))
        deadline = time.monotonic() + 60
        while TriggerDelivery.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    assert not TriggerDelivery.objects.exists()
    order_runs = runs_of("tests.on_order")
    assert sorted(event_ids(run)[0] for run in order_runs) == orders
    assert len(order_runs) == 100
    batch_runs = runs_of("tests.on_batch")
    assert len(batch_runs) == 10
    seen = [event_ids(run) for run in batch_runs]
    assert all(ids == sorted(ids) and len(ids) == 10 for ids in seen)
    assert sorted(event for ids in seen for event in ids) == batched
    assert sum(started) == 110


@pytest.fixture
def temporary_trigger():
    @durable.workflow(name="tests.temporary_trigger", trigger_on_event="tests/order")
    def temporary(ctx: Any, payload: dict) -> None:
        return None

    yield temporary
    registry.unregister("tests.temporary_trigger")


def test_deliveries_of_a_workflow_no_longer_registered_stay_and_block_nothing(
    temporary_trigger, caplog
):
    first = durable.emit_event("tests/order", 1)
    assert sorted(pending("tests.temporary_trigger") + pending("tests.on_order")) == [first] * 2
    registry.unregister("tests.temporary_trigger")
    caplog.set_level(logging.WARNING, logger="django_durable")
    assert triggers.dispatch_triggers() == 1  # tests.on_order still gets its run
    assert pending("tests.temporary_trigger") == [first]
    [warning] = [r for r in caplog.records if "not registered" in r.getMessage()]
    assert "tests.temporary_trigger" in warning.getMessage()
    assert warning.levelno == logging.WARNING
    caplog.clear()
    second = durable.emit_event("tests/order", 2)  # recorded for registered workflows only
    assert triggers.dispatch_triggers() == 1
    assert not caplog.records  # warned once, not at every round
    assert pending("tests.temporary_trigger") == [first]
    assert [event_ids(run) for run in runs_of("tests.on_order")] == [[first], [second]]
    # Registered again (a deploy rolled back): its waiting delivery starts a run.
    registry.register(temporary_trigger)
    assert triggers.dispatch_triggers() == 1
    assert [event_ids(run) for run in runs_of("tests.temporary_trigger")] == [[first]]


def test_a_workflow_that_cannot_start_does_not_stop_the_others(caplog):
    event_id = durable.emit_event("tests/signup", 1)
    # Its batch's key is taken by another workflow's run: starting it fails.
    wf.add.using(idempotency_key=f"trigger:tests.on_signup_mail:{event_id}").start(1, 2)
    caplog.set_level(logging.ERROR, logger="django_durable")
    assert triggers.dispatch_triggers() == 1
    assert [event_ids(run) for run in runs_of("tests.on_signup_crm")] == [[event_id]]
    assert pending("tests.on_signup_mail") == [event_id]  # kept, not lost
    [error] = caplog.records
    assert "tests.on_signup_mail" in error.getMessage()
    assert "already started run" in error.exc_text


def test_a_run_holding_the_key_of_another_batch_is_reported_not_looped_on(caplog):
    event_id = durable.emit_event("tests/order", 1)
    key = f"trigger:tests.on_order:{event_id}"
    by_hand = wf.on_order.using(idempotency_key=key).start({"events": []})
    caplog.set_level(logging.ERROR, logger="django_durable")
    assert triggers.dispatch_triggers() == 0
    assert runs_of("tests.on_order") == [by_hand.model]
    assert pending("tests.on_order") == [event_id]
    [error] = caplog.records
    assert "Was the key used by hand?" in error.exc_text


def test_a_batch_too_big_for_one_run_is_split(settings):
    emitted = [durable.emit_event("tests/batch", "x" * 400) for _ in range(10)]
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_PAYLOAD_BYTES": 4000}
    assert triggers.dispatch_triggers() == 1
    [run] = runs_of("tests.on_batch")
    assert event_ids(run) == emitted[:5]
    assert pending("tests.on_batch") == emitted[5:]  # a partial batch again: it waits


def test_prune_keeps_old_events_whose_batch_has_not_started():
    owed = [durable.emit_event("tests/batch", n) for n in range(2)]  # a batch of 10: pending
    delivered = durable.emit_event("tests/order", 1)
    nobody = durable.emit_event("tests/nobody", 1)  # triggers nothing
    run_all()  # starts the order's run; the batch waits for 8 more events, or an hour
    Event.objects.update(created_at=timezone.now() - dt.timedelta(days=2))
    expected = durable.PruneResult(runs=0, events=2, events_kept=2)
    assert durable.prune(older_than=dt.timedelta(days=1), dry_run=True) == expected
    assert durable.prune(older_than=dt.timedelta(days=1)) == expected
    assert set(Event.objects.values_list("pk", flat=True)) == set(owed)
    assert not Event.objects.filter(pk__in=[delivered, nobody]).exists()
    assert pending("tests.on_batch") == owed
    # The batch still starts with them, and once it has, they go at the next prune.
    rest = [durable.emit_event("tests/batch", n) for n in range(2, 10)]
    run_all()
    [run] = runs_of("tests.on_batch")
    assert (run.status, event_ids(run)) == (RunStatus.COMPLETED, owed + rest)
    after = durable.prune(older_than=dt.timedelta(days=1))
    assert after == durable.PruneResult(runs=0, events=2, events_kept=0)


def test_prune_keeps_the_events_of_a_workflow_that_is_gone_until_deleted_by_hand():
    event_id = durable.emit_event("tests/nobody", 1)
    TriggerDelivery.objects.create(workflow_name="tests.removed", event_id=event_id)
    Event.objects.update(created_at=timezone.now() - dt.timedelta(days=2))
    assert durable.prune(older_than=dt.timedelta(days=1)).events_kept == 1
    TriggerDelivery.objects.filter(workflow_name="tests.removed").delete()
    assert durable.prune(older_than=dt.timedelta(days=1)).events == 1
    assert not Event.objects.exists()


def test_without_triggered_workflows_an_event_writes_no_delivery():
    assert registry.triggered_by("tests/nobody") == []
    durable.emit_event("tests/nobody", 1)
    assert not TriggerDelivery.objects.exists()


@pytest.mark.skipif(not ON_POSTGRES, reason="LISTEN/NOTIFY exists only on PostgreSQL")
def test_a_delivery_notifies_its_workflow_on_commit():
    from django_durable.store.notify import get_listener

    listener = get_listener()
    assert listener is not None
    notified = threading.Event()
    listener.subscribe(["t:tests.on_order"], notified.set)
    try:
        assert listener.connected.wait(5)
        notified.clear()  # connecting wakes every subscriber once
        with transaction.atomic():
            durable.emit_event("tests/order", 1)
            assert not notified.wait(0.3)  # not before the commit
        assert notified.wait(5)
    finally:
        listener.unsubscribe(["t:tests.on_order"], notified.set)
