"""The figures of the admin's dashboard, as plain values: what runs started, finished and
failed lately, what waits, how far behind each queue is, which workers are alive.

One query per figure, each served by an index of ``durable_run`` (see the models' indexes
and docs/reference/models.md): the page costs the same with a thousand runs or millions.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import (
    Count,
    DateTimeField,
    F,
    IntegerField,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, Left, TruncHour
from django.utils import timezone

from ..core import hour_counts
from ..core.conf import get_settings
from ..core.statuses import RunStatus
from ..declarations.registry import registered_workflows
from ..models import Run, WorkerProcess

# How many failures the dashboard lists, and how much of each error's message it reads.
FAILURES = 20
ERROR_CHARS = 300
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """Runs started (created), completed and failed in a window."""

    started: int = 0
    completed: int = 0
    failed: int = 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Activity:
    """What one workflow's runs did in the last hour and in the last 24 hours."""

    workflow: str
    hour: Counts
    day: Counts


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Waiting:
    """A workflow's waiting runs, and since when the one that waits longest waits."""

    workflow: str
    runs: int
    since: datetime | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QueueLag:
    """A queue's ready runs (pending, due) and how long the oldest one has been ready."""

    queue: str
    ready: int
    oldest: datetime | None  # when the oldest ready run became ready

    def lag(self, now: datetime) -> float:
        """Return the seconds the oldest ready run has waited for a worker (0 when none)."""
        return 0.0 if self.oldest is None else max(0.0, (now - self.oldest).total_seconds())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LiveWorker:
    """A worker process that is alive, and the runs it executes now."""

    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    in_flight: int
    last_seen_at: datetime


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A failed run: which, when, and the first line of its error."""

    run_id: uuid.UUID
    workflow: str
    finished_at: datetime | None
    attempt: int
    error: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Dashboard:
    """Every figure of the dashboard, as of ``now``."""

    now: datetime
    activity: list[Activity]
    waiting: list[Waiting]
    queues: list[QueueLag]
    workers: list[LiveWorker]
    failures: list[Failure]

    def totals(self, window: str) -> Counts:
        """Return the started, completed and failed runs of all workflows in ``hour`` or ``day``."""
        counts = [getattr(item, window) for item in self.activity]
        return Counts(
            started=sum(c.started for c in counts),
            completed=sum(c.completed for c in counts),
            failed=sum(c.failed for c in counts),
        )


def dashboard(now: datetime | None = None) -> Dashboard:
    """Return the dashboard's figures: five queries, each through an index."""
    now = now or timezone.now()
    runs = Run.objects.using(get_settings().DATABASE).order_by()
    return Dashboard(
        now=now,
        activity=activity(runs, now),
        waiting=waiting(runs),
        queues=queue_lags(runs, now),
        workers=live_workers(),
        failures=failures(runs),
    )


def activity(runs: QuerySet[Run], now: datetime) -> list[Activity]:
    """Return, per workflow, the runs created, completed and failed in the last hour and day.

    One query: the runs created in the window (index ``durable_run_created``) and those that
    completed or failed in it (``durable_run_finished``), side by side. Only the part of the
    day that is not a whole past hour is read every time; the whole hours' counts are kept
    in the cache (``core.hour_counts``) and read from the table only when missing there.
    """
    hour, day = now - HOUR, now - DAY
    # The whole hours from `first` to `last` may come from the cache; `last` is at least an
    # hour ago, so a transaction that began before it has long committed.
    first, last = _hour_of(day + HOUR - timedelta(microseconds=1)), _hour_of(hour)
    hours = [first + HOUR * n for n in range(int((last - first) / HOUR))]
    alias = runs.db
    generation = hour_counts.generation(alias)
    keys = {at: hour_counts.key(alias, generation, int(at.timestamp())) for at in hours}
    kept = hour_counts.read(list(keys.values()))
    missing = [at for at in hours if keys[at] not in kept]
    parts = [_counted(runs, day, first, hour=hour), _counted(runs, last, None, hour=hour)]
    if missing:
        parts.append(_counted(runs, missing[0], missing[-1] + HOUR, hour=None))
    table: dict[str, dict[str, dict[str, int]]] = {}
    counted: dict[datetime, list[tuple[str, str, int]]] = {at: [] for at in missing}
    started, *others = [q for pair in parts for q in pair]
    found: Iterable[tuple[str, str, datetime | None, int, int]] = started.union(*others, all=True)
    for workflow, what, at, in_hour, in_day in found:
        if at is None:
            _add(table, workflow, what, in_hour, in_day)
        elif (at := _hour_of(at)) in counted:
            counted[at].append((workflow, what, in_day))
    fresh = {keys[at]: rows for at, rows in counted.items()}
    hour_counts.keep(fresh)
    for rows in (*kept.values(), *fresh.values()):
        for workflow, what, in_day in rows:
            _add(table, workflow, what, 0, in_day)
    rows = [_activity(workflow, windows) for workflow, windows in table.items()]
    return sorted(rows, key=lambda row: (-_total(row.day), row.workflow))


