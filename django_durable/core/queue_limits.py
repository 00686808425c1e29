"""Queue limits as configured: how many runs of a queue may run at once, and start per period.

``DJANGO_DURABLE["QUEUES"] = {"emails": {"concurrency": 5, "rate_limit": "100/m"}}``. This
module reads the option; the store claims under it (``store.queues``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclasses.dataclass(frozen=True, slots=True)
class QueueLimits:
    """The limits of one queue (``None``: no limit of that kind)."""

    concurrency: int | None = None
    rate: int | None = None  # runs started ...
    per_seconds: float | None = None  # ... per this many seconds


def parse_rate(text: str) -> tuple[int, float]:
    """Parse ``"100/m"`` (or ``"5/10s"``) into (count, seconds)."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"{text!r} is not a rate like '100/m', '5/10s' or '1000/h'.")
    count, every, unit = int(match.group(1)), match.group(2), match.group(3)
    return count, (int(every) if every else 1) * _UNIT_SECONDS[unit]


def parse_limits(name: str, options: Mapping[str, Any]) -> QueueLimits:
    """Validate one queue's options (``ImproperlyConfigured`` if wrong)."""
    where = f"DJANGO_DURABLE['QUEUES'][{name!r}]"
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict.")
    unknown = sorted(set(options) - {"concurrency", "rate_limit"})
    if unknown:
        raise ImproperlyConfigured(f"{where} has unknown keys: {', '.join(unknown)}.")
    concurrency = options.get("concurrency")
    if concurrency is not None and not (isinstance(concurrency, int) and concurrency >= 1):
        raise ImproperlyConfigured(f"{where}['concurrency'] must be a whole number >= 1.")
    rate = per = None
    if options.get("rate_limit") is not None:
        try:
            rate, per = parse_rate(options["rate_limit"])
        except ValueError as exc:
            raise ImproperlyConfigured(f"{where}['rate_limit']: {exc}") from exc
    return QueueLimits(concurrency=concurrency, rate=rate, per_seconds=per)
