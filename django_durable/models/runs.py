"""Runs and the operations they recorded."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import CharField, Q
from django.db.models.functions import Cast, Right
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..core import serialization
from ..core.statuses import ParentClose, RunStatus, StepStatus


def uuid7() -> uuid.UUID:
    """Return a time-ordered UUID (RFC 9562 version 7): new rows land at the index's end."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


# The end of a run's id, as lists show it (the start of a UUIDv7 is its creation time, the
# end tells runs apart): the last 12 hex digits, on PostgreSQL (dashed text) and SQLite (hex).
SHORT_ID = Right(Cast("id", output_field=CharField()), 12)


class RunQuerySet(models.QuerySet["Run"]):
    """Runs, filtered by state."""

    def ready(self) -> RunQuerySet:
        """Return runs a worker may claim now."""
        return self.filter(status=RunStatus.PENDING, available_at__lte=timezone.now())

    def waiting(self) -> RunQuerySet:
        """Return suspended runs."""
        return self.filter(status=RunStatus.WAITING)

    def expired(self) -> RunQuerySet:
        """Return running runs whose lease ran out (their worker is gone or stuck)."""
        return self.filter(status=RunStatus.RUNNING, lease_expires_at__lt=timezone.now())

    def active(self) -> RunQuerySet:
        """Return runs that are not finished."""
        return self.exclude(status__in=RunStatus.terminal())

    def finished(self) -> RunQuerySet:
        """Return runs in a terminal state."""
        return self.filter(status__in=RunStatus.terminal())


