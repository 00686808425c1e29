"""Cron expressions: checking them, and their ticks in a time zone (daylight saving included)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

# The cron macros with a fixed time of day (@hourly is the one without).
FIXED_TIME_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight"}
)
MICROSECOND = timedelta(microseconds=1)


def check_cron(cron: str) -> str:
    """Return ``cron`` if it is five cron fields (or a macro like @daily); else ``ValueError``."""
    text = cron.strip() if isinstance(cron, str) else ""
    five_fields = len(text.split()) == 5 or text.lower() in FIXED_TIME_MACROS | {"@hourly"}
    if not five_fields or not croniter.is_valid(text):
        raise ValueError(
            f"{cron!r} is not a cron expression: give five fields, minute hour day-of-month "
            "month day-of-week (*/15 * * * *), or @hourly, @daily, @weekly, @monthly, @yearly."
        )
    return text


def check_time_zone(time_zone: str) -> ZoneInfo:
    """Return the zone named ``time_zone`` (an IANA name); else ``ValueError``."""
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"{time_zone!r} is not a known time zone: give an IANA name such as "
            "'UTC' or 'Europe/Paris'."
        ) from None


def _fixed_time(cron: str) -> bool:
    """Return whether ``cron`` names times of day: no ``*`` in its minute or hour field.

    As cron(8) does, such a schedule ticks once in the hour that the clocks repeat when
    daylight saving time ends; one with a ``*`` there ticks by the real clock, so in both
    passes of that hour.
    """
    text = cron.strip().lower()
    if text.startswith("@"):
        return text in FIXED_TIME_MACROS
    minute, hour = text.split()[:2]
    return not (minute.startswith("*") or hour.startswith("*"))


def _second_pass(tick: datetime) -> bool:
    """Return whether ``tick`` is the second time its wall-clock time occurs that day."""
    return tick.fold == 1 and tick.replace(fold=0).utcoffset() != tick.utcoffset()


def iter_ticks(
    cron: str, time_zone: str, start: datetime, *, backwards: bool = False
) -> Iterator[datetime]:
    """Yield the ticks strictly after ``start`` (before it if ``backwards``), in UTC.

    The expression is read in ``time_zone``; croniter handles daylight saving time: a
    time skipped when clocks go forward ticks at the first time after the gap.
    """
    zone = check_time_zone(time_zone)
    try:
        walk = croniter(cron, start.astimezone(zone))
        skip_repeats = _fixed_time(cron)
    except (CroniterError, ValueError) as exc:
        raise ValueError(f"{cron!r} is not a cron expression ({exc}).") from None
    step = walk.get_prev if backwards else walk.get_next
    while True:
        try:
            tick = step(datetime)
        except CroniterBadDateError:
            raise ValueError(f"{cron!r} never ticks: no date matches it.") from None
        if not (skip_repeats and _second_pass(tick)):
            yield tick.astimezone(UTC)


def next_tick(cron: str, time_zone: str, after: datetime) -> datetime:
    """Return the first tick of ``cron`` (read in ``time_zone``) after ``after``, in UTC.

    Raises ``ValueError`` for an invalid expression or zone, or one that never ticks.
    """
    return next(iter_ticks(cron, time_zone, after))


def latest_tick(cron: str, time_zone: str, at: datetime) -> datetime:
    """Return the last tick of ``cron`` (read in ``time_zone``) at or before ``at``, in UTC."""
    return next(iter_ticks(cron, time_zone, at + MICROSECOND, backwards=True))
