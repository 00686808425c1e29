"""Soak (long tier, ``make chaos``): minutes of steady load on four worker processes.

The load never stops: batches of step runs, and of runs that receive the two messages
sent with them, started whenever fewer than ``BACKLOG`` are active. Every ``SAMPLE_S`` seconds the
test reads each worker's resident memory (``/proc/<pid>/status``) and its connections
(``pg_stat_activity`` by application name). After a warm-up (imports, caches, every
thread's first connection), it checks:

- no worker's connections grow: the most it holds in the last third of the soak is no
  more than the most it held in the first third, and never more than its threads
  (concurrency + main loop + heartbeat + listener);
- no worker's RSS grows by 10% or more from the end of the warm-up to the end;
- every run started completed, and every message was received.

``DURABLE_SOAK_SECONDS`` sets the length (600 by default, as the issue asks).
"""

from __future__ import annotations

import os
import time

import pytest
from django.db import transaction

import django_durable as durable
from django_durable.models import Message, Run, RunStatus
from tests.reliability.conftest import (
    ON_POSTGRES,
    WorkerPool,
    backends_per_application,
    report,
    rss_kib,
)
from tests.testapp import reliability_workflows as rw

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not ON_POSTGRES, reason="counts connections in pg_stat_activity"),
]

WORKERS = 4
CONCURRENCY = 4
SECONDS = float(os.environ.get("DURABLE_SOAK_SECONDS", "600"))
WARM_UP = min(60.0, SECONDS / 5)
SAMPLE_S = 5.0
BACKLOG = 200  # runs kept active
BATCH = 50
GROWTH_LIMIT = 0.10


def feed() -> tuple[int, int]:
    """Start a batch of runs, and the messages its receivers wait for; return the counts."""
    started = sent = 0
    with transaction.atomic():
        for number in range(BATCH):
            if number % 10 == 0:
                run_id = rw.sm_receives.start(2).id
                for message in range(2):
                    durable.send(run_id, f"ping-{message}", topic="go")
                    sent += 1
            else:
                rw.steps.start(3, 0.0)
            started += 1
    return started, sent


def test_soak_connections_and_memory_stay_flat(worker_pool):
    pool: WorkerPool = worker_pool(
        WORKERS, "--concurrency", str(CONCURRENCY), "--poll-interval", "0.2"
    ).start()
    pool.wait_registered()
    names = dict(pool.app_names)
    runs = messages = 0
    samples: list[dict[int, tuple[int, int]]] = []  # pid -> (rss KiB, connections)
    began = time.monotonic()
    next_sample = began + WARM_UP
    while time.monotonic() - began < SECONDS:
        assert len(pool.alive) == WORKERS, pool.logs()  # nothing died under steady load
        if Run.objects.active().count() < BACKLOG:
            started, sent = feed()
            runs, messages = runs + started, messages + sent
        if time.monotonic() >= next_sample:
            connections = backends_per_application(pool.name)
            samples.append(
                {pid: (rss_kib(pid) or 0, connections.get(name, 0)) for pid, name in names.items()}
            )
            next_sample += SAMPLE_S
        time.sleep(0.2)
    # Drain: everything started finishes.
    deadline = time.monotonic() + 300
    while Run.objects.active().exists():
        assert time.monotonic() < deadline, pool.logs()
        time.sleep(0.5)
    assert pool.stop() == [0] * WORKERS, pool.logs()

    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    growth = {
        pid: samples[-1][pid][0] / samples[0][pid][0] - 1 for pid in names if samples[0][pid][0]
    }
    most_first = {pid: max(sample[pid][1] for sample in first) for pid in names}
    most_last = {pid: max(sample[pid][1] for sample in last) for pid in names}
    statuses = Run.objects.values_list("status", flat=True)
    figures = {
        "seconds": SECONDS,
        "workers": WORKERS,
        "runs": runs,
        "messages": messages,
        "samples": len(samples),
        "rss_mib_start": round(sum(samples[0][pid][0] for pid in names) / WORKERS / 1024, 1),
        "rss_mib_end": round(sum(samples[-1][pid][0] for pid in names) / WORKERS / 1024, 1),
        "rss_growth_max_pct": round(max(growth.values()) * 100, 2),
        "connections_first_third": sorted(most_first.values()),
        "connections_last_third": sorted(most_last.values()),
        "not_completed": sum(1 for status in statuses if status != RunStatus.COMPLETED),
        "messages_unread": Message.objects.filter(consumed_at__isnull=True).count(),
    }
    report("soak", **figures)
    assert len(samples) >= 3, figures
    assert figures["not_completed"] == 0 and figures["messages_unread"] == 0, figures
    for pid in names:
        assert most_last[pid] <= most_first[pid] <= CONCURRENCY + 3, figures
        assert most_first[pid] > 0, figures  # the sampling sees the worker's connections
    assert max(growth.values()) < GROWTH_LIMIT, figures
