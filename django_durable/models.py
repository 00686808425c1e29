"""Runs, their recorded operations, and the worker processes that execute them."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, router
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import serialization
from .statuses import MissedTicks, ParentClose, RunStatus, StepStatus

__all__ = [
    "Event",
    "Message",
    "MissedTicks",
    "ParentClose",
    "Run",
    "RunStatus",
    "RunValue",
    "Schedule",
    "Step",
    "StepStatus",
    "StreamItem",
    "TriggerDelivery",
    "WorkerProcess",
    "uuid7",
]


def uuid7() -> uuid.UUID:
    """Return a time-ordered UUID (RFC 9562 version 7): new rows land at the index's end."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


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
    # NULL, not "": runs without a key must not collide in the unique index.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="durable_runs",
    )
    # Workflow-level attempt, 1-based (a failed run retried by its policy counts up).
    attempt = models.PositiveIntegerField(default=1)
    # Fencing token: incremented by every claim; every write from a worker checks it.
    # Never reset: token 1 means "first claim ever", when no records can exist.
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
        )
        indexes = (
            # Claim: only pending rows are in it, however many finished runs pile up.
            models.Index(
                fields=("queue", "-priority", "available_at"),
                condition=Q(status="pending"),
                name="durable_run_ready",
            ),
            models.Index(
                fields=("wake_at",), condition=Q(status="waiting"), name="durable_run_wake"
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
            # Pruning: finished runs, oldest first.
            models.Index(
                fields=("finished_at", "id"),
                condition=Q(status__in=("completed", "failed", "cancelled")),
                name="durable_run_finished",
            ),
            models.Index(fields=("-created_at",), name="durable_run_created"),
            models.Index(fields=("workflow_name", "-created_at"), name="durable_run_workflow"),
            # Queue rate limits count the runs a queue started recently.
            models.Index(fields=("queue", "started_at"), name="durable_run_queue_started"),
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
    attempts = models.PositiveSmallIntegerField(default=1)
    # Wall time of the last attempt's body, for people reading the admin.
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


class WorkerProcess(models.Model):
    """A ``run_workflow_worker`` process, as it last reported itself."""

    id = models.CharField(primary_key=True, max_length=64)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "durable_worker"
        ordering = ("-started_at",)
        verbose_name = _("worker process")
        verbose_name_plural = _("worker processes")

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"


class Event(models.Model):
    """An emitted event: kept, so that a run that waits later still receives it."""

    id = models.BigAutoField(primary_key=True)  # emission order
    name = models.CharField(max_length=200)
    data = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=255, blank=True, default="")
    type = models.CharField(max_length=255, blank=True, default="")
    # The same key emits once per name (a webhook or CloudEvent delivered twice).
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(default=timezone.now)
    # The run that emitted it with ctx.emit_event(), if one did.
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="emitted_events"
    )

    class Meta:
        db_table = "durable_event"
        ordering = ("-id",)
        constraints = (
            models.UniqueConstraint(
                fields=("name", "idempotency_key"),
                condition=Q(idempotency_key__isnull=False),
                name="durable_event_idempotency",
            ),
        )
        indexes = (
            models.Index(fields=("name", "-id"), name="durable_event_name"),
            # Pruning: oldest first.
            models.Index(fields=("created_at",), name="durable_event_created"),
        )

    def __str__(self) -> str:
        return f"{self.name} #{self.id}"

    def get_data(self) -> Any:
        """Return the decoded payload."""
        return serialization.from_document(self.data)


class Message(models.Model):
    """A message sent to a run; ``recv`` takes each exactly once, oldest first per topic."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="messages")
    # "" when sent without a topic.
    topic = models.CharField(max_length=200, blank=True, default="")
    data = models.JSONField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(default=timezone.now)
    consumed_at = models.DateTimeField(null=True, blank=True)
    # The position of the recv that took it.
    consumed_position = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        db_table = "durable_message"
        ordering = ("run", "id")
        constraints = (
            models.UniqueConstraint(
                fields=("run", "idempotency_key"),
                condition=Q(idempotency_key__isnull=False),
                name="durable_message_idempotency",
            ),
        )
        indexes = (
            models.Index(
                fields=("run", "topic", "id"),
                condition=Q(consumed_at__isnull=True),
                name="durable_message_pending",
            ),
        )

    def __str__(self) -> str:
        return f"message #{self.id} to {self.run_id} ({self.topic or 'no topic'})"

    def get_data(self) -> Any:
        """Return the decoded message."""
        return serialization.from_document(self.data)


class RunValue(models.Model):
    """A value a run published with ``ctx.set_value``; the newest per key is current."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: an index in Meta starts with run, and serves the same lookups
    # (one index less to write per record).
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="values", db_index=False)
    key = models.CharField(max_length=200)
    value = models.JSONField(null=True, blank=True)
    position = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "durable_value"
        ordering = ("run", "key", "id")
        indexes = (models.Index(fields=("run", "key", "-id"), name="durable_value_latest"),)

    def __str__(self) -> str:
        return f"{self.key} of {self.run_id}"

    def get_value(self) -> Any:
        """Return the decoded value."""
        return serialization.from_document(self.value)


