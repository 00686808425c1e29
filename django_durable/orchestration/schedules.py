"""Cron schedules: the code's schedules kept in the table, and one run started per tick.

A ``Schedule`` row says when its workflow runs: a cron expression read in a time zone.
Workflows declared with ``@durable.workflow(schedule=...)`` get a row each, kept in step
with the code by :func:`sync_code_schedules` (every worker calls it when it starts); the
admin adds others. Every worker calls :func:`dispatch_due_schedules` in each maintenance
round: it starts a run for each tick that has come, with the idempotency key
``schedule:<id>:<tick>``, so a tick starts one run however many workers see it at once,
and even if a dispatcher crashed after starting it. On PostgreSQL due schedules are locked
``FOR UPDATE SKIP LOCKED`` (workers share them out) and compared with the database's clock.
"""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from ..client.starting import create_run
from ..core import clock
from ..core.conf import get_settings
from ..core.cron import MICROSECOND, iter_ticks, latest_tick, next_tick
from ..core.statuses import MissedTicks
from ..declarations.registry import get_workflow, registered_workflows
from ..declarations.workflows import Workflow
from ..exceptions import WorkflowNotFound
from ..models import Schedule
from ..store.dialect import dialect

logger = logging.getLogger("django_durable")


# Runs a ``catch_up`` schedule starts per dispatch at most; the later ticks start next round.
MAX_CATCH_UP = 100


def due_ticks(schedule: Schedule, now: datetime, *, limit: int = MAX_CATCH_UP) -> list[datetime]:
    """Return the ticks of ``schedule`` to start at ``now``, oldest first.

    The ticks that came since the last one started (from ``next_tick_at``) are due.
    ``skip`` starts only the latest of them, so a worker outage ends with one run;
    ``catch_up`` starts every one, at most ``limit`` per call.
    """
    if schedule.next_tick_at is None or schedule.next_tick_at > now:
        return []
    start = schedule.next_tick_at
    if schedule.last_tick_at is not None:
        start = max(start, schedule.last_tick_at + MICROSECOND)
    cron, zone = schedule.cron, schedule.time_zone
    if schedule.missed_ticks != MissedTicks.CATCH_UP:
        latest = latest_tick(cron, zone, now)
        return [latest] if latest >= start else []
    ticks = itertools.takewhile(
        lambda tick: tick <= now, iter_ticks(cron, zone, start - MICROSECOND)
    )
    return list(itertools.islice(ticks, limit))


def tick_key(schedule: Schedule, tick: datetime) -> str:
    """Return the idempotency key of the run of ``schedule`` for ``tick``."""
    return f"schedule:{schedule.pk}:{tick.astimezone(UTC).isoformat()}"


def code_schedule_name(workflow_name: str) -> str:
    """Return the name of the schedule of a workflow declared with ``schedule=``."""
    return f"{Schedule.CODE_PREFIX}{workflow_name}"


def sync_code_schedules(*, alias: str | None = None) -> int:
    """Make the schedules declared in code match the registry; return the rows changed.

    Each workflow with ``schedule=`` has a row named ``workflow:<name>``: missing rows are
    created, rows whose cron expression, time zone or missed-ticks policy changed are
    updated, and rows of workflows that no longer declare a schedule are deleted. Rows made
    in the admin are never touched, nor is ``enabled`` (the admin may pause a schedule).
    Workers call it when they start; several at once are fine.
    """
    alias = alias or get_settings().DATABASE
    declared = {
        code_schedule_name(name): workflow
        for name, workflow in registered_workflows().items()
        if workflow.schedule is not None
    }
    stored = {row.name: row for row in Schedule.objects.using(alias).filter(from_code=True)}
    changed = 0
    for name, workflow in sorted(declared.items()):
        row = stored.get(name)
        if row is None:
            changed += _create_code_schedule(name, workflow, alias)
        else:
            changed += _update_code_schedule(row, workflow, alias)
    gone = [row.pk for name, row in stored.items() if name not in declared]
    if gone:
        _, counts = Schedule.objects.using(alias).filter(pk__in=gone, from_code=True).delete()
        changed += counts.get(Schedule._meta.label, 0)
    return changed


def _declared_values(workflow: Workflow[Any, Any]) -> dict[str, Any]:
    spec = workflow.schedule
    assert spec is not None
    return {
        "workflow_name": workflow.name,
        "cron": spec.cron,
        "time_zone": spec.time_zone,
        "missed_ticks": spec.missed_ticks,
    }


def _first_tick(name: str, values: dict[str, Any], now: datetime) -> datetime | None:
    """Return the first tick of a code schedule; ``None`` (logged) if it never ticks."""
    try:
        return next_tick(values["cron"], values["time_zone"], now)
    except ValueError as exc:  # a worker still starts: its other work goes on
        logger.error("Schedule %r is stopped: %s Fix it in the code.", name, exc)
        return None


def _create_code_schedule(name: str, workflow: Workflow[Any, Any], alias: str) -> int:
    values = _declared_values(workflow)
    # The database's time, not this worker's: a clock minutes off would skip or add ticks.
    first = _first_tick(name, values, clock.database_now(alias))
    try:
        with transaction.atomic(using=alias):  # a savepoint: another worker may race us
            # Not save(): it would compute the next tick again, and fail if there is none.
            row = Schedule(name=name, from_code=True, next_tick_at=first, **values)
            Schedule.objects.using(alias).bulk_create([row])
    except IntegrityError:
        existing = Schedule.objects.using(alias).filter(name=name).first()
        if existing is None:
            raise
        if not existing.from_code:
            logger.error(
                "The schedule of workflow %r is not installed: an admin schedule is named %r. "
                "Rename that one.",
                workflow.name,
                name,
            )
        return 0  # else another worker created it meanwhile
    logger.info("Schedule %r added: %s (%s)", name, values["cron"], values["time_zone"])
    return 1


