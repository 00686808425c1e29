"""One event wakes more runs than a worker has slots: a real worker claims them all at once.

The worker polls once a minute here, longer than any wait in these tests: if it waited
for a poll between batches (or for one to notice the woken runs), the runs would not
finish in time. It claims a batch, and claims again as each run ends while runs are ready.
"""

from __future__ import annotations

import signal

import pytest

import django_durable as durable
from django_durable.models import Run, RunStatus, WorkerProcess
from tests.conftest import ON_POSTGRES, wait_for
from tests.testapp import workflows as wf

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RUNS = 12
SLOW_POLL = ("--concurrency", "2", "--poll-interval", "60")
WITHIN = 30  # seconds, half the poll interval


def start_waiting(worker_processes, name: str) -> tuple[list[durable.RunHandle], object]:
    """Start RUNS runs waiting for event ``name`` and a slow-polling worker; return both
    once every run waits (suspending them is a batch larger than its slots too)."""
    handles = [wf.waits_event.start(name) for _ in range(RUNS)]
    worker = worker_processes.start(*SLOW_POLL)
    wait_for(
        lambda: Run.objects.filter(status=RunStatus.WAITING).count() == RUNS,
        WITHIN,
        f"{RUNS} runs waiting\n{worker_processes.logs()}",
    )
    return handles, worker


def assert_all_woken(worker_processes, handles, event_id: int) -> None:
    for handle in handles:
        assert handle.result(timeout=WITHIN)["id"] == event_id, worker_processes.logs()


def test_a_worker_started_after_the_event_claims_the_woken_batch_without_polling(
    worker_processes,
):
    handles, first = start_waiting(worker_processes, "wake-all/later")
    worker_processes.signal(first, signal.SIGTERM)
    assert first.wait(WITHIN) == 0, worker_processes.logs()
    event_id = durable.emit_event("wake-all/later", "go")
    assert Run.objects.filter(status=RunStatus.PENDING).count() == RUNS
    worker_processes.start(*SLOW_POLL)  # its first round claims; the rest is its loop's
    assert_all_woken(worker_processes, handles, event_id)


@pytest.mark.skipif(
    not ON_POSTGRES, reason="SQLite has no NOTIFY: an idle worker hears of woken runs at its poll"
)
def test_an_idle_worker_claims_a_woken_batch_larger_than_its_slots_without_polling(
    worker_processes,
):
    handles, worker = start_waiting(worker_processes, "wake-all/now")
    wait_for(lambda: WorkerProcess.objects.filter(pid=worker.pid).exists(), message="worker up")
    event_id = durable.emit_event("wake-all/now", "go")
    assert_all_woken(worker_processes, handles, event_id)
