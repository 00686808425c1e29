"""What a run waits on besides its one ``wake_on``: the keys of a ``first_of``, callbacks."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..core import serialization
from ..core.statuses import CallbackStatus
from .runs import Run, uuid7


class WakeKey(models.Model):
    """One of the things a run waiting in ``ctx.first_of()`` waits for.

    The run's ``wake_on`` is then ``f:any``; its keys are written with its suspension (and
    replaced by the next one), in the ``wake_on`` form: ``e:<event>``, ``m:<topic>``,
    ``c:<child run id>``, ``cb:<callback id>``. Emitting an event finds its waiters by key.
    """

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique constraint starts with run.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="wake_keys", db_index=False)
    key = models.CharField(max_length=300)

    class Meta:
        db_table = "durable_wake_key"
        ordering = ("run", "id")
        constraints = (models.UniqueConstraint(fields=("run", "key"), name="durable_wake_key_run"),)
        # Emitting an event finds the runs that wait for it among others here.
        indexes = (models.Index(fields=("key",), name="durable_wake_key_key"),)

    def __str__(self) -> str:
        return f"{self.key} for {self.run_id}"


class Callback(models.Model):
    """A callback a run made with ``ctx.callback()``: an outside system settles it once."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # No index of its own: the unique constraint starts with run.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="callbacks", db_index=False)
    # The position of the ctx.callback() that made it: one callback per position.
    position = models.PositiveIntegerField()
    status = models.CharField(
        max_length=16, choices=CallbackStatus.choices, default=CallbackStatus.PENDING
    )
    # The value it was completed with (JSON).
    value = models.JSONField(null=True, blank=True)
    # {"message", "details"} it was failed with.
    error = models.JSONField(null=True, blank=True)
    # After this, completing it is refused and its wait raises CallbackTimeout.
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "durable_callback"
        ordering = ("run", "position")
        verbose_name = _("callback")
        constraints = (
            models.UniqueConstraint(fields=("run", "position"), name="durable_callback_position"),
        )

    def __str__(self) -> str:
        return f"callback {self.id} of {self.run_id} ({self.status})"

    def get_value(self) -> Any:
        """Return the decoded value it was completed with."""
        return serialization.from_document(self.value)
