"""``manage.py durable runs`` subcommands that read what a run published: values, stream."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

import django_durable as durable
from django_durable.client.streams import poll_stream

from ._inputs import add_run_argument, parse_duration, target, target_run
from ._output import dumps, one_line, table


def add_parsers(command: BaseCommand, runs: Any) -> None:
    """Add ``values`` and ``stream`` to the ``durable runs`` parser."""
    values_parser = runs.add_parser("values", help="Print the newest value of each key.")
    add_run_argument(values_parser, "The run.")
    values_parser.add_argument("--json", action="store_true", help="Print JSON.")
    values_parser.set_defaults(handler=partial(values, command))

    stream_parser = runs.add_parser("stream", help="Print the items of a stream: OFFSET<TAB>JSON.")
    add_run_argument(stream_parser, "The run.")
    stream_parser.add_argument("key", metavar="KEY", help="The stream's key.")
    stream_parser.add_argument(
        "--offset", type=int, default=0, metavar="N", help="From this offset (0)."
    )
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
    stream_parser.add_argument("--json", action="store_true", help="Print JSON lines.")
    stream_parser.set_defaults(handler=partial(stream, command))


def values(command: BaseCommand, options: dict[str, Any]) -> None:
    """Print the newest value of each key a run published."""
    try:
        found = durable.get_values(target(options))
    except durable.RunNotFound as exc:
        raise CommandError(str(exc)) from None
    if options["json"]:
        command.stdout.write(dumps(found))
        return
    rows = [(key, one_line(value)) for key, value in found.items()]
    command.stdout.write(table(("KEY", "VALUE"), rows))


def stream(command: BaseCommand, options: dict[str, Any]) -> None:
    """Print the items of a run's stream; with --follow, until it closes or the run ends."""
    if options["offset"] < 0:
        raise CommandError("--offset cannot be negative.")
    timeout = None if options["timeout"] is None else parse_duration(options["timeout"])
    if timeout is not None and not options["follow"]:
        raise CommandError("--timeout only applies with --follow.")
    run = target_run(options)
    key, offset = options["key"], options["offset"]
    seconds = None if timeout is None else timeout.total_seconds()
    finished = not options["follow"]
    out = command.stdout
    try:
        for poll in poll_stream(run, key, offset, follow=options["follow"], max_seconds=seconds):
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
