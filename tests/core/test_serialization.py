"""JSON that round-trips, and clear errors for what cannot be stored."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.utils.translation import gettext_lazy

from django_durable.core import serialization
from django_durable.exceptions import PayloadTooLarge, SerializationError


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        2.5,
        "text ü ✓",
        [1, "a", None],
        {"nested": {"list": [1, 2]}},
        dt.datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        dt.date(2030, 5, 6),
        dt.time(7, 8, 9),
        dt.timedelta(days=2, seconds=5, microseconds=7),
        Decimal("10.010"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        {"when": [dt.date(2030, 1, 1)], "amount": Decimal("1")},
    ],
)
def test_values_round_trip_with_their_types(value):
    decoded = serialization.loads(serialization.dumps(value, what="v"))
    assert decoded == value
    assert type(decoded) is type(value)


def test_documents_for_json_fields_round_trip_too():
    value = {"at": dt.datetime(2030, 1, 1, tzinfo=dt.UTC), "n": [Decimal("2.5")]}
    document = serialization.to_document(value, what="v")
    assert document["at"] == {"__durable__": "datetime", "v": "2030-01-01T00:00:00+00:00"}
    assert serialization.from_document(document) == value


def test_tuples_become_lists_and_lazy_strings_become_strings():
    assert serialization.loads(serialization.dumps((1, 2), what="v")) == [1, 2]
    assert serialization.loads(serialization.dumps(gettext_lazy("Hello"), what="v")) == "Hello"


def test_a_dict_that_only_looks_tagged_is_left_alone():
    value = {"__durable__": "not-a-tag", "v": 1}
    assert serialization.loads(serialization.dumps(value, what="v")) == value
    three_keys = {"__durable__": "date", "v": "2030-01-01", "x": 1}
    assert serialization.loads(serialization.dumps(three_keys, what="v")) == three_keys


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (object(), "is not JSON"),
        ({1, 2}, "set is not JSON"),
        (float("nan"), "Out of range float values"),
        (b"bytes", "bytes is not JSON"),
        ({(1, 2): "tuple key"}, "keys must be"),
    ],
)
def test_values_that_are_not_json_are_a_clear_error_naming_what(value, reason):
    with pytest.raises(
        SerializationError, match=f"The result of step 'x' cannot be stored as JSON: .*{reason}"
    ):
        serialization.dumps(value, what="The result of step 'x'")


def test_nul_characters_are_refused_but_an_escaped_backslash_u_is_not():
    with pytest.raises(SerializationError, match="NUL character"):
        serialization.dumps({"k": "a\x00b"}, what="v")
    text = serialization.dumps("a\\u0000b", what="v")  # a backslash, then "u0000"
    assert serialization.loads(text) == "a\\u0000b"


def test_payloads_over_the_limit_are_refused(settings):
    settings.DJANGO_DURABLE = {"MAX_PAYLOAD_BYTES": 50}
    serialization.dumps("x" * 40, what="v")
    with pytest.raises(PayloadTooLarge, match="v is 62 bytes of JSON, over the limit of 50 bytes"):
        serialization.dumps("x" * 60, what="v")
    # Non-ASCII characters count as the bytes they are escaped to.
    with pytest.raises(PayloadTooLarge):
        serialization.dumps("é" * 10, what="v")


class Rebuildable(Exception):
    pass


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


def test_error_info_describes_an_exception_and_rebuilds_it():
    try:
        raise Rebuildable("no stock", 3)
    except Rebuildable as exc:
        info = serialization.error_info(exc, step="reserve")
    assert info["type"] == "tests.core.test_serialization.Rebuildable"
    assert info["message"] == "('no stock', 3)"
    assert info["step"] == "reserve"
    assert 'raise Rebuildable("no stock", 3)' in info["traceback"]
    rebuilt = serialization.rebuild_exception(info)
    assert isinstance(rebuilt, Rebuildable)
    assert rebuilt.args == ("no stock", 3)


def test_exceptions_that_cannot_be_rebuilt_give_none():
    local = type("Local", (Exception,), {})
    assert serialization.rebuild_exception(serialization.error_info(local("x"))) is None
    # args that do not reproduce the message: the constructor differs from the args
    assert serialization.rebuild_exception(serialization.error_info(NeedsTwoArgs(1, 2))) is None
    assert serialization.rebuild_exception(serialization.error_info(ValueError(object()))) is None
    assert serialization.rebuild_exception({"type": "os.path", "message": "", "args": []}) is None


def test_long_messages_and_tracebacks_are_capped():
    try:
        raise ValueError("x" * 50_000)
    except ValueError as exc:
        info = serialization.error_info(exc)
    assert len(info["message"]) == serialization.MAX_TRACEBACK_CHARS
    assert len(info["traceback"]) <= serialization.MAX_TRACEBACK_CHARS + 4
    assert info["traceback"].startswith("...\n")
    # The error document still fits in the default payload limit.
    serialization.dumps(info, what="error")
