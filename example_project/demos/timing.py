"""Seconds, not hours: the scenarios' timers are scaled so that the demo takes a minute.

A scenario writes the durations its seed's documents use (``scaled(days=1)``) and runs them
at ``settings.EXAMPLE_TIME_SCALE`` times real speed. The default, 1/43,200, makes a day two
seconds and an hour a twelfth of one; set ``DURABLE_EXAMPLE_TIME_SCALE=1`` for real time.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

# The shortest timer the demo uses: shorter ones would only measure the worker's polling.
SHORTEST = timedelta(milliseconds=100)


def scale() -> float:
    """Return the factor from real time to the demo's time."""
    return float(getattr(settings, "EXAMPLE_TIME_SCALE", 1 / 43_200))


def scaled(**duration: float) -> timedelta:
    """Return ``timedelta(**duration)`` at the demo's speed (at least 0.1 s when scaled)."""
    real = timedelta(**duration)
    factor = scale()
    return real if factor >= 1 else max(real * factor, SHORTEST)
