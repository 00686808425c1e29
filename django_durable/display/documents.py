"""Stored JSON documents for people: indented, previewed, cut, and read in part from SQL."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import TextField
from django.db.models.functions import Cast, Left

from ..core import serialization
from ..exceptions import SerializationError

# Shown in place of a document stored nested too deeply to decode (before MAX_JSON_DEPTH).
UNREADABLE = "(stored nested too deeply to show)"


# The admin reads at most this many characters of a stored JSON document: a megabyte
# value or message must not be loaded (and rendered) to show a table row.
VALUE_CHARS = 2000


PREVIEW_CHARS = 80


def pretty_json(document: Any) -> str:
    """Return a stored JSON document decoded and indented for reading."""
    try:
        decoded = serialization.from_document(document)
        return json.dumps(decoded, indent=2, cls=DjangoJSONEncoder)
    except (SerializationError, RecursionError):
        return UNREADABLE


def preview(document: Any, width: int = 60) -> str:
    """Return a stored JSON document on one line, cut to ``width`` characters."""
    if document is None:
        return ""
    try:
        text = json.dumps(serialization.from_document(document), cls=DjangoJSONEncoder)
    except (SerializationError, RecursionError):
        return UNREADABLE
    return text if len(text) <= width else text[: width - 1] + "…"


def error_summary(error: dict[str, Any] | None) -> str:
    """Return ``Type: message`` of a stored error document ("" when there is none)."""
    if not error:
        return ""
    return f"{error.get('type', 'Error')}: {error.get('message', '')}"


def error_details(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return an error document without its traceback, which is shown on its own."""
    if error is None:
        return None
    return {key: value for key, value in error.items() if key != "traceback"}


def json_head(field: str, chars: int) -> Left:
    """Return an expression: the JSON of ``field`` as text, cut one character past ``chars``.

    Read with :func:`head_document`, it tells a complete document from a cut one.
    """
    return Left(Cast(field, TextField()), chars + 1)


def head_document(head: str | None, chars: int) -> tuple[bool, Any]:
    """Return ``(True, document)`` for a complete JSON head, ``(False, None)`` for a cut one."""
    if head is None:
        return True, None
    if len(head) > chars:
        return False, None
    try:
        return True, json.loads(head)
    except RecursionError:  # short, but nested past what json.loads can walk
        return False, None


def head_pretty(head: str | None, chars: int = VALUE_CHARS) -> str:
    """Return a JSON head indented for reading, or its first ``chars`` characters and "…"."""
    complete, document = head_document(head, chars)
    if complete:
        text = pretty_json(document)
        return text if len(text) <= chars else text[: chars - 1] + "…"
    assert head is not None
    return head[: chars - 1] + "…"


def head_preview(head: str | None, width: int = PREVIEW_CHARS) -> str:
    """Return a JSON head on one line, cut to ``width`` characters."""
    if head is None:
        return ""
    complete, document = head_document(head, width)
    if complete:
        return "null" if document is None else preview(document, width)
    return head[: width - 1] + "…"