def _counted(
    runs: QuerySet[Run], since: datetime, until: datetime | None, *, hour: datetime | None
) -> tuple[QuerySet[Any], QuerySet[Any]]:
    """Return the counts of runs created (``what`` "started") and of runs completed or failed
    (``what`` their status) from ``since`` until ``until``, as rows ``(workflow, what, at,
    in_hour, in_day)``: with ``hour``, per workflow, ``in_hour`` counting those since
    ``hour`` and ``at`` NULL; without, per workflow and hour ``at``, ``in_hour`` 0."""
    return (
        _counted_by(runs, "created_at", (), Value("started"), since, until, hour),
        _counted_by(_finished(runs), "finished_at", ("status",), F("status"), since, until, hour),
    )


def _counted_by(
    runs: QuerySet[Run],
    column: str,
    group: tuple[str, ...],
    what: Value | F,
    since: datetime,
    until: datetime | None,
    hour: datetime | None,
) -> QuerySet[Any]:
    runs = _between(runs, column, since, until)
    if hour is None:
        runs = runs.annotate(at=TruncHour(column, tzinfo=UTC))
        grouped = runs.values("workflow_name", *group, "at").annotate(what=what, in_hour=Value(0))
    else:
        # Typed: a bare NULL in the first queries of a UNION would be taken for text.
        no_hour = Cast(Value(None), output_field=DateTimeField())
        grouped = runs.values("workflow_name", *group).annotate(what=what, at=no_hour)
        grouped = grouped.annotate(in_hour=_count(column, hour))
    return grouped.annotate(in_day=Count("*")).values_list(
        "workflow_name", "what", "at", "in_hour", "in_day"
    )


def _finished(runs: QuerySet[Run]) -> QuerySet[Run]:
    return runs.filter(status__in=(RunStatus.COMPLETED, RunStatus.FAILED))


def _between(
    runs: QuerySet[Run], column: str, since: datetime, until: datetime | None
) -> QuerySet[Run]:
    runs = runs.filter(**{f"{column}__gte": since})
    return runs if until is None else runs.filter(**{f"{column}__lt": until})


