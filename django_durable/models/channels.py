"""What runs exchange with the world: events, messages, published values and streams."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from ..core import serialization
from .runs import Run


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
