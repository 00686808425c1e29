"""``manage.py durable`` subcommands that talk to runs: send, emit, values, stream, events.

Also the parsing and printing helpers that every subcommand shares. Writes go through the
public functions (``django_durable`` and ``django_durable.exchange``); bad input is a
``CommandError`` that says what is wrong.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

import django_durable as durable
from django_durable import display, exchange
from django_durable.client import MAX_LIMIT
from django_durable.conf import get_settings
from django_durable.models import Event, Run

_DURATION = re.compile(r"(\d+(?:\.\d*)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}

# --- parsing and printing --------------------------------------------------------------


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


def json_argument(text: str, what: str) -> Any:
    """Return the JSON value of a command-line argument, or raise a ``CommandError``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{what} is not valid JSON ({exc}): {text!r}") from None
    except RecursionError:
        raise CommandError(f"{what} is nested too deeply.") from None


def json_option(text: str | None, kind: type, option: str) -> Any:
    """Return the JSON value of ``option`` (``kind()`` if not given), checking its type."""
    if text is None:
        return kind()
    value = json_argument(text, option)
    if not isinstance(value, kind):
        found = _JSON_TYPES.get(type(value), "null" if value is None else "a number")
        raise CommandError(f"{option} must be {_JSON_TYPES[kind]} in JSON, not {found}: {text!r}")
    return value


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


def dumps(value: Any) -> str:
    """Return ``value`` as indented JSON."""
    return json.dumps(value, indent=2, cls=DjangoJSONEncoder)


def one_line(value: Any) -> str:
    """Return ``value`` as JSON on one line."""
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)


