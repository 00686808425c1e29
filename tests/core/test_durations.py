"""Tests of ``django_durable/core/durations.py``: seconds or a timedelta, checked and worded."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

import pytest

from django_durable.core.durations import CENTURY, optional_seconds, to_seconds


def test_a_century_is_a_hundred_years_of_365_days_in_seconds():
    assert CENTURY == timedelta(days=36_500).total_seconds() == 3_153_600_000


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (2.5, 2.5),
        (Fraction(1, 4), 0.25),
        (timedelta(minutes=1, milliseconds=500), 60.5),
        (timedelta(0), 0.0),
    ],
)
def test_seconds_and_timedeltas_are_accepted_as_float_seconds(value, seconds):
    result = to_seconds(value, "A delay")
    assert result == seconds
    assert type(result) is float


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(True, "bool"), (False, "bool"), ("5", "str"), (None, "NoneType"), ([5], "list")],
)
def test_anything_else_is_a_type_error_naming_its_type(value, type_name):
    with pytest.raises(
        TypeError, match=rf"^A delay takes seconds or a timedelta, not {type_name}\.$"
    ):
        to_seconds(value, "A delay")


def test_nan_is_refused():
    with pytest.raises(ValueError, match=r"^A timeout must be a number of seconds, not NaN\.$"):
        to_seconds(float("nan"), "A timeout")


@pytest.mark.parametrize("value", [-1, -0.001, timedelta(seconds=-1), float("-inf")])
def test_a_negative_duration_is_refused_unless_negative_is_allowed(value):
    with pytest.raises(ValueError, match=r"^A delay cannot be negative\.$"):
        to_seconds(value, "A delay")
    expected = value.total_seconds() if isinstance(value, timedelta) else float(value)
    assert to_seconds(value, "A delay", negative=True) == expected


@pytest.mark.parametrize("value", [CENTURY, CENTURY + 1, timedelta(days=36_500), float("inf")])
def test_a_century_or_more_is_refused_under_the_century_limit(value):
    with pytest.raises(ValueError, match=r"^An age must be under 100 years\.$"):
        to_seconds(value, "An age", limit=CENTURY)


def test_just_under_the_limit_is_accepted():
    assert to_seconds(CENTURY - 1, "An age", limit=CENTURY) == CENTURY - 1
    assert to_seconds(9.5, "A lease", limit=10) == 9.5
    assert to_seconds(float("inf"), "A wait") == float("inf")  # no limit: no refusal


def test_another_limit_is_worded_in_seconds():
    with pytest.raises(ValueError, match=r"^A lease must be under 10 seconds\.$"):
        to_seconds(10, "A lease", limit=10)
    with pytest.raises(ValueError, match=r"^A lease must be under 2\.5 seconds\.$"):
        to_seconds(timedelta(seconds=3), "A lease", limit=2.5)


def test_optional_seconds_passes_none_through():
    assert optional_seconds(None, "A timeout") is None
    assert optional_seconds(None, "A timeout", limit=CENTURY) is None


def test_optional_seconds_checks_anything_else_as_to_seconds_does():
    assert optional_seconds(timedelta(seconds=3), "A timeout") == 3.0
    assert optional_seconds(7, "A timeout", limit=CENTURY) == 7.0
    with pytest.raises(ValueError, match=r"^A timeout must be under 100 years\.$"):
        optional_seconds(CENTURY, "A timeout", limit=CENTURY)
    with pytest.raises(ValueError, match=r"^A timeout cannot be negative\.$"):
        optional_seconds(-1, "A timeout")
    with pytest.raises(ValueError, match=r"^A timeout must be a number of seconds, not NaN\.$"):
        optional_seconds(float("nan"), "A timeout")
    with pytest.raises(TypeError, match=r"^A timeout takes seconds or a timedelta, not str\.$"):
        optional_seconds("3", "A timeout")