class Run(models.Model):
    """One execution of a workflow, from start to a terminal state."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workflow_name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    queue = models.CharField(max_length=100, default="default")
    # Higher runs first.
    priority = models.SmallIntegerField(default=0)
    # {"args": [...], "kwargs": {...}} as tagged JSON (see serialization).
    input = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    # {"type", "message", "traceback", ...} of the error that failed the run.
    error = models.JSONField(null=True, blank=True)
    # The OpenTelemetry context of the code that started the run ({"traceparent": ...}),
    # the parent of its executions' spans. NULL without OpenTelemetry.
    trace_context = models.JSONField(null=True, blank=True)
    # NULL, not "": runs without a key must not collide in the unique index.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    # The user model may live in another database (DJANGO_DURABLE["DATABASE"] with a
    # router): no database constraint, and Django's deletion, which looks for related rows
    # in the user's database only, does not follow it. client/owners.py clears it instead.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="durable_runs",
    )
    # The key of the workflow's flow control (concurrency_key=, singleton_key=, debounce=),
    # computed from the input at start; NULL for a workflow without one.
    flow_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # How many runs of this workflow and key may run at once (NULL: any number); on the
    # run, so that the claim needs no registry.
    flow_limit = models.PositiveSmallIntegerField(null=True, blank=True)
    # Workflow-level attempt, 1-based (a failed run retried by its policy counts up).
    attempt = models.PositiveIntegerField(default=1)
    # Fencing token: incremented by every claim; every write from a worker checks it.
    # Never reset: token 1 means "first claim ever", when no records can exist (but for a
    # fork, whose copied records the claim reads too).
    lease_token = models.PositiveBigIntegerField(default=0)
    # The worker holding the lease; NULL when none does (the SQL tests IS NULL).
    claimed_by = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Leases that expired in a row: the run's workers died or stalled mid-run.
    recoveries = models.PositiveSmallIntegerField(default=0)
    # A pending run is not claimed before this time (start delay).
    available_at = models.DateTimeField(default=timezone.now)
    # A waiting run becomes pending at this time (``None``: only when woken).
    wake_at = models.DateTimeField(null=True, blank=True)
    # What a waiting run waits for, for people: "sleep", "retry of step 'charge'", ...
    waiting_for = models.CharField(max_length=255, blank=True, default="")
    # What wakes a waiting run, for the code: "e:<event name>", "m:<message topic>"
    # or "c:<child run id>" (the child finishing).
    wake_on = models.CharField(max_length=300, null=True, blank=True)  # noqa: DJ001
    # The run fails with WorkflowTimedOut if it is not finished by then (with
    # on_timeout="cancel" it is cancelled instead, and its cleanup runs).
    deadline_at = models.DateTimeField(null=True, blank=True)
    # The run that started this one with ctx.start_child(), and where in it.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    parent_position = models.PositiveIntegerField(null=True, blank=True)
    # The run this one was forked from with durable.fork(): its first records are copies of
    # that run's. Indexed (partially) in Meta: most runs are no fork.
    forked_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="forks",
        db_index=False,
    )
    # 0 for a top-level run, its parent's depth + 1 for a child.
    depth = models.PositiveSmallIntegerField(default=0)
    # What happens to this child when its parent finishes before it.
    parent_close = models.CharField(
        max_length=16, choices=ParentClose.choices, default=ParentClose.CANCEL
    )
    # Set by durable.cancel(): the run raises Cancelled at its next durable operation.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RunQuerySet.as_manager()

    class Meta:
        db_table = "durable_run"
        ordering = ("-created_at",)
        verbose_name = _("workflow run")
        permissions = (
            ("operate_run", _("Can operate runs that others own (send, cancel, retry)")),
            # One per button of a run's admin page; operate_run allows them all.
            ("cancel_run", _("Can cancel runs")),
            ("retry_run", _("Can retry runs")),
            ("wake_run", _("Can wake waiting runs now")),
            ("send_message", _("Can send messages to runs")),
            # Not given by operate_run: a fork is a new run that executes code again.
            ("fork_run", _("Can fork runs from a step")),
        )
        indexes = (
            # Claim: only pending rows are in it, however many finished runs pile up.
            models.Index(
                fields=("queue", "-priority", "available_at"),
                condition=Q(status="pending"),
                name="durable_run_ready",
            ),
            # Also the admin dashboard's waiting runs per workflow and the oldest wait: an
            # index-only scan of the waiting runs (a waiting run's updated_at is when it began).
            models.Index(
                fields=("wake_at", "workflow_name", "updated_at"),
                condition=Q(status="waiting"),
                name="durable_run_wake",
            ),
            # Emitting an event finds its waiters here.
            models.Index(
                fields=("wake_on",), condition=Q(status="waiting"), name="durable_run_wake_on"
            ),
            models.Index(
                fields=("lease_expires_at",),
                condition=Q(status="running"),
                name="durable_run_lease",
            ),
            # Pruning: finished runs, oldest first. The workflow and status after them make
            # the admin dashboard's runs finished per workflow an index-only scan.
            models.Index(
                fields=("finished_at", "id", "workflow_name", "status"),
                condition=Q(status__in=("completed", "failed", "cancelled")),
                name="durable_run_finished",
            ),
            # The admin dashboard's last failures, newest first: only failed runs are in it,
            # so that it reads 20 entries however rare failures are among finished runs.
            models.Index(
                fields=("finished_at", "id"),
                condition=Q(status="failed"),
                name="durable_run_failed",
            ),
            # Lists newest first; with the workflow, the dashboard's runs started per workflow
            # in the last day is an index-only scan.
            models.Index(fields=("-created_at", "workflow_name"), name="durable_run_created"),
            models.Index(fields=("workflow_name", "-created_at"), name="durable_run_workflow"),
            # Flow control: the ready runs under a per-key limit, in claim order (a claim
            # locks their keys first; empty when no workflow has one), and the unfinished
            # runs of a key (those running under a live lease fill its slots; a singleton
            # start finds the one it returns, a debounced one the one it delays).
            models.Index(
                fields=("queue", "-priority", "available_at"),
                condition=Q(status="pending", flow_limit__isnull=False),
                name="durable_run_flow_ready",
            ),
            models.Index(
                fields=("flow_key", "workflow_name", "status", "lease_expires_at"),
                condition=Q(status__in=("pending", "running", "waiting"), flow_key__isnull=False),
                name="durable_run_flow_active",
            ),
            # The ready runs under no per-key limit, in claim order: a claim that holds no
            # key's lock takes only those, and reads none of the runs queued behind a full
            # key (thousands, when one tenant floods a keyed workflow).
            models.Index(
                fields=("queue", "-priority", "available_at"),
                condition=Q(status="pending", flow_limit__isnull=True),
                name="durable_run_ready_plain",
            ),
            # Queue rate limits count the runs a queue started recently.
            models.Index(fields=("queue", "started_at"), name="durable_run_queue_started"),
            # The admin finds a run by the short id its list shows.
            models.Index(SHORT_ID, name="durable_run_short_id"),
            # A run's forks (and SET NULL when it is pruned); runs that are no fork are not in it.
            models.Index(
                fields=("forked_from",),
                condition=Q(forked_from__isnull=False),
                name="durable_run_forked_from",
            ),
        )

    def __str__(self) -> str:
        return f"{self.workflow_name} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        """Return whether the run has finished for good."""
        return self.status in RunStatus.terminal()

    def get_input(self) -> tuple[list[Any], dict[str, Any]]:
        """Return the decoded positional and keyword arguments."""
        decoded = serialization.from_document(self.input or {})
        return list(decoded.get("args", [])), dict(decoded.get("kwargs", {}))

    def get_result(self) -> Any:
        """Return the decoded result of a completed run."""
        return serialization.from_document(self.result)


class Step(models.Model):
    """A durable operation a run recorded at a position: a step, a timer, a value."""

    # No index of its own: an index in Meta starts with run, and serves the same lookups
    # (one index less to write per record).
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps", db_index=False)
    position = models.PositiveIntegerField()
    # "step", "sleep", "now", "uuid", "random", ...
    kind = models.CharField(max_length=16)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # Tries of a step's body that ended (raised or returned), as its retry policy counts
    # them; 0 while the first is running.
    attempts = models.PositiveSmallIntegerField(default=1)
    # Times a step's body began, including those cut short by a lost worker (killed, out of
    # memory): written before the body runs. NULL for operations without a body (sleeps,
    # waits, values) and for steps recorded before this was counted.
    executions = models.PositiveIntegerField(null=True, blank=True)
    # Wall time of the last attempt's body; of a sleep, the time it slept. For people.
    duration_ms = models.FloatField(null=True, blank=True)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "durable_step"
        ordering = ("run", "position")
        constraints = (
            models.UniqueConstraint(fields=("run", "position"), name="durable_step_position"),
        )

    def __str__(self) -> str:
        return f"#{self.position} {self.kind} {self.name!r} ({self.status})"

    def get_result(self) -> Any:
        """Return the decoded recorded result."""
        return serialization.from_document(self.result)