def when(value: datetime | None) -> str:
    """Return a time in the current time zone, to the second ("-" for none)."""
    if value is None:
        return "-"
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return local.strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return rows as aligned columns under their headers."""
    cells = [[str(cell) for cell in row] for row in (headers, *rows)]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(line.rstrip() for line in lines)


def indent(text: str) -> str:
    """Return ``text`` indented by two spaces."""
    return "\n".join(f"  {line}" for line in text.splitlines())


# --- the subcommands -------------------------------------------------------------------


Handler = Callable[[OutputWrapper, dict[str, Any]], None]


def add_parsers(command: BaseCommand, groups: Any, runs: Any) -> None:
    """Add the subcommands of this module to the ``durable`` and ``durable runs`` parsers."""

    def handler(function: Handler) -> Callable[[dict[str, Any]], None]:
        # command.stdout is replaced when the command runs (call_command(stdout=...)).
        return lambda options: function(command.stdout, options)

    send_parser = groups.add_parser("send", help="Send a message to a run; print its id.")
    send_parser.add_argument("run_id", metavar="RUN_ID")
    send_parser.add_argument("message", metavar="MESSAGE_JSON", help="""The message: '{"a": 1}'.""")
    send_parser.add_argument("--topic", metavar="T", help="What ctx.recv(topic) takes it.")
    send_parser.add_argument("--idempotency-key", metavar="KEY", help="Send once per key.")
    send_parser.set_defaults(handler=handler(send))

    emit_parser = groups.add_parser("emit", help="Emit an event; print its id.")
    emit_parser.add_argument("name", metavar="NAME")
    emit_parser.add_argument("data", metavar="DATA_JSON", nargs="?", help="Its data (null).")
    emit_parser.add_argument("--source", metavar="S", help="Where it comes from.")
    emit_parser.add_argument("--type", metavar="T", help="What kind of event it is.")
    emit_parser.add_argument(
        "--idempotency-key",
        metavar="K",
        help="Emit once: the same key (per name) returns the first event.",
    )
    emit_parser.set_defaults(handler=handler(emit))

    values_parser = runs.add_parser("values", help="Print the newest value of each key.")
    values_parser.add_argument("run_id", metavar="RUN_ID")
    values_parser.set_defaults(handler=handler(values))

    stream_parser = runs.add_parser("stream", help="Print the items of a stream: OFFSET<TAB>JSON.")
    stream_parser.add_argument("run_id", metavar="RUN_ID")
    stream_parser.add_argument("key", metavar="KEY")
    stream_parser.add_argument("--offset", type=int, default=0, help="From this offset (0).")
    stream_parser.add_argument(
        "--follow",
        action="store_true",
        help="Wait for items until the stream closes or the run ends.",
    )
    stream_parser.add_argument(
        "--timeout",
        metavar="DURATION",
        help="With --follow: give up after DURATION (90s, 15m...) and exit with status 1.",
    )
    stream_parser.set_defaults(handler=handler(stream))

    events_parser = groups.add_parser("events", help="List events, newest first.")
    events_parser.add_argument(
        "--name", metavar="N", help="Only events named N, or starting with N if it ends with *."
    )
    events_parser.add_argument("--limit", type=int, default=50, help="At most N events (50).")
    events_parser.set_defaults(handler=handler(events))

    for sub in (values_parser, events_parser):
        sub.add_argument("--json", action="store_true", help="Print JSON.")
    stream_parser.add_argument("--json", action="store_true", help="Print JSON lines.")


def send(out: OutputWrapper, options: dict[str, Any]) -> None:
    """Send a message to a run and print the message's id."""
    target = run_id(options["run_id"])
    message = json_argument(options["message"], "MESSAGE_JSON")
    try:
        message_id = durable.send(
            target, message, topic=options["topic"], idempotency_key=options["idempotency_key"]
        )
    except (durable.DurableError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    out.write(str(message_id))


def emit(out: OutputWrapper, options: dict[str, Any]) -> None:
    """Emit an event and print its id."""
    data = None if options["data"] is None else json_argument(options["data"], "DATA_JSON")
    try:
        event_id = durable.emit_event(
            options["name"],
            data,
            source=options["source"],
            type=options["type"],
            idempotency_key=options["idempotency_key"],
        )
    except (durable.DurableError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    out.write(str(event_id))


def values(out: OutputWrapper, options: dict[str, Any]) -> None:
    """Print the newest value of each key a run published."""
    try:
        found = exchange.get_values(run_id(options["run_id"]))
    except durable.RunNotFound as exc:
        raise CommandError(str(exc)) from None
    if options["json"]:
        out.write(dumps(found))
        return
    out.write(table(("KEY", "VALUE"), [(key, one_line(value)) for key, value in found.items()]))


def stream(out: OutputWrapper, options: dict[str, Any]) -> None:
    """Print the items of a run's stream; with --follow, until it closes or the run ends."""
    if options["offset"] < 0:
        raise CommandError("--offset cannot be negative.")
    timeout = None if options["timeout"] is None else parse_duration(options["timeout"])
    if timeout is not None and not options["follow"]:
        raise CommandError("--timeout only applies with --follow.")
    run = get_run(options["run_id"])
    key, offset = options["key"], options["offset"]
    seconds = None if timeout is None else timeout.total_seconds()
    finished = not options["follow"]
    try:
        for poll in exchange.poll_stream(
            run, key, offset, follow=options["follow"], max_seconds=seconds
        ):
            finished = finished or poll.kind in ("closed", "ended")
            for item in poll.items:
                value = item.get_value()
                if options["json"]:
                    out.write(
                        json.dumps({"offset": item.offset, "value": value}, cls=DjangoJSONEncoder)
                    )
                else:
                    out.write(f"{item.offset}\t{one_line(value)}")
                out.flush()  # a follower sees each item as it comes
                offset = item.offset + 1
    except KeyboardInterrupt:  # Ctrl-C ends following: not an error
        return
    if not finished:
        raise CommandError(
            f"Stopped following after {seconds:g}s: stream {key!r} is still open and the run "
            f"has not finished. Go on with --offset {offset}."
        )


def events(out: OutputWrapper, options: dict[str, Any]) -> None:
    """List events, newest first (read from the table: the client has no listing)."""
    if not 1 <= options["limit"] <= MAX_LIMIT:
        raise CommandError(f"--limit must be from 1 to {MAX_LIMIT}.")
    found = Event.objects.using(get_settings().DATABASE).order_by("-id")
    name = options["name"]
    if name is not None and name.endswith("*"):
        found = found.filter(name__startswith=name[:-1])
    elif name is not None:
        found = found.filter(name=name)
    found = found[: options["limit"]]
    if options["json"]:
        data = [
            {
                "id": event.id,
                "name": event.name,
                "data": event.get_data(),
                "source": event.source,
                "type": event.type,
                "created_at": event.created_at,
                "run_id": event.run_id,
            }
            for event in found
        ]
        out.write(dumps(data))
        return
    head = display.json_head("data", display.PREVIEW_CHARS)
    rows = [
        (
            pk,
            event_name,
            kind or "-",
            source or "-",
            when(created),
            run or "-",
            display.head_preview(data),
        )
        for pk, event_name, kind, source, created, run, data in found.values_list(
            "id", "name", "type", "source", "created_at", "run_id", head
        )
    ]
    out.write(table(("ID", "NAME", "TYPE", "SOURCE", "CREATED", "RUN", "DATA"), rows))
