"""Durations: seconds or a ``timedelta``, checked and worded the same way everywhere."""

from __future__ import annotations

from datetime import timedelta
from numbers import Real

# A century, in seconds: delays and ages must be shorter (a longer one is a typo, and
# would overflow the database's date arithmetic).
CENTURY = 100 * 365 * 86400


def to_seconds(
    value: float | timedelta,
    what: str,
    *,
    negative: bool = False,
    limit: float | None = None,
) -> float:
    """Return ``value`` (seconds, or a ``timedelta``) in seconds; raise naming ``what``.

    ``TypeError`` for anything else; ``ValueError`` for NaN, for a negative value (unless
    ``negative``) and for ``limit`` or more (``CENTURY`` reads "100 years").
    """
    if isinstance(value, bool) or not isinstance(value, Real | timedelta):
        raise TypeError(f"{what} takes seconds or a timedelta, not {type(value).__name__}.")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds != seconds:  # a wait of NaN seconds would never end
        raise ValueError(f"{what} must be a number of seconds, not NaN.")
    if seconds < 0 and not negative:
        raise ValueError(f"{what} cannot be negative.")
    if limit is not None and not seconds < limit:  # infinity too
        shown = "100 years" if limit == CENTURY else f"{limit:g} seconds"
        raise ValueError(f"{what} must be under {shown}.")
    return seconds


def optional_seconds(
    value: float | timedelta | None, what: str, *, limit: float | None = None
) -> float | None:
    """Return ``value`` in seconds as :func:`to_seconds` does, or ``None`` for ``None``."""
    return None if value is None else to_seconds(value, what, limit=limit)


def timeout_seconds(value: float | timedelta | None, what: str) -> float | None:
    """Return a timeout in seconds (more than zero, under a century), or ``None`` for none.

    Read by :func:`to_seconds`, so the errors are worded the same; zero is refused too,
    since a timeout of nothing would fail every attempt before it began.
    """
    if value is None:
        return None
    seconds = to_seconds(value, what, limit=CENTURY)
    if seconds == 0:
        raise ValueError(f"{what} must be more than zero seconds.")
    return seconds
