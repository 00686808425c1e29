"""``manage.py durable runs show RUN_ID``: a run in a sentence, then its facts.

The sentence is ``display.summarize(run)``, the words every face uses for a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any

from django.core.management.base import BaseCommand

import django_durable as durable
from django_durable import display
from django_durable.core.conf import get_settings
from django_durable.models import Run, Step

from ._inputs import add_run_argument, target_run
from ._output import FACT_CHARS, clean, dumps, facts, indent, plural, when

# Shown by --json, with the model's field names.
RUN_FIELDS: tuple[str, ...] = ("id", "workflow_name", "status", "queue", "attempt")
RUN_FIELDS += ("waiting_for", "created_at", "started_at", "finished_at")
LAST_STEP_FIELDS = ("position", "kind", "name", "status", "attempts", "recorded_at")


def fields(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    """Return the attributes ``names`` of ``obj`` by name."""
    return {name: getattr(obj, name) for name in names}


def add_parsers(command: BaseCommand, runs: Any) -> None:
    """Add ``show`` to the ``durable runs`` parser."""
    parser = runs.add_parser("show", help="Show a run: where it is, its input, result or error.")
    add_run_argument(parser, "The run.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    parser.set_defaults(handler=partial(show, command))


def details(run: Run) -> dict[str, Any]:
    """Return what ``runs show --json`` prints of ``run``."""
    args, kwargs = run.get_input()
    completed = run.status == durable.RunStatus.COMPLETED
    alias = get_settings().DATABASE
    children = Run.objects.using(alias).filter(parent_id=run.pk)
    steps = Step.objects.using(alias).filter(run=run).order_by("-position")
    last = steps.values(*LAST_STEP_FIELDS).first()  # not the result: it may be large
    return {
        **fields(run, (*RUN_FIELDS, "priority", "idempotency_key", "wake_at", "deadline_at")),
        **fields(run, ("flow_key", "flow_limit")),
        "summary": dataclasses.asdict(display.summarize(run)),
        "claimed_by": run.claimed_by,
        "lease_expires_at": run.lease_expires_at,
        "last_step": last,
        "parent": run.parent_id,
        "forked_from": run.forked_from_id,
        **fields(run, ("depth", "parent_close", "cancel_requested_at", "cancel_reason")),
        "children_count": children.count(),
        "duration_seconds": display.run_seconds(run),
        "input": {"args": args, "kwargs": kwargs},
        "result": run.get_result() if completed else None,
        "error": run.error,
    }


def show(command: BaseCommand, options: dict[str, Any]) -> None:
    """Show a run: where it is, its input, and its result or error."""
    run = target_run(options)
    found = details(run)
    if options["json"]:
        command.stdout.write(dumps(found))
        return
    seconds = found["duration_seconds"]
    lines = [clean(found["summary"]["sentence"], FACT_CHARS), ""]
    lines += facts(
        [
            ("Run", run.id),
            ("Workflow", run.workflow_name),
            ("Status", run.status),
            *_cancellation(run),
            ("Waiting for", run.waiting_for or "-"),
            ("Worker", _worker(run)),
            ("Last step", _last_step(found["last_step"])),
            ("Queue", f"{run.queue} (priority {run.priority})"),
            ("Attempt", run.attempt),
            ("Idempotency key", run.idempotency_key or "-"),
            *([("Flow key", display.flow_description(run))] if run.flow_key is not None else []),
            ("Created", when(run.created_at)),
            ("Started", when(run.started_at)),
            ("Finished", when(run.finished_at)),
            ("Duration", "-" if seconds is None else display.format_duration(seconds)),
            *_family(run, found["children_count"]),
        ]
    )
    lines += ["Input:", indent(dumps(found["input"]))]
    if run.status == durable.RunStatus.COMPLETED:
        lines += ["Result:", indent(dumps(found["result"]))]
    if run.error:
        lines += facts([("Error", display.error_summary(run.error))])
        if run.error.get("traceback"):
            lines += ["Traceback:", indent(str(run.error["traceback"]).rstrip())]
    command.stdout.write("\n".join(lines))


def _worker(run: Run) -> str:
    """Return the worker that holds the run's lease, and until when ("-" for none)."""
    if run.claimed_by is None:
        return "-"
    if run.lease_expires_at is None:
        return run.claimed_by
    return f"{run.claimed_by} (lease until {display.moment(run.lease_expires_at)})"


def _last_step(step: dict[str, Any] | None) -> str:
    """Return the last operation the run recorded: ``#2 step `charge` completed, 1 attempt``."""
    if step is None:
        return "-"
    attempts = plural(step["attempts"], "attempt")
    recorded = display.moment(step["recorded_at"])
    return (
        f"#{step['position']} {step['kind']} `{step['name']}`: {step['status']}, {attempts}, "
        f"{recorded}"
    )


def _cancellation(run: Run) -> list[tuple[str, Any]]:
    if run.cancel_requested_at is None:
        return []
    reason = f": {run.cancel_reason}" if run.cancel_reason else ""
    return [("Cancellation", f"requested {when(run.cancel_requested_at)}{reason}")]


def _family(run: Run, children: int) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if run.parent_id is not None:
        policy = f"if the parent finishes first: {run.parent_close}"
        found.append(("Parent", f"{run.parent_id} (depth {run.depth}; {policy})"))
    if children:
        found.append(("Children", f"{children} (durable runs children {run.id})"))
    if run.forked_from_id is not None:
        found.append(("Forked from", run.forked_from_id))
    return found