def _update_code_schedule(row: Schedule, workflow: Workflow[Any, Any], alias: str) -> int:
    values = _declared_values(workflow)
    same = all(getattr(row, field) == value for field, value in values.items())
    if same and row.next_tick_at is not None:
        return 0
    now = clock.database_now(alias)
    timing = (values["cron"], values["time_zone"])
    if row.next_tick_at is None or (row.cron, row.time_zone) != timing:
        values["next_tick_at"] = _first_tick(row.name, values, now)
    Schedule.objects.using(alias).filter(pk=row.pk, from_code=True).update(**values, updated_at=now)
    logger.info("Schedule %r changed: %s (%s)", row.name, values["cron"], values["time_zone"])
    return 1


def dispatch_due_schedules(*, alias: str | None = None, limit: int = 100) -> int:
    """Start a run for every tick that has come, of up to ``limit`` schedules; return how many.

    Each schedule is handled in a transaction of its own: its runs start (one per due tick,
    under the tick's idempotency key, with ``scheduled_time=`` the tick) and its next tick
    moves on together. A schedule that cannot start its runs (its workflow is not
    registered, its arguments are wrong) is logged and its ticks move on; database
    outages are raised (the worker backs off and tries again).
    """
    alias = alias or get_settings().DATABASE
    due = Schedule.objects.using(alias).filter(
        enabled=True, next_tick_at__lte=clock.database_time(alias=alias)
    )
    candidates = list(due.order_by("next_tick_at", "pk").values_list("pk", flat=True)[:limit])
    started = 0
    for pk in candidates:
        with transaction.atomic(using=alias):
            locked = _lock_if_due(pk, alias)
            if locked is not None:
                started += _dispatch(*locked, alias=alias)
    return started


def _lock_if_due(pk: int, alias: str) -> tuple[Schedule, datetime] | None:
    """Lock the schedule if it is still due; return it and the time (``None``: it is not)."""
    if not dialect(alias).pg:  # SQLite: this transaction is the only writer
        now = clock.now()
        schedule = Schedule.objects.using(alias).filter(pk=pk, enabled=True, next_tick_at__lte=now)
        found = schedule.first()
        return None if found is None else (found, now)
    # Another worker holding it dispatches it; one that committed moved its next tick on.
    row = (
        Schedule.objects.using(alias)
        .filter(pk=pk, enabled=True, next_tick_at__lte=clock.database_time(alias=alias))
        .select_for_update(skip_locked=True)
        .annotate(db_now=clock.database_time(alias=alias))
        .first()
    )
    return None if row is None else (row, row.db_now)


def _dispatch(schedule: Schedule, now: datetime, *, alias: str) -> int:
    """Start the runs of the schedule's due ticks and move its next tick on."""
    try:
        ticks = due_ticks(schedule, now, limit=MAX_CATCH_UP)
        following = next_tick(schedule.cron, schedule.time_zone, ticks[-1] if ticks else now)
    except ValueError as exc:
        logger.error(
            "Schedule %r is stopped: %s Fix its cron expression or time zone in the admin.",
            schedule.name,
            exc,
        )
        _move_on(schedule, None, schedule.last_tick_at, alias=alias)
        return 0
    started = _start_runs(schedule, ticks, alias=alias) if ticks else None
    last = schedule.last_tick_at if started is None else ticks[-1]
    # catch_up past its limit: ``following`` is due already, and starts next round.
    _move_on(schedule, following, last, alias=alias)
    return started or 0


def _start_runs(schedule: Schedule, ticks: list[datetime], *, alias: str) -> int | None:
    """Start one run per tick (once: the tick's idempotency key); return how many are new.

    ``None`` means the ticks were skipped: the schedule cannot start runs (logged).
    """
    try:
        workflow = get_workflow(schedule.workflow_name)
    except WorkflowNotFound:
        logger.error(
            "Schedule %r names the workflow %r, which is not registered: skipped %d tick(s), "
            "up to %s.",
            schedule.name,
            schedule.workflow_name,
            len(ticks),
            ticks[-1].isoformat(),
        )
        return None
    wrong = schedule.argument_errors()
    if wrong:
        logger.error(
            "Schedule %r has wrong arguments (%s): skipped %d tick(s).",
            schedule.name,
            " ".join(wrong.values()),
            len(ticks),
        )
        return None
    started = 0
    try:
        with transaction.atomic(using=alias):  # a savepoint: all of them, or none
            for tick in ticks:
                options = workflow.using(idempotency_key=tick_key(schedule, tick))
                kwargs = {**schedule.kwargs, "scheduled_time": tick}
                started += create_run(options, schedule.args, kwargs)[1]
    except (InterfaceError, OperationalError):
        raise
    except Exception:
        logger.exception(
            "Schedule %r could not start its runs: skipped %d tick(s).", schedule.name, len(ticks)
        )
        return None
    return started


def _move_on(
    schedule: Schedule, next_tick_at: datetime | None, last_tick_at: datetime | None, *, alias: str
) -> None:
    """Store the schedule's next and last ticks, unless someone changed it since it was read."""
    Schedule.objects.using(alias).filter(pk=schedule.pk, next_tick_at=schedule.next_tick_at).update(
        next_tick_at=next_tick_at, last_tick_at=last_tick_at, updated_at=timezone.now()
    )
