"""``manage.py durable`` subcommands that talk to runs: send, emit, events.

Writes go through the public functions (``durable.send``, ``durable.emit_event``); bad
input is a ``CommandError`` that says what is wrong.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q

import django_durable as durable
from django_durable import display
from django_durable.client.runs import MAX_LIMIT
from django_durable.core.conf import get_settings
from django_durable.core.names import check_name
from django_durable.models import Event, Run

from ._inputs import JsonInput, add_run_argument, target
from ._output import clean, dumps, plural, table, when

MESSAGE = JsonInput("message", "MESSAGE_JSON", "--message-file")
DATA = JsonInput("data", "DATA_JSON", "--data-file")


def add_parsers(command: BaseCommand, groups: Any) -> None:
    """Add ``send``, ``emit`` and ``events`` to the ``durable`` parser."""
    _add_send_parser(command, groups)
    _add_emit_parser(command, groups)
    events_parser = groups.add_parser("events", help="List events, newest first.")
    events_parser.add_argument(
        "--name", metavar="N", help="Only events named N, or starting with N if it ends with *."
    )
    events_parser.add_argument(
        "--limit", type=int, default=50, metavar="N", help="At most N events (50)."
    )
    events_parser.add_argument("--json", action="store_true", help="Print JSON.")
    events_parser.set_defaults(handler=partial(events, command))


def _add_send_parser(command: BaseCommand, groups: Any) -> None:
    send_parser = groups.add_parser("send", help="Send a message to a run; print its id.")
    add_run_argument(send_parser, "The run to send it to.")
    MESSAGE.add(
        send_parser,
        required=True,
        metavar="MESSAGE_JSON",
        help="""The message as JSON: '{"a": 1}', 42, '"text"'.""",
    )
    send_parser.add_argument(
        "--topic", metavar="T", help="The topic: what ctx.recv(T) takes (none: ctx.recv())."
    )
    send_parser.add_argument(
        "--idempotency-key", metavar="KEY", help="Send once per run and key (at most 255)."
    )
    send_parser.set_defaults(handler=partial(send, command))


def _add_emit_parser(command: BaseCommand, groups: Any) -> None:
    emit_parser = groups.add_parser(
        "emit",
        help="Emit an event; say its id and how many waiting runs it woke.",
        description="Emit the event NAME, like durable.emit_event(), and say its id and how "
        "many runs it woke: the runs that were waiting for NAME when it was emitted (counted "
        "in the transaction that emits it; on PostgreSQL, a run that starts or stops waiting "
        "for NAME at that very moment may be miscounted). An event emitted before with the "
        "same --idempotency-key wakes no run.",
    )
    emit_parser.add_argument("name", metavar="NAME", help="The event's name (1 to 200 chars).")
    DATA.add(emit_parser, metavar="DATA_JSON", help="Its data as JSON (default: null).")
    emit_parser.add_argument("--source", metavar="S", help="Where it comes from (CloudEvents).")
    emit_parser.add_argument("--type", metavar="T", help="What kind of event it is (CloudEvents).")
    emit_parser.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="Emit once: the same key (per name) stores nothing and wakes no run again.",
    )
    emit_parser.add_argument(
        "--json", action="store_true", help="Print JSON: id, name, stored, woken."
    )
    emit_parser.set_defaults(handler=partial(emit, command))


def send(command: BaseCommand, options: dict[str, Any]) -> None:
    """Send a message to a run and print the message's id."""
    run = target(options)
    message = MESSAGE.value(options)
    try:
        message_id = durable.send(
            run, message, topic=options["topic"], idempotency_key=options["idempotency_key"]
        )
    except (durable.DurableError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    command.stdout.write(str(message_id))


def emit(command: BaseCommand, options: dict[str, Any]) -> None:
    """Emit an event; print its id, its name and how many waiting runs it woke."""
    name = options["name"]
    data = DATA.value(options)
    try:
        event_id, stored, woken = emit_counting(
            name,
            data,
            source=options["source"],
            type=options["type"],
            idempotency_key=options["idempotency_key"],
        )
    except (durable.DurableError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if options["json"]:
        emitted = {"id": event_id, "name": name, "stored": stored, "woken": woken}
        command.stdout.write(dumps(emitted))
    elif stored:
        command.stdout.write(
            f"Emitted event {event_id} ({clean(name)}): woke {plural(woken, 'run')}."
        )
    else:
        command.stdout.write(
            f"Event {event_id} ({clean(name)}) was emitted before with this idempotency key: "
            "stored nothing, woke no run."
        )


def emit_counting(name: str, data: Any, **options: Any) -> tuple[int, bool, int]:
    """Emit with ``durable.emit_event``; return its id, whether it was stored, runs woken.

    Woken: the runs waiting for ``name`` just before it was emitted, less those still
    waiting just after, both counted in the transaction that emits it. That is exact on
    SQLite, where one transaction writes at a time. On PostgreSQL a run that starts waiting
    for the name, or stops (a timeout, a cancel), at that very moment may be counted wrongly.
    """
    check_name(name, "event")  # before the counts, as emit_event would
    alias = get_settings().DATABASE
    wake_key = f"e:{name}"  # waiting for it alone, or among the things of a first_of
    waiting = Run.objects.using(alias).filter(
        Q(wake_on=wake_key) | Q(wake_on="f:any", wake_keys__key=wake_key),
        status=durable.RunStatus.WAITING,
    )
    key = options.get("idempotency_key")
    with transaction.atomic(using=alias):
        earlier = key is not None and (
            Event.objects.using(alias).filter(name=name, idempotency_key=key).exists()
        )
        before = waiting.count()
        event_id = durable.emit_event(name, data, **options)
        after = waiting.count()
    return event_id, not earlier, 0 if earlier else max(0, before - after)


def events(command: BaseCommand, options: dict[str, Any]) -> None:
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
        command.stdout.write(dumps(data))
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
    command.stdout.write(table(("ID", "NAME", "TYPE", "SOURCE", "CREATED", "RUN", "DATA"), rows))
