"""``ctx.write_stream_many``: many stream items with one checkpoint, all or nothing."""

from __future__ import annotations

import datetime as dt
import json
import threading

import psycopg
import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

import django_durable as durable
from django_durable import Worker
from django_durable.core.conf import get_settings
from django_durable.engine import execution
from django_durable.models import Run, RunStatus, Step, StreamItem
from django_durable.store import checkpoints
from django_durable.store.records import Row
from django_durable.testing import run_all
from tests.api.test_api import BASE, make_user
from tests.conftest import ON_POSTGRES
from tests.testapp import stream_workflows as sw

pytestmark = pytest.mark.django_db(transaction=True)


def rows(handle: durable.RunHandle) -> list[tuple[int, object, bool]]:
    """Return the run's stream rows: (offset, value, closes), by offset."""
    items = StreamItem.objects.filter(run_id=handle.id, key="out").order_by("offset")
    return [(item.offset, item.get_value(), item.closes) for item in items]


def test_a_batch_takes_consecutive_offsets_between_single_items():
    handle = sw.batches.start([3, 0, 2])
    run_all()
    assert handle.result(timeout=1) == {"first": 0, "batches": [[1, 2, 3], [], [4, 5]], "last": 6}
    items = [{"batch": 0, "item": i} for i in range(3)] + [{"batch": 2, "item": i} for i in (0, 1)]
    assert rows(handle) == [
        (0, "first", False),
        *((offset, item, False) for offset, item in zip(range(1, 6), items, strict=True)),
        (6, "last", False),
        (7, None, True),
    ]
    # One record per call, the empty one included; a batch's items carry its position.
    records = list(
        Step.objects.filter(run_id=handle.id).order_by("position").values_list("kind", "result")
    )
    assert records == [
        ("stream", 0),
        ("stream_many", [1, 4]),
        ("stream_many", [4, 4]),
        ("stream_many", [4, 6]),
        ("stream", 6),
        ("close_stream", 7),
    ]
    positions = StreamItem.objects.filter(run_id=handle.id, offset__in=[1, 3, 4, 5])
    assert sorted(positions.values_list("offset", "position")) == [(1, 1), (3, 1), (4, 3), (5, 3)]
    assert list(durable.read_stream(handle.id, "out", offset=2)) == [*items[1:], "last"]


def test_replay_returns_the_recorded_offsets_and_writes_nothing_again(worker):
    handle = sw.batch_sleep_batch.start(3)
    worker.run_once()  # to the sleep: the first batch and the empty one are written
    assert handle.refresh().status == RunStatus.WAITING
    assert [offset for offset, _, _ in rows(handle)] == [0, 1, 2]
    run_all()
    # The result comes from the second execution, which replayed the first two calls.
    assert handle.result(timeout=1) == {"before": [0, 1, 2], "empty": [3, 3], "after": [3, 4, 5]}
    assert rows(handle) == [(n, n, False) for n in range(6)] + [(6, None, True)]
    assert Step.objects.filter(run_id=handle.id, kind="stream_many").count() == 3


def test_the_async_twin_writes_and_replays_the_same_way(worker):
    handle = sw.async_batches.start(2)
    worker.run_once()
    assert handle.refresh().status == RunStatus.WAITING
    run_all()
    assert handle.result(timeout=1) == {"before": [0, 1], "empty": [2, 2], "after": [2, 3]}
    assert rows(handle) == [
        (0, "a0", False),
        (1, "a1", False),
        (2, "b0", False),
        (3, "b1", False),
        (4, None, True),
    ]

    async def read() -> list:
        return [value async for value in durable.aread_stream(handle.id, "out", follow=True)]

    assert async_to_sync(read)() == ["a0", "a1", "b0", "b1"]


# --- errors: nothing written, the same errors as write_stream ----------------------------


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        (
            "unstorable",
            "SerializationError",
            "An item of stream 'out' (number 1 of the batch) cannot be stored as JSON",
        ),
        (
            "oversized",
            "PayloadTooLarge",
            "An item of stream 'out' (number 1 of the batch) is 2002 bytes of JSON, over the "
            "limit of 1000 bytes",
        ),
        ("text", "TypeError", "takes an iterable of items, not a str"),
        ("mapping", "TypeError", "takes an iterable of items, not a dict"),
        (
            "over_the_count",
            "ValueError",
            "write_stream_many('out', ...) writes at most 10,000 items in one commit, and was "
            "given more: write them with several calls.",
        ),
        (
            "too_much_in_all",
            "PayloadTooLarge",
            "The items of stream 'out' for one write_stream_many are 18040 bytes of JSON, over "
            "the limit of 16000 bytes (16 times DJANGO_DURABLE['MAX_PAYLOAD_BYTES'])",
        ),
    ],
)
def test_a_bad_item_writes_nothing_of_its_batch(settings, kind, error, message):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_PAYLOAD_BYTES": 1000}
    handle = sw.bad_batch.start(kind)
    run_all()
    result = handle.result(timeout=1)
    assert result["error"]["type"] == error
    assert message in result["error"]["message"]
    # Nothing of the bad batch: the good batch after it continues at offset 1.
    assert result["after"] == [1, 2]
    assert rows(handle) == [(0, 0, False), (1, 1, False), (2, 2, False)]
    assert Step.objects.filter(run_id=handle.id, kind="stream_many").count() == 1


