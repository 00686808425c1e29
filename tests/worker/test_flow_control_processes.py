"""Per-key concurrency limits with real worker processes: across processes, and a worker
killed while it holds a key's slot."""

from __future__ import annotations

import signal
import time
from collections import defaultdict

import pytest
from django.db.models import Count

from django_durable.models import Run, RunStatus
from tests.conftest import wait_for
from tests.testapp import flow_workflows as fw
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--lease", "1", "--poll-interval", "0.1")


def most_inside_per_key() -> dict[str, int]:
    """Return, per key, the most step bodies that were inside at once (enter/leave rows)."""
    events = sorted(
        Execution.objects.filter(label__regex=r"^(enter|leave):").values_list("created_at", "label")
    )
    inside: dict[str, int] = defaultdict(int)
    most: dict[str, int] = defaultdict(int)
    overall = top = 0
    for _, label in events:
        kind, key = label.split(":", 1)
        step = 1 if kind == "enter" else -1
        inside[key] += step
        overall += step
        most[key] = max(most[key], inside[key])
        top = max(top, overall)
    return {**most, "*": top}


def test_a_key_limit_holds_across_worker_processes(worker_processes):
    for _ in range(6):
        fw.flow_one.start("a", 0.2)
        fw.flow_one.start("b", 0.2)
        fw.flow_pair.start("c", 0.2)
    for _ in range(3):
        worker_processes.start("--concurrency", "4", *FAST)
    wait_for(
        lambda: Run.objects.filter(status=RunStatus.COMPLETED).count() == 18,
        90,
        "18 runs",
    )
    most = most_inside_per_key()
    pids = set(Execution.objects.values_list("pid", flat=True))
    print(f"\n[flow] 18 runs over {len(pids)} worker processes; at most at once: {most}")
    assert (most["a"], most["b"]) == (1, 1), worker_processes.logs()
    assert most["c"] <= 2
    assert most["*"] >= 3  # the keys ran side by side: the limit is per key, not global
    assert Execution.objects.filter(label__startswith="enter:").count() == 18


def test_a_killed_worker_holds_its_key_until_its_lease_expires(worker_processes):
    first = fw.flow_one.start("k", 0, first_pause=60)
    second = fw.flow_one.start("k", 0)
    doomed = worker_processes.start("--concurrency", "2", *FAST)
    wait_for(
        lambda: Execution.objects.filter(run_id=first.id, label="enter:k").exists(),
        30,
        "the first run inside its step",
    )
    time.sleep(1.5)  # heartbeats keep its lease: the second run of the key must wait
    assert not Execution.objects.filter(run_id=second.id).exists()
    assert Run.objects.get(pk=second.id).status == RunStatus.PENDING
    worker_processes.signal(doomed, signal.SIGKILL)
    killed_at = time.monotonic()
    worker_processes.start("--concurrency", "2", *FAST)
    wait_for(
        lambda: Run.objects.filter(status=RunStatus.COMPLETED).count() == 2,
        60,
        "both runs completed",
    )
    print(f"\n[flow kill] both runs done {time.monotonic() - killed_at:.1f}s after the kill")
    entered = dict(
        Execution.objects.filter(label="enter:k").values_list("run_id").annotate(n=Count("id"))
    )
    assert entered == {first.id: 2, second.id: 1}, worker_processes.logs()
    assert first.result() == second.result() == "k"