class StreamItem(models.Model):
    """An item of a run's stream; offsets are dense per (run, key). A closing row ends it."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: an index in Meta starts with run, and serves the same lookups
    # (one index less to write per record).
    run = models.ForeignKey(
        Run, on_delete=models.CASCADE, related_name="stream_items", db_index=False
    )
    key = models.CharField(max_length=200)
    offset = models.PositiveIntegerField()
    value = models.JSONField(null=True, blank=True)
    # The row written by ctx.close_stream(): no value, the offset after the last item.
    closes = models.BooleanField(default=False)
    # The position of the operation that wrote it (a workflow retry rewinds from there).
    position = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "durable_stream"
        ordering = ("run", "key", "offset")
        constraints = (
            models.UniqueConstraint(fields=("run", "key", "offset"), name="durable_stream_offset"),
        )

    def __str__(self) -> str:
        return f"{self.key}[{self.offset}] of {self.run_id}"

    def get_value(self) -> Any:
        """Return the decoded item."""
        return serialization.from_document(self.value)


class Schedule(models.Model):
    """A cron schedule that starts a run of a workflow at every tick.

    Declared in code with ``@durable.workflow(schedule=...)`` or added in the admin. Exactly
    one run starts per tick, however many workers look at it: each tick's run has an
    idempotency key made of the schedule and the tick.
    """

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=200, unique=True)
    workflow_name = models.CharField(max_length=200)
    # Five fields (minute hour day-of-month month day-of-week), as in crontab.
    cron = models.CharField(max_length=100)
    # The time zone the cron expression is read in (an IANA name, "Europe/Paris").
    time_zone = models.CharField(max_length=64, default="UTC")
    # Extra arguments; the workflow also receives ``scheduled_time`` (the tick).
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    # Ticks that passed while no worker ran: start only the latest, or every one.
    missed_ticks = models.CharField(
        max_length=16, choices=MissedTicks.choices, default=MissedTicks.SKIP
    )
    # Declared by a decorator (kept in step with the code) or in the admin.
    from_code = models.BooleanField(default=False, editable=False)
    next_tick_at = models.DateTimeField(null=True, blank=True)
    last_tick_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "durable_schedule"
        ordering = ("name",)
        indexes = (
            models.Index(
                fields=("next_tick_at",), condition=Q(enabled=True), name="durable_schedule_due"
            ),
        )

    def __str__(self) -> str:
        return f"{self.name} ({self.cron})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; compute the next tick first if it is missing or the timing changed."""
        from .schedules import next_tick, timing_changed  # it imports this module

        update_fields = kwargs.get("update_fields")
        if update_fields is not None and not update_fields:
            return  # nothing to save, as in Model.save()
        now = timezone.now()
        self.updated_at = now
        using = kwargs.get("using") or router.db_for_write(Schedule, instance=self)
        if timing_changed(self, using=using):
            self.next_tick_at = next_tick(self.cron, self.time_zone, now)
            update_fields = update_fields and [*update_fields, "next_tick_at"]
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "updated_at"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """Check the cron expression, the time zone, the workflow and the arguments."""
        if self.from_code:
            return  # the decorator checked them, and the code owns them
        from .schedules import validation_errors  # it imports this module

        errors = validation_errors(self)
        if errors:
            raise ValidationError(errors)


class TriggerDelivery(models.Model):
    """An event not yet handed to a workflow that ``trigger_on_event``s it.

    Written in the transaction of the event, one per triggered workflow, and deleted in
    the transaction of the run it starts (or the batch it joins): every event reaches each
    workflow exactly once, whatever order concurrent emitters commit in.
    """

    id = models.BigAutoField(primary_key=True)
    workflow_name = models.CharField(max_length=200)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "durable_trigger_delivery"
        ordering = ("workflow_name", "event")
        constraints = (
            # One delivery per event and workflow: a second could start a second run.
            models.UniqueConstraint(fields=("workflow_name", "event"), name="durable_trigger_once"),
        )
        indexes = (models.Index(fields=("workflow_name", "event"), name="durable_trigger_pending"),)

    def __str__(self) -> str:
        return f"event {self.event_id} for {self.workflow_name}"
