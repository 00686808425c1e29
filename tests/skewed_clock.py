"""A process whose clock is off: the test hook of tests/reliability/test_clock_skew.py.

A worker process started with ``DURABLE_TEST_CLOCK_SKEW=<seconds>`` (read by
tests/settings.py) calls :func:`install` before Django loads any app: from then on its
``time.time()``, ``time.time_ns()`` and ``django.utils.timezone.now()`` (which every
``auto_now`` field, model default and ``timezone.now()`` call goes through) are that many
seconds ahead (or behind, if negative), as on a host whose clock drifted. Its monotonic
clock is left alone: a drifting host still counts seconds right, and django-durable uses the
monotonic clock only for durations.

libfaketime (Debian's ``faketime``) would move the C library's clocks instead, but not
usably with this Python 3.11: with its monotonic clock faked, every timed wait on a lock or
an ``Event`` hangs (the worker's loop waits on one); with ``FAKETIME_DONT_FAKE_MONOTONIC=1``,
``time.sleep()`` fails with ``OSError: [Errno 22]``. django-durable reads the wall clock
only through the two functions moved here (tests/reliability/test_clock_skew.py checks that
its code calls no other), so moving them is enough.
"""

from __future__ import annotations

import time
from datetime import timedelta


def install(seconds: float) -> None:
    """Move this process's wall clock ``seconds`` forward (backward if negative)."""
    from django.utils import timezone

    real_time, real_time_ns, real_now = time.time, time.time_ns, timezone.now
    shift, shift_ns = timedelta(seconds=seconds), int(seconds * 1e9)
    time.time = lambda: real_time() + seconds
    time.time_ns = lambda: real_time_ns() + shift_ns
    timezone.now = lambda: real_now() + shift
