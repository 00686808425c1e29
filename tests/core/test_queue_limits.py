"""Tests of ``django_durable/core/queue_limits.py``: rates, and the QUEUES setting read by conf."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_durable.core.conf import get_settings, queue_limits
from django_durable.core.queue_limits import QueueLimits, parse_rate


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


def test_queue_limits():
    assert queue_limits("single") == QueueLimits(concurrency=1)
    assert queue_limits("rated") == QueueLimits(rate=2, per_seconds=1)
    assert queue_limits("default") is None
