"""``manage.py durable``: inspect and operate runs; workflows, workers, schedules, events; prune.

Every subcommand goes through the public client (``import django_durable``) and edits
no row by hand. Bad input is a ``CommandError`` (exit code 1) that says what is wrong.
What the commands print goes through ``_output``, which makes every value safe to print.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import django_durable as durable
from django_durable import display
from django_durable.core.conf import get_settings
from django_durable.core.durations import optional_seconds
from django_durable.models import WorkerProcess

from . import _callbacks, _channels, _exchange, _operate, _schedules, _show, _workflows
from ._inputs import (
    JsonInput,
    add_run_argument,
    check_one_stdin,
    option_error,
    parse_duration,
    target_run,
)
from ._output import clean, clean_lines, dumps, table, when
from ._show import RUN_FIELDS, fields

__all__ = ["Command", "parse_duration"]

STEP_FIELDS = (
    "position",
    "kind",
    "name",
    "status",
    "attempts",
    "executions",
    "duration_ms",
    "recorded_at",
)
WORKER_FIELDS: tuple[str, ...] = ("id", "hostname", "pid", "queues", "workflows", "concurrency")
WORKER_FIELDS += ("started_at", "last_seen_at", "stopped_at")
# Not dest="args": call_command() takes that one for positional arguments.
ARGS = JsonInput("args_json", "--args", "--args-file")
KWARGS = JsonInput("kwargs_json", "--kwargs", "--kwargs-file")


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else display.format_duration(seconds)


class Command(BaseCommand):
    """Inspect and operate durable workflow runs from the shell."""

    help = (
        "Inspect and operate durable workflow runs: runs (list, show, steps, values, stream, "
        "children, cancel, retry, wake, fork), start, send, emit, events, callbacks, workflows, "
        "workers, schedules, prune."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        groups = parser.add_subparsers(
            dest="group", required=True, metavar="COMMAND", help="durable COMMAND -h: its options."
        )
        runs = groups.add_parser("runs", help="Inspect and operate runs.")
        runs_commands = runs.add_subparsers(
            dest="runs_command",
            required=True,
            metavar="ACTION",
            help="durable runs ACTION -h: its options.",
        )
        self._add_runs_parsers(runs_commands)  # list, show, steps
        _channels.add_parsers(self, runs_commands)  # values, stream
        _operate.add_parsers(self, runs_commands)  # cancel, retry, wake, fork, children
        self._add_start_parser(groups)
        _exchange.add_parsers(self, groups)  # send, emit, events
        _callbacks.add_parsers(self, groups)  # callbacks complete, fail
        _workflows.add_parsers(self, groups)
        workers = groups.add_parser("workers", help="List worker processes, alive or not.")
        workers.add_argument("--json", action="store_true", help="Print JSON.")
        workers.set_defaults(handler=self.workers)
        _schedules.add_parsers(self, groups)
        self._add_prune_parser(groups)

    def _add_runs_parsers(self, runs_commands: Any) -> None:
        """``runs list``, ``runs show`` and ``runs steps``."""
        runs_list = runs_commands.add_parser("list", help="List runs, newest first.")
        runs_list.add_argument("--workflow", metavar="NAME", help="Only runs of this workflow.")
        runs_list.add_argument(
            "--status",
            nargs="+",
            action="extend",
            choices=durable.RunStatus.values,
            metavar="STATUS",
            help="Only runs in these statuses: %(choices)s.",
        )
        runs_list.add_argument(
            "--limit", type=int, default=50, metavar="N", help="At most N runs (50)."
        )
        runs_list.set_defaults(handler=self.runs_list)
        _show.add_parsers(self, runs_commands)
        runs_steps = runs_commands.add_parser("steps", help="List the steps a run recorded.")
        add_run_argument(runs_steps, "The run.")
        runs_steps.set_defaults(handler=self.runs_steps)
        for sub in (runs_list, runs_steps):
            sub.add_argument("--json", action="store_true", help="Print JSON.")

    def _add_start_parser(self, groups: Any) -> None:
        """``start WORKFLOW``."""
        start = groups.add_parser("start", help="Start a run; print its id.")
        start.add_argument("workflow", metavar="WORKFLOW", help="A registered workflow name.")
        ARGS.add(start, metavar="JSON_ARRAY", help="Positional arguments: '[1, 2]'.")
        KWARGS.add(start, metavar="JSON_OBJECT", help="""Keyword arguments: '{"b": 2}'.""")
        start.add_argument("--queue", metavar="Q", help="Instead of the workflow's queue.")
        start.add_argument(
            "--priority", type=int, default=0, metavar="N", help="Higher runs first (0)."
        )
        start.add_argument(
            "--delay", type=float, metavar="SECONDS", help="Start no sooner than this from now."
        )
        start.add_argument(
            "--idempotency-key", metavar="KEY", help="Start once: the same key returns that run."
        )
        start.add_argument(
            "--wait", type=float, metavar="SECONDS", help="Wait for the run; print its result."
        )
        start.set_defaults(handler=self.start)

    def _add_prune_parser(self, groups: Any) -> None:
        """``prune``."""
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
            metavar="STATUS",
            help="Only runs in these statuses: %(choices)s (default: all three).",
        )
        prune.add_argument(
            "--batch-size", type=int, default=500, metavar="N", help="Runs per batch (500)."
        )
        prune.add_argument(
            "--pause",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Wait this long after each batch, to leave the database to the workers "
            "(default: twice as long as the batch took; 0: no wait).",
        )
        prune.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")
        prune.add_argument("--json", action="store_true", help="Print JSON.")
        prune.set_defaults(handler=self.prune)

    def execute(self, *args: Any, **options: Any) -> str | None:
        """Run the command; an error message is made safe to print, like every output."""
        try:
            return super().execute(*args, **options)
        except CommandError as exc:
            raise CommandError(clean(str(exc)), returncode=exc.returncode) from None

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
            self.stdout.write(dumps([fields(run, RUN_FIELDS) for run in runs]))
            return
        rows = [
            (run.id, run.workflow_name, run.status, when(run.created_at), when(run.finished_at))
            for run in runs
        ]
        self.stdout.write(table(("ID", "WORKFLOW", "STATUS", "CREATED", "FINISHED"), rows))

    def runs_steps(self, options: dict[str, Any]) -> None:
        """List the operations a run recorded, in order."""
        steps = list(target_run(options).steps.order_by("position"))
        if options["json"]:
            data = [
                {**fields(step, STEP_FIELDS), "result": step.get_result(), "error": step.error}
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
                display.attempts_text(step),
                _duration(None if step.duration_ms is None else step.duration_ms / 1e3),
                display.error_summary(step.error) or display.preview(step.result),
            )
            for step in steps
        ]
        headers = ("#", "KIND", "NAME", "STATUS", "ATTEMPTS", "DURATION", "RESULT / ERROR")
        self.stdout.write(table(headers, rows))

    def start(self, options: dict[str, Any]) -> None:
        """Start a run and print its id; with --wait, its result too."""
        check_one_stdin(options, (ARGS, KWARGS))
        args = ARGS.value(options, list)
        kwargs = KWARGS.value(options, dict)
        for option in ("delay", "wait"):
            try:
                optional_seconds(options[option], f"--{option}")
            except ValueError as exc:
                raise CommandError(str(exc)) from None
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
                self.stderr.write(clean_lines(exc.traceback.rstrip()))
            raise CommandError(str(exc)) from None
        except TimeoutError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(dumps(result))

    def workers(self, options: dict[str, Any]) -> None:
        """List worker processes, newest first, and whether each is alive."""
        alias = get_settings().DATABASE
        workers = list(WorkerProcess.objects.using(alias).order_by("-started_at"))
        since = display.alive_since()  # by the database's clock, once for the list
        if options["json"]:
            data = [
                {**fields(worker, WORKER_FIELDS), "alive": display.worker_alive(worker, since)}
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
                "yes" if display.worker_alive(worker, since) else "no",
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
            pruned = durable.prune(
                older_than=older_than,
                statuses=options["status"],
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                pause=options["pause"],
            )
        except ValueError as exc:
            raise option_error(exc, "older_than", "batch_size", "statuses", "pause") from None
        if options["json"]:
            self.stdout.write(
                dumps(
                    {
                        "runs": pruned.runs,
                        "events": pruned.events,
                        "events_kept": pruned.events_kept,
                        "dry_run": options["dry_run"],
                    }
                )
            )
            return
        verb = "Would delete" if options["dry_run"] else "Deleted"
        age = display.format_duration(older_than.total_seconds())
        self.stdout.write(f"{verb} {pruned.runs} finished run(s) older than {age}.")
        if pruned.events_kept:
            verb = "Would keep" if options["dry_run"] else "Kept"
            self.stdout.write(
                f"{verb} {pruned.events_kept} event(s) as old: workflows they trigger have "
                "not started their batches yet."
            )
