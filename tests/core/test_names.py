"""Tests of ``django_durable/core/names.py``: check_name and how it shows a bad name."""

from __future__ import annotations

import pytest

from django_durable.core.names import check_name


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("x" * 201, "not '" + "x" * 60 + "…'."),
        ("", "not ''."),
        (42, "not a value of type int."),
    ],
)
def test_a_bad_name_is_shown_shortened_and_quoted(name, shown):
    with pytest.raises(ValueError, match=r"^A step name must be a non-empty string") as refused:
        check_name(name, "step")
    assert str(refused.value).endswith(shown)
