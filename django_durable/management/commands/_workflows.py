"""``manage.py durable workflows``: the registered workflows and how they are declared."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.management.base import BaseCommand

from django_durable import display
from django_durable.core.conf import get_settings
from django_durable.declarations.registry import registered_workflows
from django_durable.declarations.workflows import Workflow

from ._output import dumps, table


def add_parsers(command: BaseCommand, groups: Any) -> None:
    """Add ``workflows`` to the ``durable`` parser."""
    parser = groups.add_parser(
        "workflows", help="List the registered workflows: queue, retries, timeout, schedule..."
    )
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    parser.set_defaults(handler=partial(workflows, command))


def declaration(wf: Workflow[Any, Any]) -> dict[str, Any]:
    """Return how ``wf`` is declared, as ``workflows --json`` prints it."""
    schedule, trigger = wf.schedule, wf.trigger
    return {
        "name": wf.name,
        "queue": wf.queue or get_settings().DEFAULT_QUEUE,
        "max_attempts": wf.max_attempts,
        "timeout_seconds": wf.timeout,
        "on_timeout": wf.on_timeout,
        "schedule": None
        if schedule is None
        else {
            "cron": schedule.cron,
            "time_zone": schedule.time_zone,
            "missed_ticks": schedule.missed_ticks,
        },
        "trigger": None
        if trigger is None
        else {
            "event": trigger.event,
            "batch_size": trigger.batch_size,
            "batch_timeout_seconds": trigger.batch_timeout,
        },
        "http_start": wf.http_start,
        "is_async": wf.is_async,
    }


def workflows(command: BaseCommand, options: dict[str, Any]) -> None:
    """List the registered workflows by name."""
    found = [declaration(wf) for _, wf in sorted(registered_workflows().items())]
    if options["json"]:
        command.stdout.write(dumps(found))
        return
    rows = [
        (
            item["name"],
            item["queue"],
            item["max_attempts"],
            _timeout(item),
            _schedule(item["schedule"]),
            _trigger(item["trigger"]),
            "yes" if item["http_start"] else "no",
        )
        for item in found
    ]
    headers = ("NAME", "QUEUE", "ATTEMPTS", "TIMEOUT", "SCHEDULE", "TRIGGER", "HTTP START")
    command.stdout.write(table(headers, rows))


def _timeout(item: dict[str, Any]) -> str:
    seconds = item["timeout_seconds"]
    if seconds is None:
        return "-"
    cancel = ", cancel" if item["on_timeout"] == "cancel" else ""
    return f"{display.format_duration(seconds)}{cancel}"


def _schedule(schedule: dict[str, Any] | None) -> str:
    if schedule is None:
        return "-"
    return f"{schedule['cron']} ({schedule['time_zone']})"


def _trigger(trigger: dict[str, Any] | None) -> str:
    if trigger is None:
        return "-"
    if trigger["batch_size"] == 1:
        return trigger["event"]
    wait = display.format_duration(trigger["batch_timeout_seconds"])
    return f"{trigger['event']} (batches of {trigger['batch_size']}, {wait})"
