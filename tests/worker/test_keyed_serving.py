"""A serving worker keeps its slots full of runs under a per-key limit without waiting for
its next poll: nothing NOTIFYs when a key gets room (a run of it ended) or when a claim
that did not look for keyed runs left some, so the worker must claim again itself.

The poll interval is a minute here: a run left to the next poll would finish after it.
"""

from __future__ import annotations

import time

import pytest

from django_durable.models import Run, RunStatus
from django_durable.worker.worker import Worker
from tests.conftest import ON_POSTGRES, serve
from tests.testapp import flow_workflows as fw

pytestmark = pytest.mark.django_db(transaction=True)

POLL = 60.0


def finish_all(handles: list, within: float) -> float:
    """Wait for every run; return how long the last one took (fails past ``within``)."""
    began = time.monotonic()
    for handle in handles:
        handle.result(timeout=max(0.1, within - (time.monotonic() - began)))
    return time.monotonic() - began


@pytest.mark.parametrize("keys", [8, 2])
def test_runs_of_many_keys_go_from_slot_to_slot_without_a_poll(keys):
    # 8 keys: more keys with room than slots (claims race for the look at them); 2 keys:
    # fewer (each key's next run becomes ready when its previous one ends).
    handles = [fw.flow_one.start(f"k{n % keys}") for n in range(24)]
    worker = Worker(concurrency=4, poll_interval=POLL)
    thread = serve(worker)
    try:
        took = finish_all(handles, within=POLL / 2)
    finally:
        worker.request_stop()
        thread.join(30)
    assert not thread.is_alive()
    assert Run.objects.filter(status=RunStatus.COMPLETED).count() == 24
    assert took < POLL / 2


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite has no NOTIFY: an idle worker polls")
def test_a_keyed_run_started_while_the_worker_idles_starts_without_a_poll():
    # The NOTIFY of its start wakes the loop, whose claim does not look for keyed runs
    # (the last one found none): it says one was left, and the loop claims again, looking.
    worker = Worker(concurrency=2, poll_interval=POLL)
    thread = serve(worker)
    try:
        first = fw.flow_one.start("a")
        finish_all([first], within=POLL / 2)
        time.sleep(0.5)  # the worker idles, its last claim having found nothing
        took = finish_all([fw.flow_one.start("b")], within=POLL / 2)
    finally:
        worker.request_stop()
        thread.join(30)
    assert not thread.is_alive()
    assert took < POLL / 2