def _hour_of(moment: datetime) -> datetime:
    """Return the start of the hour (UTC) that ``moment`` is in (naive: in UTC already, as a
    union of queries may give the truncated hours)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def _add(
    table: dict[str, dict[str, dict[str, int]]], workflow: str, what: str, hour: int, day: int
) -> None:
    windows = table.setdefault(workflow, {"hour": {}, "day": {}})
    windows["hour"][what] = windows["hour"].get(what, 0) + hour
    windows["day"][what] = windows["day"].get(what, 0) + day


def waiting(runs: QuerySet[Run]) -> list[Waiting]:
    """Return, per workflow, its waiting runs and since when the oldest of them waits.

    A run's ``updated_at`` is when it began to wait: nothing writes a waiting run but what
    wakes it (index ``durable_run_wake``).
    """
    rows = (
        runs.filter(status=RunStatus.WAITING)
        .values("workflow_name")
        .annotate(count=Count("*"), since=Min("updated_at"))
        .values_list("workflow_name", "count", "since")
    )
    found = [Waiting(workflow=name, runs=count, since=since) for name, count, since in rows]
    return sorted(found, key=lambda row: (-row.runs, row.workflow))


def queue_lags(runs: QuerySet[Run], now: datetime) -> list[QueueLag]:
    """Return every queue's ready runs and when its oldest ready run became ready.

    The queues that the settings and the registered workflows name are listed even when
    nothing is ready in them (index ``durable_run_ready``, the claim's own).
    """
    rows = (
        runs.filter(status=RunStatus.PENDING, available_at__lte=now)
        .values("queue")
        .annotate(count=Count("*"), oldest=Min("available_at"))
        .values_list("queue", "count", "oldest")
    )
    found = {
        queue: QueueLag(queue=queue, ready=count, oldest=oldest) for queue, count, oldest in rows
    }
    for queue in known_queues():
        found.setdefault(queue, QueueLag(queue=queue, ready=0, oldest=None))
    return sorted(found.values(), key=lambda row: (-row.lag(now), -row.ready, row.queue))


def known_queues() -> set[str]:
    """Return the default queue, the configured ones and those of registered workflows."""
    settings = get_settings()
    named = {workflow.queue for workflow in registered_workflows().values() if workflow.queue}
    return {settings.DEFAULT_QUEUE, *settings.QUEUES, *named}


def live_workers() -> list[LiveWorker]:
    """Return the workers alive now, each with the number of runs it holds a lease on.

    The running runs are few, and all in index ``durable_run_lease``.
    """
    alias = get_settings().DATABASE
    in_flight = (
        Run.objects.using(alias)
        .filter(status=RunStatus.RUNNING, claimed_by=OuterRef("pk"))
        .order_by()
        .values("claimed_by")
        .annotate(count=Count("*"))
        .values("count")
    )
    workers = (
        WorkerProcess.objects.using(alias)
        .alive()
        .annotate(in_flight=Coalesce(Subquery(in_flight, output_field=IntegerField()), 0))
        .order_by("hostname", "pid", "id")
    )
    return [_worker(worker) for worker in workers]


def failures(runs: QuerySet[Run], limit: int = FAILURES) -> list[Failure]:
    """Return the newest failed runs, with the first line of their error.

    Only the error's type and the head of its message are read, never its traceback
    (index ``durable_run_failed``: only failed runs are in it).
    """
    rows = (
        runs.filter(status=RunStatus.FAILED, finished_at__isnull=False)
        .annotate(
            error_type=KeyTextTransform("type", "error"),
            error_message=Left(KeyTextTransform("message", "error"), ERROR_CHARS),
        )
        .order_by("-finished_at", "-id")
        .values_list("id", "workflow_name", "finished_at", "attempt", "error_type", "error_message")
    )
    return [
        Failure(
            run_id=run_id,
            workflow=workflow,
            finished_at=finished_at,
            attempt=attempt,
            error=first_line(error_type, message),
        )
        for run_id, workflow, finished_at, attempt, error_type, message in rows[:limit]
    ]


def first_line(error_type: str | None, message: str | None) -> str:
    """Return ``Type: the message's first line`` ("" when the run recorded no error)."""
    line = (message or "").strip().split("\n", 1)[0].strip()
    if not error_type:
        return line
    short = error_type.rsplit(".", 1)[-1]  # as the run's summary says it
    return f"{short}: {line}" if line else short


def _count(column: str, since: datetime) -> Count:
    """Return ``COUNT(column) FILTER (WHERE column >= since)``.

    Of the window's own column, in the index already: Django filters no ``COUNT(*)``.
    """
    return Count(column, filter=Q(**{f"{column}__gte": since}))


def _activity(workflow: str, windows: dict[str, dict[str, int]]) -> Activity:
    def counts(figures: dict[str, int]) -> Counts:
        return Counts(
            started=figures.get("started", 0),
            completed=figures.get(RunStatus.COMPLETED, 0),
            failed=figures.get(RunStatus.FAILED, 0),
        )

    return Activity(workflow=workflow, hour=counts(windows["hour"]), day=counts(windows["day"]))


def _total(counts: Counts) -> int:
    return counts.started + counts.completed + counts.failed


def _worker(worker: WorkerProcess) -> LiveWorker:
    queues: Iterable[object] = worker.queues if isinstance(worker.queues, list) else []
    return LiveWorker(
        id=worker.id,
        hostname=worker.hostname,
        pid=worker.pid,
        queues=[str(queue) for queue in queues],
        concurrency=worker.concurrency,
        in_flight=int(getattr(worker, "in_flight", 0) or 0),
        last_seen_at=worker.last_seen_at,
    )
