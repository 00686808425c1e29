"""``manage.py durable runs`` subcommands that operate runs: cancel, retry, children.

Cancel and retry call ``durable.cancel`` and ``durable.retry``, which edit the rows; a run
that cannot be operated is a ``CommandError`` that says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

import django_durable as durable
from django_durable.conf import get_settings
from django_durable.models import Run

from ._exchange import dumps, get_run, run_id, table, when

# Shown by ``runs children --json``, with the model's field names.
CHILD_FIELDS: tuple[str, ...] = ("id", "workflow_name", "status", "parent_position")
CHILD_FIELDS += ("parent_close", "created_at", "started_at", "finished_at")

Handler = Callable[[OutputWrapper, dict[str, Any]], None]


def add_parsers(command: BaseCommand, runs: Any) -> None:
    """Add ``cancel``, ``retry`` and ``children`` to the ``durable runs`` parser."""

    def handler(function: Handler) -> Callable[[dict[str, Any]], None]:
        # command.stdout is replaced when the command runs (call_command(stdout=...)).
        return lambda options: function(command.stdout, options)

    cancel_parser = runs.add_parser("cancel", help="Cancel a run and every run under it.")
    cancel_parser.add_argument("run_id", metavar="RUN_ID")
    cancel_parser.add_argument("--reason", metavar="R", default="", help="Why (kept on the run).")
    cancel_parser.set_defaults(handler=handler(cancel))

    retry_parser = runs.add_parser(
        "retry", help="Start a failed or cancelled run again from its checkpoints."
    )
    retry_parser.add_argument("run_id", metavar="RUN_ID")
    retry_parser.set_defaults(handler=handler(retry))

    children_parser = runs.add_parser("children", help="List the child runs a run started.")
    children_parser.add_argument("run_id", metavar="RUN_ID")
    children_parser.add_argument("--json", action="store_true", help="Print JSON.")
    children_parser.set_defaults(handler=handler(children))


def cancel(out: OutputWrapper, options: dict[str, Any]) -> None:
    """Cancel a run (and the runs under it); say whether it ended or was asked to stop."""
    target = run_id(options["run_id"])
    try:
        changed = durable.cancel(target, options["reason"])
        handle = durable.get_run(target)
    except durable.RunNotFound as exc:
        raise CommandError(str(exc)) from None
    if not changed:
        raise CommandError(f"Run {target} has already finished ({handle.status}): not cancelled.")
    if handle.status == durable.RunStatus.CANCELLED:
        out.write(f"Cancelled run {target}.")
    else:
        out.write(
            f"Asked run {target} to stop: it raises Cancelled at its next durable operation, "
            "runs its cleanup and ends cancelled."
        )


def retry(out: OutputWrapper, options: dict[str, Any]) -> None:
    """Start a failed or cancelled run again and say which attempt it is."""
    target = run_id(options["run_id"])
    try:
        handle = durable.retry(target)
    except durable.DurableError as exc:  # no such run, or not failed or cancelled
        raise CommandError(str(exc)) from None
    out.write(f"Retrying run {target}: attempt {handle.model.attempt}, {handle.status}.")


def children(out: OutputWrapper, options: dict[str, Any]) -> None:
    """List the child runs a run started, oldest first."""
    parent = get_run(options["run_id"])
    rows = list(
        Run.objects.using(get_settings().DATABASE)
        .filter(parent_id=parent.pk)
        .order_by("parent_position", "created_at", "id")
        .values(*CHILD_FIELDS)  # not the payloads: a run may start thousands of children
    )
    if options["json"]:
        out.write(dumps(rows))
        return
    headers = ("ID", "WORKFLOW", "STATUS", "POSITION", "CREATED", "FINISHED")
    out.write(
        table(
            headers,
            [
                (
                    row["id"],
                    row["workflow_name"],
                    row["status"],
                    row["parent_position"],
                    when(row["created_at"]),
                    when(row["finished_at"]),
                )
                for row in rows
            ],
        )
    )
