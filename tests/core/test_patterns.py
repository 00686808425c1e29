"""Event-name patterns of trigger_on_event: the grammar, and the index that matches names."""

from __future__ import annotations

import pytest

from django_durable.core.patterns import PatternIndex, check_pattern, is_pattern

INDEX = PatternIndex(
    [
        ("orders/created", "exact"),
        ("orders/*", "one"),
        ("orders/**", "any"),
        ("*/created", "any-created"),
        ("shop/*/orders/**", "deep"),
        ("orders/*", "one-again"),
    ]
)


@pytest.mark.parametrize(
    ("name", "matched"),
    [
        ("orders/created", ["exact", "any", "one", "one-again", "any-created"]),
        ("orders/eu/created", ["any"]),  # "*" is one segment exactly
        ("orders/eu/de/created", ["any"]),
        ("orders", []),  # "**" is one segment or more, never zero
        ("customers/created", ["any-created"]),
        ("shop/eu/orders", []),
        ("shop/eu/orders/1", ["deep"]),
        ("shop/eu/orders/1/paid", ["deep"]),
        ("shop/orders/1", []),  # the "*" after shop needs a segment of its own
        ("orders/", []),  # an empty segment: only an exact trigger matches it
        ("orders//created", []),
        ("/orders/created", []),
        ("", []),
        ("Orders/created", ["any-created"]),  # segments match case-sensitively
        ("orders.created", []),  # only "/" separates segments
    ],
)
def test_a_name_matches_exact_triggers_and_patterns(name, matched):
    assert sorted(INDEX.match(name)) == sorted(matched)


def test_an_exact_trigger_still_matches_a_name_with_empty_segments():
    index = PatternIndex([("orders/", "exact"), ("orders/**", "any")])
    assert index.match("orders/") == ["exact"]


def test_names_without_a_star_are_exact_and_take_no_tree():
    index = PatternIndex([("orders/created", 1), ("orders/paid", 2)])
    assert index.match("orders/created") == [1]
    assert index._root is None  # matching is one dict look-up
    assert not is_pattern("orders/created") and is_pattern("orders/*")


@pytest.mark.parametrize(
    "good", ["orders/*", "orders/**", "*/created", "orders/*/created", "a/*/*/**", "orders"]
)
def test_valid_patterns_are_returned_as_they_are(good):
    assert check_pattern(good) == good


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("orders/*x", r"the segment '\*x' mixes a wildcard with text"),
        ("orders/x**", r"the segment 'x\*\*' mixes a wildcard with text"),
        ("orders/***", "mixes a wildcard with text"),
        ("**", "has no literal segment"),
        ("*", "has no literal segment"),
        ("*/**", "has no literal segment"),
        ("orders//*", "has an empty segment"),
        ("/orders/*", "has an empty segment"),
        ("orders/*/", "has an empty segment"),
        ("orders/**/created", r'"\*\*" must be the last segment'),
        ("", "non-empty string"),
    ],
)
def test_invalid_patterns_are_refused_saying_why(bad, message):
    with pytest.raises(ValueError, match=message):
        check_pattern(bad)
