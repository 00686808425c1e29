"""Child runs and limited queues with real worker processes: limits, cancel cascades, fan-out."""

from __future__ import annotations

import json
import time

import pytest

import django_durable as durable
from django_durable.models import Run, RunStatus
from tests.conftest import ON_POSTGRES, wait_for
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--lease", "1", "--poll-interval", "0.1")


def test_a_concurrency_1_queue_never_runs_two_at_once(worker_processes):
    for _ in range(8):
        wf.exclusive.start(0.15)
    for _ in range(3):
        worker_processes.start("--queue", "single", "--concurrency", "4", *FAST)
    wait_for(lambda: Run.objects.filter(status=RunStatus.COMPLETED).count() == 8, 60, "8 runs")
    events = sorted(
        Execution.objects.filter(label__in=("enter", "leave")).values_list(
            "created_at", "label", "pid"
        )
    )
    inside = most = 0
    for _, label, _ in events:
        inside += 1 if label == "enter" else -1
        most = max(most, inside)
    pids = {pid for _, _, pid in events}
    print(f"\n[queue] 8 runs over {len(pids)} worker processes; at most {most} at once")
    assert most == 1, events
    assert len(events) == 16


def test_cancel_cascades_three_levels_deep_across_workers(worker_processes):
    root = wf.nested.start(3)
    for _ in range(2):
        worker_processes.start(*FAST)
    wait_for(lambda: Run.objects.filter(depth=3, status=RunStatus.WAITING).exists(), 30, "leaf")
    durable.cancel(root.id, "tear down")
    wait_for(lambda: not Run.objects.active().exists(), 30, "all finished")
    statuses = dict(Run.objects.values_list("depth", "status"))
    print(f"\n[cascade] {statuses}")
    assert statuses == {depth: RunStatus.CANCELLED for depth in range(4)}


def test_a_waiting_parent_frees_its_only_worker_slot(worker_processes):
    parent = wf.parent_fanout.start(5)
    worker_processes.start("--concurrency", "1", *FAST)
    assert parent.result(timeout=60) == [0, 2, 4, 6, 8], worker_processes.logs()


@pytest.mark.skipif(not ON_POSTGRES, reason="LISTEN/NOTIFY exists only on PostgreSQL")
def test_cancelling_a_running_run_reaches_it_through_notify(worker_processes):
    # A heartbeat every 10 minutes, and a minute of steps: only the notification can bring
    # the cancel before the run ends, however slow the machine (no time bound to assert).
    handle = wf.slow_steps.start(600, 0.1)
    rare = json.dumps({"LEASE_SECONDS": 1800, "HEARTBEAT_INTERVAL": 600})
    worker_processes.start("--lease", "1800", extra_env={"DURABLE_TEST_SETTINGS": rare})
    wait_for(lambda: Execution.objects.filter(run_id=handle.id).count() >= 2, message="running")
    started = time.monotonic()
    durable.cancel(handle.id, "now")
    wait_for(lambda: Run.objects.get(pk=handle.id).is_terminal, 120, "cancelled")
    print(f"\n[cancel notify] stopped {time.monotonic() - started:.2f}s after cancel()")
    assert Run.objects.get(pk=handle.id).status == RunStatus.CANCELLED, worker_processes.logs()
    assert Execution.objects.filter(run_id=handle.id).count() < 600  # stopped between steps
