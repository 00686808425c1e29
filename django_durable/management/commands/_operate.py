"""``manage.py durable runs`` subcommands that operate runs: cancel, retry, wake, fork,
children.

Cancel, retry, wake and fork call ``durable.cancel``, ``durable.retry``, ``durable.wake_now``
and ``durable.fork``, which edit the rows; a run that cannot be operated is a
``CommandError`` that says why.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.management.base import BaseCommand, CommandError

import django_durable as durable
from django_durable import display
from django_durable.core.conf import get_settings
from django_durable.core.durations import optional_seconds
from django_durable.models import Run

from ._inputs import add_run_argument, option_error, target_run
from ._inputs import target as named_run
from ._output import FACT_CHARS, clean, dumps, table, when

# Shown by ``runs children --json``, with the model's field names.
CHILD_FIELDS: tuple[str, ...] = ("id", "workflow_name", "status", "parent_position")
CHILD_FIELDS += ("parent_close", "created_at", "started_at", "finished_at")

# ``--wait`` without SECONDS: wait as long as it takes.
NO_LIMIT = float("inf")


def add_parsers(command: BaseCommand, runs: Any) -> None:
    """Add ``cancel``, ``retry``, ``wake`` and ``children`` to the ``durable runs`` parser."""
    cancel_parser = runs.add_parser("cancel", help="Cancel a run and every run under it.")
    add_run_argument(cancel_parser, "The run to cancel.")
    cancel_parser.add_argument(
        "--reason", metavar="R", default="", help="Why (kept on the run; default: cancelled)."
    )
    cancel_parser.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=NO_LIMIT,
        metavar="SECONDS",
        help="Wait until the run has finished (at most SECONDS, if given) and say how it "
        "ended; exit with status 1 if it is still stopping.",
    )
    cancel_parser.set_defaults(handler=partial(cancel, command))

    retry_parser = runs.add_parser(
        "retry", help="Start a failed or cancelled run again from its checkpoints."
    )
    add_run_argument(retry_parser, "The run to retry.")
    retry_parser.set_defaults(handler=partial(retry, command))

    wake_parser = runs.add_parser(
        "wake", help="Wake a waiting run now: its sleep, its wait's timeout or its retry ends."
    )
    add_run_argument(wake_parser, "The waiting run to wake.")
    wake_parser.set_defaults(handler=partial(wake, command))

    fork_parser = runs.add_parser(
        "fork",
        help="Start a new run of a finished run from a step: the steps before it are copied; "
        "print the new run's id.",
        description="Start a new run of the same workflow and input whose first N operations "
        "(positions 0 to N-1, as `durable runs steps` lists them) are copies of the run's: "
        "their results are replayed, their side effects not repeated. The rest runs again on "
        "the code deployed now. The run must be completed, failed or cancelled.",
    )
    add_run_argument(fork_parser, "The finished run to fork.")
    fork_parser.add_argument(
        "--from-step",
        type=int,
        required=True,
        metavar="N",
        help="The position of the first operation to run again (for a failed run, usually "
        "the position of the step that failed).",
    )
    fork_parser.add_argument(
        "--idempotency-key", metavar="KEY", help="Fork once: the same key returns that fork."
    )
    fork_parser.add_argument(
        "--json", action="store_true", help="Print JSON: id, forked_from, from_step, status."
    )
    fork_parser.set_defaults(handler=partial(fork, command))

    children_parser = runs.add_parser("children", help="List the child runs a run started.")
    add_run_argument(children_parser, "The parent run.")
    children_parser.add_argument("--json", action="store_true", help="Print JSON.")
    children_parser.set_defaults(handler=partial(children, command))


def cancel(command: BaseCommand, options: dict[str, Any]) -> None:
    """Cancel a run (and the runs under it); say whether it ended or was asked to stop."""
    target = named_run(options)
    wait = options["wait"]
    if wait is not None and wait != NO_LIMIT:
        try:
            optional_seconds(wait, "--wait")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    try:
        changed = durable.cancel(target, options["reason"])
        handle = durable.get_run(target)
    except durable.RunNotFound as exc:
        raise CommandError(str(exc)) from None
    if not changed:
        raise CommandError(f"Run {target} has already finished ({handle.status}): not cancelled.")
    if handle.status == durable.RunStatus.CANCELLED:
        command.stdout.write(command.style.SUCCESS(f"Cancelled run {target}."))
        return
    command.stdout.write(
        f"Asked run {target} to stop: it raises Cancelled at its next durable operation, "
        "runs its cleanup and ends cancelled."
    )
    if wait is not None:
        command.stdout.flush()
        _wait_finished(command, handle, None if wait == NO_LIMIT else wait)


def _wait_finished(command: BaseCommand, handle: durable.RunHandle, seconds: float | None) -> None:
    """Wait for a run asked to stop; say how it ended, or raise if it is still stopping."""
    try:
        handle.wait_finished(seconds)
    except (TimeoutError, KeyboardInterrupt):
        waited = "" if seconds is None else f" after {seconds:g}s"
        raise CommandError(
            f"Run {handle.id} is still stopping{waited} (status: {handle.refresh().status}): "
            "a worker cancels it at its next durable operation."
        ) from None
    run = handle.model
    sentence = clean(display.summarize(run).sentence, FACT_CHARS)
    if run.status == durable.RunStatus.CANCELLED:
        command.stdout.write(command.style.SUCCESS(f"Run {handle.id} ended: {sentence}"))
    else:  # it completed or failed before it reached a durable operation
        command.stdout.write(
            command.style.WARNING(f"Run {handle.id} ended before it stopped: {sentence}")
        )


def retry(command: BaseCommand, options: dict[str, Any]) -> None:
    """Start a failed or cancelled run again and say which attempt it is."""
    target = named_run(options)
    try:
        handle = durable.retry(target)
    except durable.DurableError as exc:  # no such run, or not failed or cancelled
        raise CommandError(str(exc)) from None
    command.stdout.write(f"Retrying run {target}: attempt {handle.model.attempt}, {handle.status}.")


# What ``wake`` says it cut short, by what ``durable.wake_now`` returned.
WOKEN = {
    "sleep": "its sleep ended",
    "timeout": "its wait's timeout came (it times out unless what it waits for arrived)",
    "retry": "its retry backoff ended",
}


def wake(command: BaseCommand, options: dict[str, Any]) -> None:
    """Wake a waiting run now and say what was cut short."""
    target = named_run(options)
    try:
        cut = durable.wake_now(target)
    except durable.DurableError as exc:  # no such run, not waiting, or waiting for ever
        raise CommandError(str(exc)) from None
    command.stdout.write(f"Woke run {target}: {WOKEN.get(cut, cut)}; a worker goes on with it now.")


def fork(command: BaseCommand, options: dict[str, Any]) -> None:
    """Fork a finished run from --from-step; print the new run's id (or JSON)."""
    target = named_run(options)
    step = options["from_step"]
    try:
        handle = durable.fork(target, from_step=step, idempotency_key=options["idempotency_key"])
    except (durable.DurableError, ValueError) as exc:  # no such run, unfinished, bad step
        raise option_error(exc, "from_step", "idempotency_key") from None
    if options["json"]:
        forked = {"id": handle.id, "forked_from": target, "from_step": step}
        command.stdout.write(dumps({**forked, "status": handle.status}))
        return
    command.stdout.write(handle.id)


def children(command: BaseCommand, options: dict[str, Any]) -> None:
    """List the child runs a run started, oldest first."""
    parent = target_run(options)
    rows = list(
        Run.objects.using(get_settings().DATABASE)
        .filter(parent_id=parent.pk)
        .order_by("parent_position", "created_at", "id")
        .values(*CHILD_FIELDS)  # not the payloads: a run may start thousands of children
    )
    if options["json"]:
        command.stdout.write(dumps(rows))
        return
    headers = ("ID", "WORKFLOW", "STATUS", "POSITION", "CREATED", "FINISHED")
    command.stdout.write(
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
