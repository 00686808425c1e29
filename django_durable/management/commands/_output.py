"""How ``manage.py durable`` prints: tables, facts, JSON, and values made safe for a terminal.

Every value a user or a workflow chose (names, keys, messages, data, errors, reasons) reaches
the terminal through :func:`clean`: ``table()`` and ``facts()`` call it on every cell, and the
handlers on what they put in a sentence. Control characters, ANSI escape sequences, line
and paragraph separators and the bidirectional overrides are written as the escapes JSON
uses (``\\n``, ``\\u001b``), so that the text output reads like the ``--json`` output, which
escapes them by itself (``ensure_ascii``) and round-trips every value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

# A table cell is cut to this many characters ("…" ends a cut one); --json has it all.
CELL_CHARS = 80
# A fact of ``runs show`` (one line each) is cut to this many characters.
FACT_CHARS = 500

# C0 and C1 controls (ESC starts ANSI sequences), DEL, the line and paragraph separators,
# and the marks and overrides that reorder text on screen (CVE-2021-42574).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def clean(value: Any, width: int | None = None) -> str:
    """Return ``value`` as one line of text safe to print, cut to ``width`` characters."""
    text = _UNSAFE.sub(_escape, str(value))
    if width is not None and len(text) > width:
        return text[: width - 1] + "…"
    return text


def clean_lines(text: str) -> str:
    """Return ``text`` safe to print, keeping its lines (a traceback, an error message)."""
    return "\n".join(clean(line) for line in text.rstrip("\n").split("\n"))


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    return _SHORT.get(char) or f"\\u{ord(char):04x}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return rows as aligned columns under their headers, each cell made safe and cut."""
    cells = [list(headers), *([clean(cell, CELL_CHARS) for cell in row] for row in rows)]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(line.rstrip() for line in lines)


def facts(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    """Return ``Label:   value`` lines, the values made safe and cut."""
    return [f"{label + ':':<17}{clean(value, FACT_CHARS)}" for label, value in pairs]


def indent(text: str) -> str:
    """Return ``text`` indented by two spaces, each line made safe."""
    return "\n".join(f"  {line}" for line in clean_lines(text).split("\n"))


def dumps(value: Any) -> str:
    """Return ``value`` as indented JSON (ASCII: every control character is escaped)."""
    return json.dumps(value, indent=2, cls=DjangoJSONEncoder)


def one_line(value: Any) -> str:
    """Return ``value`` as JSON on one line, safe to print, non-ASCII letters kept."""
    return clean(json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False))


def when(value: datetime | None) -> str:
    """Return a time in the current time zone, to the second ("-" for none)."""
    if value is None:
        return "-"
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return local.strftime("%Y-%m-%d %H:%M:%S")


def plural(count: int, word: str) -> str:
    """Return ``1 run``, ``2 runs``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
