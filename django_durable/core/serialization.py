"""JSON for everything a run stores: values round-trip, bad values fail early and clearly.

Values are JSON. The types Django's ``DjangoJSONEncoder`` knows (datetime, date, time,
timedelta, Decimal, UUID, lazy strings) are stored as small tagged objects so that they
come back as the same type on replay. A dict of exactly ``{"__durable__": <tag>, "v": ...}``
is therefore reserved.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import importlib
import json
import re
import traceback as tb
import uuid
from collections.abc import Callable
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime, parse_time
from django.utils.functional import Promise

from ..exceptions import PayloadTooLarge, SerializationError
from .conf import get_settings
from .names import SURROGATE

TAG = "__durable__"
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# A JSON string literal, and the brackets outside strings: how deep a document nests.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
# Tracebacks are for people; cap them so an error can always be stored.
MAX_TRACEBACK_CHARS = 32_000


def _encode(value: Any) -> Any:
    # Called by json for objects it does not know; the order matters (datetime is a date).
    if isinstance(value, dt.datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, Promise):
        return str(value)
    raise TypeError(f"{type(value).__module__}.{type(value).__qualname__} is not JSON")


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": parse_datetime,
    "date": parse_date,
    "time": parse_time,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
}


def _decode_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and TAG in obj and "v" in obj:
        decoder = _DECODERS.get(obj[TAG])
        if decoder is not None:
            return decoder(obj["v"])
    return obj


def dumps(value: Any, *, what: str, limit: int | None = None) -> str:
    """Encode ``value`` as JSON text, or raise ``SerializationError`` naming ``what``."""
    try:
        text = json.dumps(value, default=_encode, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"{what} cannot be stored as JSON: {exc}.") from exc
    # ensure_ascii is on, so the length in characters is the length in bytes.
    maximum = limit if limit is not None else get_settings().MAX_PAYLOAD_BYTES
    if len(text) > maximum:
        raise PayloadTooLarge(
            f"{what} is {len(text)} bytes of JSON, over the limit of {maximum} bytes "
            "(DJANGO_DURABLE['MAX_PAYLOAD_BYTES'])."
        )
    if "\\u0000" in text and _NUL.search(text):
        raise SerializationError(
            f"{what} cannot be stored as JSON: it contains the NUL character \\u0000, "
            "which PostgreSQL's jsonb refuses."
        )
    if "\\ud" in text and _has_lone_surrogate(value):
        raise SerializationError(
            f"{what} cannot be stored as JSON: it contains a lone surrogate (\\ud800 to "
            "\\udfff), which is not a character and which PostgreSQL refuses."
        )
    check_depth(text, what=what)
    return text


def depth(text: str) -> int:
    """Return how deep the JSON text nests lists and objects (0 for a scalar)."""
    opening = text.count("[") + text.count("{")
    if opening <= 1:
        return opening
    deepest = level = 0
    outside = _STRING.sub("", text) if '"' in text else text
    for bracket in _BRACKETS.findall(outside):
        level += 1 if bracket in "[{" else -1
        deepest = max(deepest, level)
    return deepest


def check_depth(text: str, *, what: str) -> None:
    """Raise ``SerializationError`` if the JSON text nests deeper than MAX_JSON_DEPTH."""
    limit = get_settings().MAX_JSON_DEPTH
    if text.count("[") + text.count("{") > limit and depth(text) > limit:
        raise SerializationError(
            f"{what} is nested deeper than {limit} levels of lists and objects "
            "(DJANGO_DURABLE['MAX_JSON_DEPTH'])."
        )


def _has_lone_surrogate(value: Any) -> bool:
    """Return whether a string in ``value`` (keys too) holds a surrogate code point."""
    if isinstance(value, str):
        return SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def loads(text: str | bytes | None) -> Any:
    """Decode JSON text written by :func:`dumps` (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        return json.loads(text, object_hook=_decode_object)
    except RecursionError:  # stored before MAX_JSON_DEPTH existed
        raise SerializationError("The stored JSON is nested too deeply to read.") from None


def to_document(value: Any, *, what: str, limit: int | None = None) -> Any:
    """Return ``value`` as the plain JSON document that a ``JSONField`` stores."""
    return json.loads(dumps(value, what=what, limit=limit))


def from_document(document: Any) -> Any:
    """Decode a plain JSON document read from a ``JSONField`` back into values.

    ``SerializationError`` for a document nested too deeply to walk (one stored before
    MAX_JSON_DEPTH existed), rather than a ``RecursionError`` in whoever reads it.
    """
    try:
        return _from_document(document)
    except RecursionError:
        raise SerializationError("The stored JSON is nested too deeply to read.") from None


def _from_document(document: Any) -> Any:
    if isinstance(document, dict):
        decoded = {key: _from_document(item) for key, item in document.items()}
        return _decode_object(decoded)
    if isinstance(document, list):
        return [_from_document(item) for item in document]
    return document


def qualified_name(cls: type) -> str:
    """Return ``module.QualName`` of a class (``builtins`` left out)."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def error_info(exc: BaseException, **extra: Any) -> dict[str, Any]:
    """Describe an exception as a JSON document: type, message, traceback, args."""
    formatted = "".join(tb.format_exception(exc))
    if len(formatted) > MAX_TRACEBACK_CHARS:
        formatted = "...\n" + formatted[-MAX_TRACEBACK_CHARS:]
    info: dict[str, Any] = {
        "type": qualified_name(type(exc)),
        "message": str(exc)[:MAX_TRACEBACK_CHARS],
        "traceback": getattr(exc, "__durable_traceback__", None) or formatted,
    }
    # Arguments that are not JSON make the error impossible to rebuild: StepFailed then.
    with contextlib.suppress(SerializationError):
        info["args"] = to_document(list(exc.args), what="exception arguments", limit=64_000)
    info.update(extra)
    return info


def rebuild_exception(info: dict[str, Any]) -> Exception | None:
    """Recreate the exception described by :func:`error_info`, or ``None`` if impossible."""
    if "args" not in info:
        return None
    module_name, _, qualname = str(info.get("type", "")).rpartition(".")
    try:
        target: Any = importlib.import_module(module_name or "builtins")
        for part in qualname.split("."):
            target = getattr(target, part)
        if not (isinstance(target, type) and issubclass(target, Exception)):
            return None
        exc = target(*from_document(info["args"]))
    except Exception:
        return None
    if not isinstance(exc, Exception) or str(exc) != info.get("message"):
        return None
    exc.__durable_traceback__ = info.get("traceback")  # type: ignore[attr-defined]
    return exc
