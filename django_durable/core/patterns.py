"""Event-name patterns of ``trigger_on_event``, checked, and an index that matches names.

An event name is made of segments separated by ``/``: ``orders/eu/created`` has three. In
a pattern, a segment ``*`` matches exactly one segment of a name, a last segment ``**``
matches one or more, and every other segment matches itself: ``orders/*`` matches
``orders/created`` only, ``orders/**`` matches ``orders/created`` and ``orders/eu/created``
but not ``orders`` (``**`` does not match zero segments). A wildcard matches non-empty
segments only, so a name with an empty segment (``orders//created``, ``orders/``) matches
no pattern, only an exact trigger.

A trigger without ``*`` is an exact name, matched as before: one dictionary look-up. The
patterns sit in a tree of segments, walked once per emitted name, so the cost of matching
depends on the name's depth, not on how many workflows trigger on events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from .names import check_name

SEPARATOR = "/"
ONE = "*"  # one segment
REST = "**"  # one or more segments, as the last segment only

T = TypeVar("T")


def is_pattern(text: str) -> bool:
    """Return whether a ``trigger_on_event`` is a pattern (it has a ``*``), not a name."""
    return ONE in text


def check_pattern(text: str) -> str:
    """Return ``text`` if it is an event name or a valid pattern, else raise ``ValueError``."""
    check_name(text, "trigger event")
    if not is_pattern(text):
        return text
    segments = text.split(SEPARATOR)
    shown = f"trigger_on_event={text!r}"
    if "" in segments:
        raise ValueError(
            f'{shown} has an empty segment (a leading, trailing or doubled "/"): separate '
            'segments with one "/", as in "orders/*/created".'
        )
    for index, segment in enumerate(segments):
        if ONE in segment and segment not in (ONE, REST):
            raise ValueError(
                f"{shown}: the segment {segment!r} mixes a wildcard with text. A wildcard is "
                'a whole segment: "*" for exactly one segment, "**" for one or more.'
            )
        if segment == REST and index != len(segments) - 1:
            raise ValueError(
                f'{shown}: "**" must be the last segment, as in "orders/**". For one '
                'segment in the middle, use "*": "orders/*/created".'
            )
    if all(segment in (ONE, REST) for segment in segments):
        raise ValueError(
            f"{shown} has no literal segment: it would match events of any name, the "
            'events runs wait for included. Name what it is about, as in "orders/**".'
        )
    return text


class _Node(Generic[T]):
    """The patterns below one literal prefix, by their next segment."""

    __slots__ = ("ends", "literal", "one", "rest")

    def __init__(self) -> None:
        self.literal: dict[str, _Node[T]] = {}
        self.one: _Node[T] | None = None  # a "*" segment
        self.ends: list[T] = []  # patterns that end here
        self.rest: list[T] = []  # patterns whose "**" follows here


class PatternIndex(Generic[T]):
    """Values (workflows) by the name or the pattern they trigger on; :meth:`match` finds them.

    Built once from checked names and patterns (:func:`check_pattern`), then read only.
    """

    def __init__(self, entries: Iterable[tuple[str, T]]) -> None:
        self._exact: dict[str, list[T]] = {}
        self._root: _Node[T] | None = None  # None: no patterns, names only
        for text, value in entries:
            if is_pattern(text):
                self._add(text.split(SEPARATOR), value)
            else:
                self._exact.setdefault(text, []).append(value)

    def _add(self, segments: list[str], value: T) -> None:
        node = self._root = self._root or _Node()
        for segment in segments:
            if segment == REST:
                node.rest.append(value)
                return
            if segment == ONE:
                node.one = node = node.one or _Node()
            else:
                node = node.literal.setdefault(segment, _Node())
        node.ends.append(value)

    def match(self, name: str) -> list[T]:
        """Return the values whose name is ``name`` or whose pattern matches it."""
        found = list(self._exact.get(name, ()))
        if self._root is not None and _matchable(name):
            _walk(self._root, name.split(SEPARATOR), 0, found)
        return found


def _matchable(name: str) -> bool:
    """Return whether a pattern can match ``name``: it has no empty segment."""
    edges = name.startswith(SEPARATOR) or name.endswith(SEPARATOR)
    return bool(name) and not edges and SEPARATOR * 2 not in name


def _walk(node: _Node[T], segments: list[str], index: int, found: list[T]) -> None:
    """Add to ``found`` what the patterns below ``node`` match of ``segments[index:]``."""
    if index == len(segments):
        found.extend(node.ends)
        return
    found.extend(node.rest)  # one or more segments are left: "**" takes them all
    child = node.literal.get(segments[index])
    if child is not None:
        _walk(child, segments, index + 1, found)
    if node.one is not None:
        _walk(node.one, segments, index + 1, found)
