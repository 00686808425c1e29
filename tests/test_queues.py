"""Queue limits: concurrency across workers, and rate limits."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_durable.conf import get_settings
from django_durable.models import Run, RunStatus
from django_durable.queues import QueueLimits, limits_of, parse_rate
from django_durable.worker import Worker
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100/m", (100, 60)), ("5/10s", (5, 10)), ("1000/h", (1000, 3600)), ("3 / d", (3, 86400))],
)
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "0/s", "10", "10/w", "ten/s"])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError, match="is not a rate"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"q": {"concurrency": 0}}, "must be a whole number >= 1"),
        ({"q": {"rate_limit": "lots"}}, "is not a rate"),
        ({"q": {"burst": 3}}, "unknown keys: burst"),
        ({"q": 3}, "must be a dict"),
    ],
)
def test_bad_queue_settings_are_improperly_configured(settings, queues, message):
    settings.DJANGO_DURABLE = {"QUEUES": queues}
    with pytest.raises(ImproperlyConfigured, match=message):
        get_settings()


def test_limits_of():
    assert limits_of("single") == QueueLimits(concurrency=1)
    assert limits_of("rated") == QueueLimits(rate=2, per_seconds=1)
    assert limits_of("default") is None
