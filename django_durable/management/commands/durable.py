"""``manage.py durable``: inspect and operate runs; workers, schedules, events; prune.

Every subcommand goes through the public client (``import django_durable``) and edits
no row by hand. Bad input is a ``CommandError`` (exit code 1) that says what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import django_durable as durable
from django_durable import display
from django_durable.conf import get_settings
from django_durable.models import Run, WorkerProcess

from . import _operate, _schedules
from ._exchange import (
    add_parsers,
    dumps,
    get_run,
    indent,
    json_option,
    option_error,
    parse_duration,
    table,
    when,
)

# Shown by --json, with the model's field names.
RUN_FIELDS: tuple[str, ...] = ("id", "workflow_name", "status", "queue", "attempt")
RUN_FIELDS += ("waiting_for", "created_at", "started_at", "finished_at")
STEP_FIELDS = ("position", "kind", "name", "status", "attempts", "duration_ms", "recorded_at")
WORKER_FIELDS: tuple[str, ...] = ("id", "hostname", "pid", "queues", "concurrency")
WORKER_FIELDS += ("started_at", "last_seen_at", "stopped_at")


def _fields(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in names}


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else display.format_duration(seconds)


def _run_details(run: Run) -> dict[str, Any]:
    args, kwargs = run.get_input()
    completed = run.status == durable.RunStatus.COMPLETED
    children = Run.objects.using(get_settings().DATABASE).filter(parent_id=run.pk)
    return {
        **_fields(run, (*RUN_FIELDS, "priority", "idempotency_key", "wake_at", "deadline_at")),
        "parent": run.parent_id,
        **_fields(run, ("depth", "parent_close", "cancel_requested_at", "cancel_reason")),
        "children_count": children.count(),
        "duration_seconds": display.run_seconds(run),
        "input": {"args": args, "kwargs": kwargs},
        "result": run.get_result() if completed else None,
        "error": run.error,
    }


class Command(BaseCommand):
    """Inspect and operate durable workflow runs from the shell."""

    help = (
        "Inspect and operate durable workflow runs: runs (list, show, steps, values, stream, "
        "children, cancel, retry), start, send, emit, events, workers, schedules, prune."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
        runs = groups.add_parser("runs", help="Inspect and operate runs.")
        runs_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")

        runs_list = runs_commands.add_parser("list", help="List runs, newest first.")
        runs_list.add_argument("--workflow", metavar="NAME", help="Only runs of this workflow.")
        runs_list.add_argument(
            "--status", nargs="+", action="extend", choices=durable.RunStatus.values
        )
        runs_list.add_argument("--limit", type=int, default=50, help="At most N runs (50).")
        runs_list.set_defaults(handler=self.runs_list)

        runs_show = runs_commands.add_parser("show", help="Show a run.")
        runs_show.set_defaults(handler=self.runs_show)
        runs_steps = runs_commands.add_parser("steps", help="List the steps a run recorded.")
        runs_steps.set_defaults(handler=self.runs_steps)
        for sub in (runs_show, runs_steps):
            sub.add_argument("run_id", metavar="RUN_ID")

        start = groups.add_parser("start", help="Start a run; print its id.")
        start.add_argument("workflow", metavar="WORKFLOW", help="A registered workflow name.")
        # Not dest="args": call_command() takes that one for positional arguments.
        start.add_argument(
            "--args", dest="args_json", metavar="JSON_ARRAY", help="Positional arguments: '[1, 2]'."
        )
        start.add_argument(
            "--kwargs", dest="kwargs_json", metavar="JSON_OBJECT", help="""Keywords: '{"b": 2}'."""
        )
        start.add_argument("--queue", metavar="Q")
        start.add_argument("--priority", type=int, default=0, help="Higher runs first (0).")
        start.add_argument("--delay", type=float, metavar="SECONDS", help="Start no sooner.")
        start.add_argument("--idempotency-key", metavar="KEY")
        start.add_argument(
            "--wait", type=float, metavar="SECONDS", help="Wait for the run; print its result."
        )
        start.set_defaults(handler=self.start)

        workers = groups.add_parser("workers", help="List worker processes, alive or not.")
        workers.set_defaults(handler=self.workers)

        prune = groups.add_parser("prune", help="Delete finished runs and their steps.")
        prune.add_argument(
            "--older-than",
            metavar="DURATION",
            help="Finished longer ago than this: 90s, 15m, 12h, 7d or seconds. "
            "Default: DJANGO_DURABLE['RETENTION'].",
        )
        prune.add_argument(
            "--status",
            nargs="+",
            action="extend",
            choices=sorted(str(status) for status in durable.RunStatus.terminal()),
        )
        prune.add_argument("--batch-size", type=int, default=500, help="Runs per batch (500).")
        prune.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")
        prune.set_defaults(handler=self.prune)

        for sub in (runs_list, runs_show, runs_steps, workers):
            sub.add_argument("--json", action="store_true", help="Print JSON.")
        # send, emit, events, runs values, runs stream.
        add_parsers(self, groups, runs_commands)
        # runs cancel, runs retry, runs children.
        _operate.add_parsers(self, runs_commands)
        _schedules.add_parsers(self, groups)

    def handle(self, *args: Any, **options: Any) -> None:
        options["handler"](options)

    def runs_list(self, options: dict[str, Any]) -> None:
        """List runs, newest first."""
        try:
            handles = durable.list_runs(
                workflow=options["workflow"], status=options["status"], limit=options["limit"]
            )
        except ValueError as exc:
            raise option_error(exc, "limit") from None
        runs = [handle.model for handle in handles]
        if options["json"]:
            self.stdout.write(dumps([_fields(run, RUN_FIELDS) for run in runs]))
            return
        rows = [
            (run.id, run.workflow_name, run.status, when(run.created_at), when(run.finished_at))
            for run in runs
        ]
        self.stdout.write(table(("ID", "WORKFLOW", "STATUS", "CREATED", "FINISHED"), rows))

    def runs_show(self, options: dict[str, Any]) -> None:
        """Show a run: where it is, its input, and its result or error."""
        run = get_run(options["run_id"])
        details = _run_details(run)
        if options["json"]:
            self.stdout.write(dumps(details))
            return
        facts = [
            ("Run", run.id),
            ("Workflow", run.workflow_name),
            ("Status", run.status),
            *self._cancellation(run),
            ("Waiting for", run.waiting_for or "-"),
            ("Queue", f"{run.queue} (priority {run.priority})"),
            ("Attempt", run.attempt),
            ("Idempotency key", run.idempotency_key or "-"),
            ("Created", when(run.created_at)),
            ("Started", when(run.started_at)),
            ("Finished", when(run.finished_at)),
            ("Duration", _duration(details["duration_seconds"])),
            *self._family(run, details["children_count"]),
        ]
        lines = [f"{label + ':':<17}{value}" for label, value in facts]
        lines += ["Input:", indent(dumps(details["input"]))]
        if run.status == durable.RunStatus.COMPLETED:
            lines += ["Result:", indent(dumps(details["result"]))]
        if run.error:
            lines.append(f"Error:           {display.error_summary(run.error)}")
            if run.error.get("traceback"):
                lines += ["Traceback:", indent(str(run.error["traceback"]).rstrip())]
        self.stdout.write("\n".join(lines))

    @staticmethod
    def _cancellation(run: Run) -> list[tuple[str, Any]]:
        if run.cancel_requested_at is None:
            return []
        reason = f": {run.cancel_reason}" if run.cancel_reason else ""
        return [("Cancellation", f"requested {when(run.cancel_requested_at)}{reason}")]

    @staticmethod
    def _family(run: Run, children: int) -> list[tuple[str, Any]]:
        facts: list[tuple[str, Any]] = []
        if run.parent_id is not None:
            policy = f"if the parent finishes first: {run.parent_close}"
            facts.append(("Parent", f"{run.parent_id} (depth {run.depth}; {policy})"))
        if children:
            facts.append(("Children", f"{children} (durable runs children {run.id})"))
        return facts

    def runs_steps(self, options: dict[str, Any]) -> None:
        """List the operations a run recorded, in order."""
        steps = list(get_run(options["run_id"]).steps.order_by("position"))
        if options["json"]:
            data = [
                {**_fields(step, STEP_FIELDS), "result": step.get_result(), "error": step.error}
                for step in steps
            ]
            self.stdout.write(dumps(data))
            return
        rows = [
            (
                step.position,
                step.kind,
                step.name,
                step.status,
                step.attempts,
                _duration(None if step.duration_ms is None else step.duration_ms / 1e3),
                display.error_summary(step.error) or display.preview(step.result),
            )
            for step in steps
        ]
        headers = ("#", "KIND", "NAME", "STATUS", "ATTEMPTS", "DURATION", "RESULT / ERROR")
        self.stdout.write(table(headers, rows))

    def start(self, options: dict[str, Any]) -> None:
        """Start a run and print its id; with --wait, its result too."""
        args = json_option(options["args_json"], list, "--args")
        kwargs = json_option(options["kwargs_json"], dict, "--kwargs")
        for option in ("delay", "wait"):
            value = options[option]
            if value is not None and value < 0:
                raise CommandError(f"--{option} cannot be negative.")
            if value is not None and value != value:
                raise CommandError(f"--{option} must be a number of seconds, not NaN.")
        try:
            handle = durable.start(
                options["workflow"],
                args=args,
                kwargs=kwargs,
                queue=options["queue"],
                priority=options["priority"],
                delay=options["delay"],
                idempotency_key=options["idempotency_key"],
            )
        except (durable.DurableError, ValueError, TypeError) as exc:
            raise option_error(exc, "queue", "priority", "delay", "idempotency_key") from None
        self.stdout.write(handle.id)
        if options["wait"] is None:
            return
        try:
            result = handle.result(timeout=options["wait"])
        except durable.WorkflowFailed as exc:
            if exc.traceback:
                self.stderr.write(exc.traceback.rstrip())
            raise CommandError(str(exc)) from None
        except TimeoutError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(dumps(result))

    def workers(self, options: dict[str, Any]) -> None:
        """List worker processes, newest first, and whether each is alive."""
        alias = get_settings().DATABASE
        workers = list(WorkerProcess.objects.using(alias).order_by("-started_at"))
        if options["json"]:
            data = [
                {**_fields(worker, WORKER_FIELDS), "alive": display.worker_alive(worker)}
                for worker in workers
            ]
            self.stdout.write(dumps(data))
            return
        rows = [
            (
                worker.id,
                ",".join(map(str, worker.queues)),
                worker.concurrency,
                when(worker.started_at),
                when(worker.last_seen_at),
                when(worker.stopped_at),
                "yes" if display.worker_alive(worker) else "no",
            )
            for worker in workers
        ]
        headers = ("ID", "QUEUES", "CONCURRENCY", "STARTED", "LAST SEEN", "STOPPED", "ALIVE")
        self.stdout.write(table(headers, rows))

    def prune(self, options: dict[str, Any]) -> None:
        """Delete finished runs older than --older-than (or RETENTION), in batches."""
        if options["older_than"] is not None:
            older_than = parse_duration(options["older_than"])
        elif (retention := get_settings().RETENTION) is not None:
            older_than = timedelta(seconds=retention)
        else:
            raise CommandError(
                "Say how old the finished runs to delete must be: --older-than 30d, "
                "or set DJANGO_DURABLE['RETENTION'] (seconds)."
            )
        try:
            count = durable.prune(
                older_than=older_than,
                statuses=options["status"],
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
            )
        except ValueError as exc:
            raise option_error(exc, "older_than", "batch_size", "statuses") from None
        verb = "Would delete" if options["dry_run"] else "Deleted"
        age = display.format_duration(older_than.total_seconds())
        self.stdout.write(f"{verb} {count} finished run(s) older than {age}.")
