"""Task arguments and return values: plain JSON, or a clear error saying what is not.

Django's Tasks framework passes arguments and return values as JSON (``normalize_json``
turns tuples into lists and UTF-8 bytes into text, and refuses everything else). Runs
store richer values (datetimes, decimals...), so the backend checks here that a task gets
and gives only what any Tasks backend would accept, and says which value is not JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..core.serialization import TAG
from ..exceptions import SerializationError

_KINDS = "str, int, float, bool, None, and lists and dicts (with str keys) of them"


def plain(value: Any, *, what: str) -> Any:
    """Return ``value`` as plain JSON (tuples become lists), or raise ``SerializationError``.

    ``what`` names the value in the error, e.g. "The argument kwargs['when'] of task 'x'".
    """
    try:
        return _plain(value, what, "")
    except RecursionError:
        raise SerializationError(f"{what} is nested too deeply, or contains itself.") from None


def _plain(value: Any, what: str, path: str) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _refuse(what, path, f"the float {value!r}", "JSON has no NaN or infinity")
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse(what, path, "bytes that are not UTF-8 text", "") from None
    if isinstance(value, list | tuple):
        return [_plain(item, what, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        return _plain_dict(value, what, path)
    kind = f"a {type(value).__module__}.{type(value).__qualname__}".replace("a builtins.", "a ")
    hint = "convert it first (a datetime with .isoformat(), a model instance to its pk)"
    raise _refuse(what, path, kind, hint)


def _plain_dict(value: Mapping[Any, Any], what: str, path: str) -> dict[str, Any]:
    for key in value:
        if not isinstance(key, str):
            raise _refuse(what, path, f"a dict with the key {key!r}", "JSON keys are strings")
    if len(value) == 2 and TAG in value and "v" in value:
        raise _refuse(what, path, f"a dict of the keys {TAG!r} and 'v'", "django-durable keeps it")
    return {key: _plain(item, what, f"{path}[{key!r}]") for key, item in value.items()}


def _refuse(what: str, path: str, kind: str, hint: str) -> SerializationError:
    where = f" (at {path})" if path else ""
    detail = f"; {hint}" if hint else ""
    return SerializationError(
        f"{what}{where} is {kind}, which is not JSON: Django Tasks take and return JSON "
        f"only ({_KINDS}){detail}."
    )
