"""What ``manage.py durable`` reads: run ids, durations, and JSON inline or from a file.

Every argument that takes JSON has a ``--...-file PATH`` twin (``-`` is standard input),
mutually exclusive with it. Bad input is a ``CommandError`` that names the argument.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

import django_durable as durable
from django_durable.models import Run

_DURATION = re.compile(r"(\d+(?:\.\d*)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
# An error quotes at most this much of the JSON it could not read.
_QUOTED_CHARS = 200
STDIN = "-"


def parse_duration(text: str) -> timedelta:
    """Return ``90s``, ``15m``, ``12h``, ``7d`` or a plain number of seconds as a timedelta."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise CommandError(
            f"Invalid duration {text!r}: give seconds, or a number followed by s, m, h or d "
            "(90s, 15m, 12h, 7d)."
        )
    try:
        return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    except OverflowError:
        raise CommandError(f"Invalid duration {text!r}: too long.") from None


def option_error(exc: Exception, *options: str) -> CommandError:
    """Return a ``CommandError`` of ``exc`` that names ``options`` as the command spells them.

    The Python API names its parameters (``batch_size=``); the shell user typed
    ``--batch-size``.
    """
    message = str(exc)
    for option in options:
        message = re.sub(rf"\b{option}=", f"--{option.replace('_', '-')}", message)
    return CommandError(message)


def run_id(text: str) -> str:
    """Return a run id in its canonical form, or raise a ``CommandError``."""
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise CommandError(f"{text!r} is not a run id (run ids are UUIDs).") from None


def get_run(text: str) -> Run:
    """Return the run with the id ``text``, or raise a ``CommandError``."""
    try:
        return durable.get_run(run_id(text)).model
    except durable.RunNotFound as exc:
        raise CommandError(str(exc)) from None


def add_run_argument(parser: Any, help: str) -> None:
    """Add ``RUN_ID`` (``help`` says which run) and ``--key``: RUN_ID is then the run's
    idempotency key."""
    parser.add_argument(
        "run_id", metavar="RUN_ID", help=f"{help} With --key: the run's idempotency key."
    )
    parser.add_argument(
        "--key",
        dest="by_key",
        action="store_true",
        help="RUN_ID is the idempotency key the run was started with, not its id (a run "
        "started over HTTP has the key api:<user id>:<key>).",
    )


def target(options: dict[str, Any]) -> str:
    """Return the id of the run the command names: RUN_ID, or its key with ``--key``."""
    text = options["run_id"]
    if not options.get("by_key"):
        return run_id(text)
    try:
        return durable.get_run(key=text).id
    except (durable.RunNotFound, ValueError) as exc:
        raise CommandError(str(exc)) from None


def target_run(options: dict[str, Any]) -> Run:
    """Return the run the command names (see ``target``), or raise a ``CommandError``."""
    return get_run(target(options))


# --- JSON -------------------------------------------------------------------------------


def json_argument(text: str | bytes, what: str, *, quote: bool = True) -> Any:
    """Return the JSON value of an argument, or raise a ``CommandError`` naming ``what``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        shown = f": {_quoted(text)}" if quote else "."
        raise CommandError(f"{what} is not valid JSON ({exc}){shown}") from None
    except UnicodeDecodeError as exc:  # bytes from a file: json.loads detects UTF-8/16/32
        raise CommandError(f"{what} is not text in UTF-8 ({exc.reason}).") from None
    except RecursionError:
        raise CommandError(f"{what} is nested too deeply.") from None


def check_type(value: Any, kind: type, what: str, shown: str = ".") -> Any:
    """Return ``value`` if it is of the JSON type ``kind``, or raise a ``CommandError``."""
    if not isinstance(value, kind):
        found = _JSON_TYPES.get(type(value), "null" if value is None else "a number")
        raise CommandError(f"{what} must be {_JSON_TYPES[kind]} in JSON, not {found}{shown}")
    return value


def _quoted(text: str | bytes) -> str:
    quoted = repr(text)
    return quoted if len(quoted) <= _QUOTED_CHARS else quoted[: _QUOTED_CHARS - 1] + "…"


@dataclasses.dataclass(frozen=True, slots=True)
class JsonInput:
    """An argument that takes JSON (``--args``, ``MESSAGE_JSON``) and its ``--...-file`` twin.

    ``name`` is how the command names the inline argument, ``file_option`` the twin.
    """

    dest: str
    name: str
    file_option: str

    @property
    def file_dest(self) -> str:
        """Return the options key of the ``--...-file`` twin."""
        return self.file_option.removeprefix("--").replace("-", "_")

    def add(self, parser: Any, *, required: bool = False, **inline: Any) -> None:
        """Add the inline argument (``inline`` are its ``add_argument`` keywords) and its twin.

        A positional argument becomes optional (``nargs="?"``): either may be given.
        """
        group = parser.add_mutually_exclusive_group(required=required)
        if self.name.startswith("--"):
            group.add_argument(self.name, dest=self.dest, **inline)
        else:
            group.add_argument(self.dest, nargs="?", **inline)
        group.add_argument(
            self.file_option,
            metavar="PATH",
            help=f"Read {self.name} from this file ('-': standard input).",
        )

    def text(self, options: dict[str, Any]) -> tuple[str | bytes, str, bool] | None:
        """Return ``(JSON, what to call it, quote it in errors)``, or ``None`` if not given."""
        path = options.get(self.file_dest)
        if path is None:
            text = options.get(self.dest)
            return None if text is None else (text, self.name, True)
        if path == STDIN:
            return _read_stdin(), f"{self.file_option} - (standard input)", False
        what = f"{self.file_option} {path!r}"
        try:
            return Path(path).read_bytes(), what, False
        except OSError as exc:
            raise CommandError(f"{what}: cannot read the file ({exc.strerror or exc}).") from None

    def value(self, options: dict[str, Any], kind: type | None = None) -> Any:
        """Return the JSON value given (``kind()``, or ``None``, if none), of type ``kind``."""
        found = self.text(options)
        if found is None:
            return None if kind is None else kind()
        text, what, quote = found
        value = json_argument(text, what, quote=quote)
        if kind is None:
            return value
        return check_type(value, kind, what, f": {_quoted(text)}" if quote else ".")


def _read_stdin() -> bytes | str:
    stream = getattr(sys.stdin, "buffer", sys.stdin)  # bytes: json.loads detects UTF-8/16/32
    return stream.read()


def check_one_stdin(options: dict[str, Any], inputs: Sequence[JsonInput]) -> None:
    """Raise a ``CommandError`` if more than one of ``inputs`` reads standard input."""
    readers = [item.file_option for item in inputs if options.get(item.file_dest) == STDIN]
    if len(readers) > 1:
        raise CommandError(f"Only one option can read standard input, not {' and '.join(readers)}.")
