"""Queue limits: concurrency across workers, and rate limits."""

from __future__ import annotations

import pytest

from django_durable import Worker
from django_durable.models import Run, RunStatus
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_concurrency_limit_holds_across_workers():
    for _ in range(3):
        wf.exclusive.start(0)
    first, second = Worker(queues=["single"], concurrency=4), Worker(queues=["single"])
    assert len(first.claim(4)) == 1  # the queue allows one running run
    assert second.claim(4) == []  # another worker gets nothing while it runs
    Run.objects.filter(status=RunStatus.RUNNING).update(status=RunStatus.COMPLETED)
    assert len(second.claim(4)) == 1


def test_a_rate_limit_counts_runs_started_in_the_window():
    for _ in range(5):
        wf.rated.start()
    worker = Worker(queues=["rated"], concurrency=10)
    assert len(worker.claim(10)) == 2  # "2/s"
    assert Worker(queues=["rated"]).claim(10) == []


def test_queues_without_limits_are_claimed_together_with_limited_ones():
    wf.exclusive.start(0)
    wf.exclusive.start(0)
    wf.add.start(1, 1)
    claims = Worker(queues=["default", "single"], concurrency=5).claim(5)
    assert sorted(c.workflow_name for c in claims) == ["tests.add", "tests.exclusive"]
