"""Tests of ``django_durable/core/cron.py``: cron ticks, time zones and daylight saving time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from django_durable.core.cron import check_cron, check_time_zone, latest_tick, next_tick

PARIS = "Europe/Paris"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_next_tick_is_the_first_tick_strictly_after_in_utc():
    assert next_tick("*/15 * * * *", "UTC", utc(2025, 1, 1, 12, 7, 30)) == utc(2025, 1, 1, 12, 15)
    assert next_tick("*/15 * * * *", "UTC", utc(2025, 1, 1, 12, 15)) == utc(2025, 1, 1, 12, 30)
    assert next_tick("@daily", "UTC", utc(2025, 1, 1, 12)) == utc(2025, 1, 2)
    assert next_tick("* * * * *", "UTC", utc(2025, 1, 1)).tzinfo == UTC
    assert latest_tick("*/15 * * * *", "UTC", utc(2025, 1, 1, 12, 15)) == utc(2025, 1, 1, 12, 15)
    assert latest_tick("*/15 * * * *", "UTC", utc(2025, 1, 1, 12, 29)) == utc(2025, 1, 1, 12, 15)


def test_the_cron_is_read_in_its_time_zone_and_follows_daylight_saving_time():
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_tick("0 9 * * *", PARIS, utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 7)
    assert next_tick("0 9 * * *", PARIS, utc(2025, 10, 25, 12)) == utc(2025, 10, 26, 8)
    # 02:30 does not exist on 30 March 2025 in Paris: the tick is at 03:00 CEST.
    assert next_tick("30 2 * * *", PARIS, utc(2025, 3, 29, 12)) == utc(2025, 3, 30, 1)


def test_a_time_of_day_ticks_once_when_clocks_go_back_an_interval_twice():
    # 26 October 2025: Paris goes from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    first = next_tick("30 2 * * *", PARIS, utc(2025, 10, 25, 12))
    assert first == utc(2025, 10, 26, 0, 30)
    assert next_tick("30 2 * * *", PARIS, first) == utc(2025, 10, 27, 1, 30)
    assert latest_tick("30 2 * * *", PARIS, utc(2025, 10, 26, 2)) == first
    # Every half hour is real time: both passes of the repeated hour tick.
    tick, ticks = utc(2025, 10, 26, 0), []
    for _ in range(4):
        tick = next_tick("*/30 * * * *", PARIS, tick)
        ticks.append(tick)
    assert ticks == [utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 1), *ticks[2:]]
    assert ticks[2:] == [utc(2025, 10, 26, 1, 30), utc(2025, 10, 26, 2)]


@pytest.mark.parametrize(
    "cron", ["61 * * * *", "* * * *", "* * * * * *", "every minute", "", "@reboot"]
)
def test_an_invalid_cron_expression_is_rejected(cron):
    with pytest.raises(ValueError, match="is not a cron expression"):
        check_cron(cron)


def test_an_unknown_time_zone_and_a_cron_that_never_ticks_are_rejected():
    for zone in ("Mars/Olympus_Mons", "", "../etc/passwd"):
        with pytest.raises(ValueError, match="is not a known time zone"):
            check_time_zone(zone)
    with pytest.raises(ValueError, match="is not a known time zone"):
        next_tick("* * * * *", "Mars/Olympus_Mons", utc(2025, 1, 1))
    with pytest.raises(ValueError, match="never ticks: no date matches it"):
        next_tick("0 0 30 2 *", "UTC", utc(2025, 1, 1))  # 30 February
