"""``manage.py durable callbacks``: complete or fail a callback a run made with
``ctx.callback()``, through ``durable.complete_callback`` and ``durable.fail_callback``."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.management.base import BaseCommand, CommandError

import django_durable as durable

from ._inputs import JsonInput
from ._output import clean, dumps

VALUE = JsonInput("value", "--value", "--value-file")
DETAILS = JsonInput("details", "--details", "--details-file")


def add_parsers(command: BaseCommand, groups: Any) -> None:
    """Add ``callbacks complete`` and ``callbacks fail`` to the ``durable`` parser."""
    callbacks = groups.add_parser("callbacks", help="Complete or fail a callback.")
    actions = callbacks.add_subparsers(
        dest="callbacks_command",
        required=True,
        metavar="ACTION",
        help="durable callbacks ACTION -h: its options.",
    )
    complete = actions.add_parser(
        "complete",
        help="Complete a callback with a value: its cb.wait() returns it.",
        description="Complete the callback ID (once: a second completion is refused).",
    )
    complete.add_argument("callback_id", metavar="ID", help="The callback's id (cb.id).")
    VALUE.add(complete, metavar="JSON", help="""The value as JSON (default: null): '{"ok": 1}'.""")
    fail = actions.add_parser(
        "fail",
        help="Fail a callback: its cb.wait() raises CallbackFailed.",
        description="Fail the callback ID with an error (once: a second one is refused).",
    )
    fail.add_argument("callback_id", metavar="ID", help="The callback's id (cb.id).")
    fail.add_argument("--error", required=True, metavar="TEXT", help="What went wrong.")
    DETAILS.add(fail, metavar="JSON", help="Any JSON: CallbackFailed.details in the run.")
    for sub in (complete, fail):
        sub.add_argument("--json", action="store_true", help="Print JSON: id, status.")
    complete.set_defaults(handler=partial(settle, command, "completed"))
    fail.set_defaults(handler=partial(settle, command, "failed"))


def settle(command: BaseCommand, status: str, options: dict[str, Any]) -> None:
    """Complete or fail the callback; say so."""
    callback_id = options["callback_id"].strip()
    try:
        if status == "completed":
            durable.complete_callback(callback_id, VALUE.value(options))
        else:
            details = DETAILS.value(options)
            durable.fail_callback(callback_id, options["error"], details=details)
    except (durable.DurableError, ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from None
    if options["json"]:
        command.stdout.write(dumps({"id": callback_id, "status": status}))
    else:
        verb = "Completed" if status == "completed" else "Failed"
        command.stdout.write(f"{verb} callback {clean(callback_id)}.")
