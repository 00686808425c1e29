"""Names of workflows, operations, events and topics: non-empty, short enough to store, and
made of characters a database stores (no NUL, no lone surrogate)."""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 200
# A surrogate code point: never a character of its own, refused by PostgreSQL and UTF-8.
SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, what: str) -> str:
    """Return ``text`` if a database can store it; ``ValueError`` for NUL or a surrogate."""
    if "\x00" in text:
        raise ValueError(f"{what} must not contain the NUL character.")
    if SURROGATE.search(text):
        raise ValueError(f"{what} must not contain a lone surrogate (\\ud800 to \\udfff).")
    return text


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it can name a workflow or an operation, else raise ``ValueError``."""
    article = "An" if what[:1] in "aeiou" else "A"
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        if not isinstance(name, str):
            shown = f"a value of type {type(name).__name__}"
        else:
            shown = repr(name[:60] + "…" if len(name) > 60 else name)
        raise ValueError(
            f"{article} {what} name must be a non-empty string of at most {MAX_NAME_LENGTH} "
            f"characters, not {shown}."
        )
    return check_text(name, f"{article} {what} name")
