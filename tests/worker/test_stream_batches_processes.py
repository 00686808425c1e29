"""Batched stream writes (``ctx.write_stream_many``) whose worker process is SIGKILLed."""

from __future__ import annotations

import signal
import threading

import pytest
from django.db import connection

import django_durable as durable
from django_durable.models import Step, StreamItem
from tests.conftest import wait_for
from tests.testapp import stream_workflows as sw

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--lease", "1", "--poll-interval", "0.1")
BATCHES, SIZE = 8, 25


def follow(run_id: str, into: list) -> None:
    try:
        into.extend(durable.read_stream(run_id, "out", follow=True, timeout=120))
    finally:
        connection.close()


def test_a_killed_writer_leaves_whole_batches_and_its_replay_writes_none_again(
    worker_processes,
):
    handle = sw.slow_batches.start(BATCHES, SIZE, pause=0.15)
    followed: list = []
    reader = threading.Thread(target=follow, args=(handle.id, followed))
    reader.start()
    first = worker_processes.start(*FAST)
    items = StreamItem.objects.filter(run_id=handle.id)
    wait_for(lambda: items.count() >= 2 * SIZE, message="two batches")
    worker_processes.signal(first, signal.SIGKILL)
    first.wait(5)
    at_kill = items.count()
    worker_processes.start(*FAST)
    batches = [[index * SIZE, (index + 1) * SIZE] for index in range(BATCHES)]
    # What the calls returned, the replayed ones included: the offsets they wrote.
    assert handle.result(timeout=60) == batches, worker_processes.logs()
    reader.join(60)
    print(f"\n[stream batches] {at_kill} items at the kill; the follower read {len(followed)}")
    # A batch is written whole or not at all, even by a process killed at any moment.
    assert at_kill % SIZE == 0
    rows = list(items.order_by("offset").values_list("offset", "closes"))
    assert rows == [(n, False) for n in range(BATCHES * SIZE)] + [(BATCHES * SIZE, True)]
    # The second worker replayed the batches the first had written: their records are the
    # ones first written, and each batch's items carry its record's position.
    records = Step.objects.filter(run_id=handle.id, kind="stream_many").order_by("position")
    assert [record.result for record in records] == batches
    for index, record in enumerate(records):
        offsets = items.filter(position=record.position).values_list("offset", flat=True)
        assert sorted(offsets) == list(range(index * SIZE, (index + 1) * SIZE))
    assert followed == list(range(BATCHES * SIZE))  # each item once, in order
