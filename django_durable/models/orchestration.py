"""Orchestration's rows: cron schedules, and events not yet handed to triggered workflows."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, router
from django.db.models import Q
from django.utils import timezone

from ..core import clock
from ..core.cron import check_cron, check_time_zone, next_tick
from ..core.statuses import MissedTicks
from ..declarations.registry import get_workflow
from ..exceptions import WorkflowNotFound
from .channels import Event


class Schedule(models.Model):
    """A cron schedule that starts a run of a workflow at every tick.

    Declared in code with ``@durable.workflow(schedule=...)`` or added in the admin. Exactly
    one run starts per tick, however many workers look at it: each tick's run has an
    idempotency key made of the schedule and the tick.
    """

    # The names of the schedules declared in code start with this; admin schedules cannot.
    CODE_PREFIX = "workflow:"

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
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and not update_fields:
            return  # nothing to save, as in Model.save()
        using = kwargs.get("using") or router.db_for_write(Schedule, instance=self)
        # The database's time, as the workers' rounds write it: a web host's clock may be off.
        now = clock.database_now(using)
        self.updated_at = now
        if self._timing_changed(using):
            # A web host whose clock is off would owe or skip ticks.
            self.next_tick_at = next_tick(self.cron, self.time_zone, now)
            update_fields = update_fields and [*update_fields, "next_tick_at"]
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "updated_at"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """Check the cron expression, the time zone, the workflow and the arguments."""
        if self.from_code:
            return  # the decorator checked them, and the code owns them
        errors = self.validation_errors()
        if errors:
            raise ValidationError(errors)

    def validation_errors(self) -> dict[str, str]:
        """Return what is wrong with an admin-made schedule, by field (empty if nothing)."""
        errors: dict[str, str] = {}
        if self.name.startswith(self.CODE_PREFIX):
            errors["name"] = (
                f"Names starting with {self.CODE_PREFIX!r} are kept for schedules in code."
            )
        errors.update(self._timing_errors())
        try:
            get_workflow(self.workflow_name)
        except WorkflowNotFound as exc:
            errors["workflow_name"] = str(exc)
        errors.update(self.argument_errors())
        return errors

    def _timing_errors(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        try:
            check_cron(self.cron)
        except ValueError as exc:
            errors["cron"] = str(exc)
        try:
            check_time_zone(self.time_zone)
        except ValueError as exc:
            errors["time_zone"] = str(exc)
        if not errors:
            try:
                next_tick(self.cron, self.time_zone, timezone.now())
            except ValueError as exc:  # 0 0 30 2 *: there is no 30 February
                errors["cron"] = str(exc)
        return errors

    def argument_errors(self) -> dict[str, str]:
        """Return what is wrong with the arguments its runs are started with, by field."""
        errors = {}
        if not isinstance(self.args, list):
            errors["args"] = 'Give a JSON array of positional arguments, such as [] or ["eu"].'
        if not isinstance(self.kwargs, dict):
            errors["kwargs"] = 'Give a JSON object of keyword arguments, such as {} or {"a": 1}.'
        elif "scheduled_time" in self.kwargs:
            errors["kwargs"] = "scheduled_time is given by the schedule: the tick of each run."
        return errors

    def _timing_changed(self, using: str) -> bool:
        """Return whether the next tick must be computed again before the schedule is saved.

        It must when it has none, when the cron expression or time zone changed, and when
        the schedule is enabled again (the ticks it missed while disabled are not due).
        """
        if self.next_tick_at is None:
            return True
        if self._state.adding:
            return False
        stored = (
            Schedule.objects.using(using)
            .filter(pk=self.pk)
            .values_list("cron", "time_zone", "enabled")
            .first()
        )
        if stored is None:
            return False
        cron, time_zone, enabled = stored
        return (cron, time_zone) != (self.cron, self.time_zone) or (self.enabled and not enabled)


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
