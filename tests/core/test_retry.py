"""Tests of ``django_durable/core/retry.py``: RetryPolicy's delays and what it retries."""

from __future__ import annotations

import pytest

import django_durable as durable
from django_durable.core.retry import RetryPolicy


def test_retry_policy_backoff_cap_and_jitter():
    policy = RetryPolicy(max_attempts=5, initial_delay=1, backoff=2, max_delay=5, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    jittered = RetryPolicy(initial_delay=10, jitter=0.5)
    assert all(5 <= jittered.delay(1) <= 15 for _ in range(50))
    assert policy.delay(1, durable.RetryableError(retry_after=42)) == 42


def test_retry_policy_decides_what_is_retried():
    policy = RetryPolicy(max_attempts=3, retry_on=(ConnectionError,))
    assert policy.should_retry(ConnectionError(), 1)
    assert not policy.should_retry(ConnectionError(), 3)  # out of attempts
    assert not policy.should_retry(ValueError(), 1)  # not in retry_on
    assert policy.should_retry(durable.RetryableError(), 1)  # always worth retrying
    assert not policy.should_retry(durable.FatalError(), 1)
    assert not policy.should_retry(durable.NonDeterministicWorkflow(), 1)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_delay": -1}, {"backoff": 0.5}, {"jitter": 2}],
)
def test_retry_policy_validates(kwargs):
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)
