"""What ``@durable.workflow(schedule=..., trigger_on_event=..., concurrency_key=...)``
declares, validated."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings

from ..core.cron import check_cron, check_time_zone
from ..core.durations import CENTURY, optional_seconds
from ..core.patterns import check_pattern
from ..core.statuses import MissedTicks
from ..exceptions import FlowKeyError


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


# The longest flow key the run's column holds.
FLOW_KEY_LENGTH = 255
# The largest per-key limit (the run's column is a PositiveSmallIntegerField).
FLOW_LIMIT_MAX = 32767
ON_CONFLICT = ("return", "queue")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FlowSpec:
    """``@durable.workflow(concurrency_key=..., singleton_key=..., debounce=...)``.

    One key function per workflow, called with the run's input at start: the key is
    stored on the run. ``limit`` is how many runs of one key may run at once (``None``:
    any number); ``singleton`` is set for ``singleton_key=... on_conflict="return"``,
    where a start returns the unfinished run of its key; ``debounce`` is the window in
    seconds within which starts of one key collapse into the pending run.
    """

    key: Callable[..., Any]
    limit: int | None = None
    singleton: bool = False
    debounce: float | None = None

    @classmethod
    def build(
        cls,
        *,
        concurrency_key: Callable[..., Any] | None,
        concurrency_limit: int | None,
        singleton_key: Callable[..., Any] | None,
        on_conflict: str,
        debounce: float | timedelta | None,
        debounce_key: Callable[..., Any] | None,
    ) -> FlowSpec | None:
        """Validate the options and return the spec, or ``None`` if none was given."""
        if concurrency_key is not None and singleton_key is not None:
            raise ValueError(
                "Give concurrency_key= or singleton_key=, not both: a singleton is a "
                "concurrency limit of 1 per key."
            )
        if concurrency_limit is not None and concurrency_key is None:
            raise ValueError("concurrency_limit= needs concurrency_key=: the limit is per key.")
        if on_conflict not in ON_CONFLICT:
            raise ValueError('on_conflict= must be "return" or "queue".')
        singleton = singleton_key is not None and on_conflict == "return"
        window = _window(debounce, debounce_key, singleton)
        key = concurrency_key or singleton_key
        if debounce_key is not None and key is not None and debounce_key is not key:
            raise ValueError(
                "A workflow has one flow key: with concurrency_key= or singleton_key=, "
                "debounce= uses that key; leave debounce_key= out."
            )
        key = key or debounce_key or (_whole_workflow if window is not None else None)
        if key is None:
            return None
        if not callable(key):
            raise TypeError(
                "A flow key (concurrency_key=, singleton_key=, debounce_key=) "
                "is a function of the workflow's input."
            )
        limit = 1 if singleton_key is not None else concurrency_limit
        if concurrency_key is not None:
            limit = _check_limit(1 if limit is None else limit)
        return cls(key=key, limit=limit, singleton=singleton, debounce=window)

    def key_of(self, workflow: str, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
        """Return the flow key of a run started with this input (``FlowKeyError`` if the
        key function raises or returns no text that fits)."""
        try:
            key = self.key(*args, **kwargs)
        except Exception as exc:
            raise FlowKeyError(
                f"The flow key function of workflow {workflow!r} raised "
                f"{type(exc).__name__}: {exc}. It is called with the run's input "
                "(the workflow's arguments without ctx); no run was started."
            ) from exc
        if not isinstance(key, str) or not key or len(key) > FLOW_KEY_LENGTH:
            raise FlowKeyError(
                f"The flow key function of workflow {workflow!r} returned {key!r}: a key must "
                f"be a non-empty str of at most {FLOW_KEY_LENGTH} characters (str(...) an id); "
                "no run was started."
            )
        return key


def _window(
    debounce: float | timedelta | None, debounce_key: Callable[..., Any] | None, singleton: bool
) -> float | None:
    """Return the debounce window in seconds (``None``: no debounce)."""
    if debounce is None:
        if debounce_key is not None:
            raise ValueError("debounce_key= needs debounce=: the window in seconds.")
        return None
    window = optional_seconds(debounce, "debounce=", limit=CENTURY)
    if not window:
        raise ValueError("debounce= must be more than zero seconds.")
    if singleton:
        raise ValueError(
            'debounce= and singleton_key= with on_conflict="return" do not mix: a start '
            "would both give its input to the pending run and return the unfinished one; "
            'use on_conflict="queue".'
        )
    return window


def _check_limit(limit: Any) -> int:
    """Return a valid ``concurrency_limit=`` (``ValueError`` if it is not)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= FLOW_LIMIT_MAX:
        raise ValueError(f"concurrency_limit= must be a whole number from 1 to {FLOW_LIMIT_MAX}.")
    return limit


def _whole_workflow(*args: Any, **kwargs: Any) -> str:
    """The key of ``debounce=`` without a key: every start of the workflow shares it."""
    return "*"
