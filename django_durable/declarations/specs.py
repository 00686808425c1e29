"""What ``@durable.workflow(schedule=..., trigger_on_event=...)`` declares, validated."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from django.conf import settings as django_settings

from ..core.cron import check_cron, check_time_zone
from ..core.durations import optional_seconds
from ..core.patterns import check_pattern
from ..core.statuses import MissedTicks


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSpec:
    """``@durable.workflow(schedule=...)``: a cron expression, its time zone, missed ticks."""

    cron: str
    time_zone: str
    missed_ticks: str

    @classmethod
    def build(cls, cron: str, time_zone: str | None, missed_ticks: str) -> ScheduleSpec:
        """Validate the options and return the spec (``ValueError`` if they are wrong)."""
        cron = check_cron(cron)  # the same rule as the admin's: five fields or a macro
        zone = time_zone or django_settings.TIME_ZONE or "UTC"
        check_time_zone(zone)
        if missed_ticks not in MissedTicks.values:
            raise ValueError(f"missed_ticks= must be one of {', '.join(MissedTicks.values)}.")
        return cls(cron=cron, time_zone=zone, missed_ticks=missed_ticks)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TriggerSpec:
    """``@durable.workflow(trigger_on_event=...)``: which events, in batches of what size."""

    # An event name, or a pattern of names ("orders/*", "orders/**": core.patterns).
    event: str
    batch_size: int
    # Seconds a partial batch waits for more events before it starts a run anyway.
    batch_timeout: float

    @classmethod
    def build(
        cls, event: str, batch_size: int, batch_timeout: float | timedelta | None
    ) -> TriggerSpec:
        """Validate the options and return the spec (``ValueError`` if they are wrong)."""
        check_pattern(event)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size= must be a whole number of at least 1.")
        if batch_size > 1 and batch_timeout is None:
            raise ValueError(
                "batch_size= > 1 needs batch_timeout=: how long a partial batch waits."
            )
        return cls(
            event=event,
            batch_size=batch_size,
            batch_timeout=optional_seconds(batch_timeout, "batch_timeout") or 0.0,
        )