def test_a_batch_to_a_closed_stream_fails_the_run_even_an_empty_one():
    for size in (3, 0):
        handle = sw.batch_after_close.start(size)
        run_all()
        with pytest.raises(durable.WorkflowFailed, match=r"Stream 'out' of run .* is closed"):
            handle.result(timeout=1)
        assert rows(handle) == [(0, 0, False), (1, 1, False), (2, None, True)]


# --- fencing: a worker that lost the run writes nothing -------------------------------------


def test_a_worker_that_lost_its_lease_writes_no_item_of_its_batch():
    handle = sw.batches.start([5])
    old, new = Worker(), Worker()
    [stale] = old.claim(1)
    Run.objects.filter(pk=handle.id).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    new.maintain()  # takes the run back
    [fresh] = new.claim(1)
    # The store refuses the stale claim's batch outright...
    row = {"key": "out", "value": "1", "closes": False, "position": 0}
    batch = [
        Row("durable_stream", {**row, "offset": n}, json=frozenset({"value"})) for n in range(3)
    ]
    assert not checkpoints.record_step_with_rows(
        stale, position=0, kind="stream_many", name="out", result="[0, 3]", rows=batch
    )
    assert not StreamItem.objects.exists()
    assert not Step.objects.exists()
    # ... and the stale execution abandons at its first write, leaving nothing behind.
    assert execution.execute(stale).kind == "abandoned"
    assert not StreamItem.objects.exists()
    new.process(fresh)
    assert handle.result(timeout=1)["batches"] == [[1, 2, 3, 4, 5]]
    assert [offset for offset, _, _ in rows(handle)] == list(range(8))


# --- readers -------------------------------------------------------------------------------


def _drain_in_thread() -> None:
    try:
        run_all()
    finally:
        connection.close()


def test_a_follower_sees_every_item_of_every_batch_in_order():
    handle = sw.batch_sleep_batch.start(50)
    thread = threading.Thread(target=_drain_in_thread)
    thread.start()
    try:
        seen = list(durable.read_stream(handle.id, "out", follow=True, timeout=60))
    finally:
        thread.join()
    assert seen == list(range(100))


def test_the_http_page_and_server_sent_events_show_a_batch_in_order():
    ada = make_user("ada")
    handle = sw.batches.using(owner=ada).start([3])
    run_all()
    api = APIClient()
    api.force_authenticate(ada)
    page = api.get(f"{BASE}/runs/{handle.id}/streams/out/?offset=1").json()
    assert [item["offset"] for item in page["items"]] == [1, 2, 3, 4]
    assert [item["value"] for item in page["items"]][:3] == [
        {"batch": 0, "item": n} for n in range(3)
    ]
    assert (page["next_offset"], page["closed"]) == (5, True)
    response = api.get(f"{BASE}/runs/{handle.id}/streams/out/", HTTP_ACCEPT="text/event-stream")
    body = b"".join(response.streaming_content).decode()
    events = [event.splitlines() for event in body.split("\n\n") if event.startswith("id:")]
    assert [event[0] for event in events] == [f"id: {n}" for n in range(5)]
    data = [json.loads(event[1].removeprefix("data: ")) for event in events]
    assert data == ["first", *({"batch": 0, "item": n} for n in range(3)), "last"]
    assert body.rstrip().endswith("event: close\ndata: {}")


# --- PostgreSQL: one statement, one NOTIFY --------------------------------------------------


def _claimed_batch(size: int):
    handle = sw.batches.start([size])
    [claim] = Worker().claim(1)
    row = {"key": "out", "closes": False, "position": 0}
    batch = [
        Row(
            "durable_stream",
            {**row, "offset": n, "value": json.dumps(n)},
            json=frozenset({"value"}),
            notify=f"s:{handle.id}",
        )
        for n in range(size)
    ]
    return handle, claim, batch


@pytest.mark.skipif(not ON_POSTGRES, reason="the single statement is PostgreSQL's path")
def test_on_postgresql_a_batch_is_one_statement(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "PREPARE_STATEMENTS": False}
    handle, claim, batch = _claimed_batch(100)
    with CaptureQueriesContext(connection) as queries:
        assert checkpoints.record_step_with_rows(
            claim, position=0, kind="stream_many", name="out", result="[0, 100]", rows=batch
        )
    assert len(queries) == 1, [query["sql"][:80] for query in queries]
    assert [offset for offset, _, _ in rows(handle)] == list(range(100))


@pytest.mark.skipif(not ON_POSTGRES, reason="LISTEN/NOTIFY exists only on PostgreSQL")
def test_on_postgresql_a_batch_notifies_its_stream():
    handle, claim, batch = _claimed_batch(5)
    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"], autocommit=True
    ) as listener:
        listener.execute(f"LISTEN {get_settings().NOTIFY_CHANNEL}")
        assert checkpoints.record_step_with_rows(
            claim, position=0, kind="stream_many", name="out", result="[0, 5]", rows=batch
        )
        payloads = [note.payload for note in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == [f"s:{handle.id}"]
