"""``manage.py durable schedules``: list the cron schedules, in code and made in the admin."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.management.base import BaseCommand

from django_durable.core.conf import get_settings
from django_durable.models import Schedule

from ._output import dumps, table, when

# Shown by --json, with the model's field names.
SCHEDULE_FIELDS: tuple[str, ...] = ("name", "workflow_name", "cron", "time_zone", "enabled")
SCHEDULE_FIELDS += ("missed_ticks", "from_code", "next_tick_at", "last_tick_at", "args", "kwargs")


def add_parsers(command: BaseCommand, groups: Any) -> None:
    """Add ``schedules`` to the ``durable`` parser."""
    parser = groups.add_parser("schedules", help="List cron schedules and their next ticks.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    parser.set_defaults(handler=partial(schedules, command))


def schedules(command: BaseCommand, options: dict[str, Any]) -> None:
    """List every schedule by name: its workflow, cron, time zone, and next and last ticks."""
    found = list(Schedule.objects.using(get_settings().DATABASE).order_by("name"))
    if options["json"]:
        command.stdout.write(
            dumps([{name: getattr(row, name) for name in SCHEDULE_FIELDS} for row in found])
        )
        return
    rows = [
        (
            row.name,
            row.workflow_name,
            row.cron,
            row.time_zone,
            "yes" if row.enabled else "no",
            row.missed_ticks,
            when(row.next_tick_at),
            when(row.last_tick_at),
            "code" if row.from_code else "admin",
        )
        for row in found
    ]
    headers = ("NAME", "WORKFLOW", "CRON", "TIME ZONE", "ENABLED", "MISSED TICKS", "NEXT TICK")
    command.stdout.write(table((*headers, "LAST TICK", "FROM"), rows))
