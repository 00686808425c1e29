"""Messages, events and streams with real worker processes, killed and racing."""

from __future__ import annotations

import signal
import time

import pytest
from django.db.models import Count

import django_durable as durable
from django_durable.models import Message, Run, RunStatus, Step, StreamItem, WorkerProcess
from tests.conftest import ON_POSTGRES, wait_for
from tests.testapp import workflows as wf

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--lease", "1", "--poll-interval", "0.1")


def test_1000_messages_across_4_workers_none_lost_none_taken_twice(worker_processes):
    runs = [wf.receives.start(50, topic="work") for _ in range(20)]
    procs = [worker_processes.start("--concurrency", "4", *FAST) for _ in range(4)]
    sent: dict[str, list[int]] = {run.id: [] for run in runs}
    for number in range(50):  # interleaved across runs while the workers consume
        for run in runs:
            durable.send(run.id, number, topic="work")
            sent[run.id].append(number)
    wait_for(lambda: not Run.objects.active().exists(), 120, "all runs finished")
    results = {run.id: run.result(timeout=1) for run in runs}
    consumed = Message.objects.filter(consumed_at__isnull=False).count()
    per_position = (
        Message.objects.values("run_id", "consumed_position")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    print(
        f"\n[messages] sent=1000 consumed={consumed} double-consumed={per_position} "
        f"recv records={Step.objects.filter(kind='recv').count()} workers={len(procs)}"
    )
    # FIFO per (run, topic), nothing lost, nothing taken twice.
    assert results == sent, worker_processes.logs()
    assert consumed == 1000
    assert per_position == 0
    assert Message.objects.filter(consumed_at__isnull=True).count() == 0
    assert Step.objects.filter(kind="recv", status="completed").count() == 1000


def test_stream_offsets_stay_dense_when_the_writer_is_sigkilled(worker_processes):
    handle = wf.slow_stream.start(12, pause=0.15)
    first = worker_processes.start(*FAST)
    wait_for(lambda: StreamItem.objects.filter(run_id=handle.id).count() >= 4, message="4 items")
    worker_processes.signal(first, signal.SIGKILL)
    first.wait(5)
    at_kill = StreamItem.objects.filter(run_id=handle.id).count()
    worker_processes.start(*FAST)
    followed = list(durable.read_stream(handle.id, "out", follow=True))
    assert handle.result(timeout=30) == 12, worker_processes.logs()
    rows = list(
        StreamItem.objects.filter(run_id=handle.id)
        .order_by("offset")
        .values_list("offset", "closes")
    )
    print(f"\n[stream] {at_kill} items at the kill; {len(rows)} rows after; read {followed}")
    assert rows == [(n, False) for n in range(12)] + [(12, True)]
    assert followed == list(range(12))


@pytest.mark.skipif(not ON_POSTGRES, reason="LISTEN/NOTIFY exists only on PostgreSQL")
def test_an_event_wakes_a_waiting_run_through_notify(worker_processes):
    handle = wf.waits_event.start("approve:notify")
    proc = worker_processes.start("--poll-interval", "30")
    wait_for(lambda: Run.objects.get(pk=handle.id).status == RunStatus.WAITING, message="waiting")
    time.sleep(0.5)
    started = time.monotonic()
    durable.emit_event("approve:notify", "yes")
    assert handle.result(timeout=10)["data"] == "yes", worker_processes.logs()
    latency = time.monotonic() - started
    print(f"\n[event notify] emit to result in {latency * 1000:.0f} ms (poll interval 30 s)")
    assert latency < 10
    assert WorkerProcess.objects.filter(pid=proc.pid).exists()


def test_a_lost_notification_is_caught_by_polling(worker_processes):
    # This worker listens on another channel: it never hears a notification.
    handle = wf.receives.start(1)
    worker_processes.start(
        "--poll-interval", "0.5", extra_env={"DURABLE_TEST_NOTIFY_CHANNEL": "nobody_sends_here"}
    )
    wait_for(lambda: Run.objects.get(pk=handle.id).status == RunStatus.WAITING, message="waiting")
    started = time.monotonic()
    durable.send(handle.id, "polled")
    assert handle.result(timeout=15) == ["polled"], worker_processes.logs()
    latency = time.monotonic() - started
    print(f"\n[polling] send to result in {latency * 1000:.0f} ms without notifications")
