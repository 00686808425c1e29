"""What the HTTP API reads and writes: requests validated, runs rendered."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import ParentClose, Run, RunStatus, Step

# A run's page lists at most this many recorded operations, and this many child runs.
MAX_STEPS = 1000
MAX_CHILDREN = 200


class StartRunSerializer(serializers.Serializer):
    """``POST runs/``: which workflow, with what."""

    workflow = serializers.CharField(max_length=200)
    args = serializers.ListField(child=serializers.JSONField(), required=False, default=list)
    kwargs = serializers.DictField(child=serializers.JSONField(), required=False, default=dict)
    idempotency_key = serializers.CharField(max_length=200, required=False)
    delay = serializers.FloatField(min_value=0, max_value=10 * 365 * 86400, required=False)


class SendMessageSerializer(serializers.Serializer):
    """``POST runs/{id}/messages/``."""

    message = serializers.JSONField(allow_null=True)
    topic = serializers.CharField(max_length=200, required=False, allow_null=True)
    idempotency_key = serializers.CharField(max_length=255, required=False, allow_null=True)


class EmitEventSerializer(serializers.Serializer):
    """``POST events/`` with a JSON body (CloudEvents are read by the view)."""

    name = serializers.CharField(max_length=200)
    # DRF's metaclass takes declared fields off the class, so these names are safe.
    data = serializers.JSONField(  # type: ignore[assignment]
        required=False, allow_null=True, default=None
    )
    source = serializers.CharField(  # type: ignore[assignment]
        max_length=255, required=False, allow_blank=True
    )
    type = serializers.CharField(max_length=255, required=False, allow_blank=True)
    idempotency_key = serializers.CharField(max_length=255, required=False, allow_null=True)


class CancelRunSerializer(serializers.Serializer):
    """``POST runs/{id}/cancel/``: why (optional)."""

    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class ErrorSerializer(serializers.Serializer):
    """An error: a message for people and a code for programs."""

    detail = serializers.CharField()
    code = serializers.CharField()


class IdSerializer(serializers.Serializer):
    """The id of what was stored (a message, an event)."""

    id = serializers.IntegerField()


class RunSerializer(serializers.Serializer):
    """A run in a list: its state and progress."""

    id = serializers.UUIDField()
    workflow = serializers.CharField(source="workflow_name")
    status = serializers.ChoiceField(choices=RunStatus.choices)
    # Declared fields are taken off the class: this does not hide Field.parent.
    parent = serializers.UUIDField(  # type: ignore[assignment]
        source="parent_id", allow_null=True
    )
    queue = serializers.CharField()
    priority = serializers.IntegerField()
    attempt = serializers.IntegerField()
    owner = serializers.CharField(source="owner_id", allow_null=True)
    waiting_for = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    progress = serializers.SerializerMethodField()

    def get_progress(self, run: Run) -> dict[str, Any] | None:
        """Return the run's ``"progress"`` value, if it set one."""
        progress: dict[Any, Any] = self.context.get("progress", {})
        return progress.get(run.pk)


class StepSerializer(serializers.Serializer):
    """A recorded operation (results stay out: they can be large or private)."""

    position = serializers.IntegerField()
    kind = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    duration_ms = serializers.FloatField(allow_null=True)
    recorded_at = serializers.DateTimeField()
    error = serializers.SerializerMethodField()

    def get_error(self, step: Step) -> dict[str, Any] | None:
        """Return the error's type and message, if the operation failed."""
        if not step.error:
            return None
        return {"type": step.error.get("type"), "message": step.error.get("message")}


class ChildRunSerializer(serializers.Serializer):
    """A child run, in its parent's page."""

    id = serializers.UUIDField()
    workflow = serializers.CharField(source="workflow_name")
    status = serializers.ChoiceField(choices=RunStatus.choices)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class RunDetailSerializer(RunSerializer):
    """A run's page: input, outcome, values, recorded operations, children, cancellation."""

    depth = serializers.IntegerField()
    parent_close = serializers.ChoiceField(choices=ParentClose.choices)
    cancel_requested = serializers.SerializerMethodField()
    cancel_requested_at = serializers.DateTimeField(allow_null=True)
    cancel_reason = serializers.CharField()
    children = serializers.SerializerMethodField()
    children_count = serializers.SerializerMethodField()
    input = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    values = serializers.SerializerMethodField()
    steps = serializers.SerializerMethodField()
    steps_count = serializers.SerializerMethodField()

    def get_input(self, run: Run) -> dict[str, Any]:
        """Return the run's arguments."""
        args, kwargs = run.get_input()
        return {"args": args, "kwargs": kwargs}

    def get_result(self, run: Run) -> Any:
        """Return the result of a completed run."""
        return run.get_result() if run.status == RunStatus.COMPLETED else None

    def get_error(self, run: Run) -> dict[str, Any] | None:
        """Return the run's error; the traceback only for those the policy allows."""
        if not run.error:
            return None
        error = {key: run.error.get(key) for key in ("type", "message", "step")}
        if self.context.get("tracebacks"):
            error["traceback"] = run.error.get("traceback")
        return error

    def get_values(self, run: Run) -> dict[str, Any]:
        """Return the newest value of each key."""
        values: dict[str, Any] = self.context.get("values", {})
        return values

    def get_steps(self, run: Run) -> list[dict[str, Any]]:
        """Return the recorded operations, in order (at most MAX_STEPS)."""
        steps = run.steps.order_by("position")[:MAX_STEPS]
        return list(StepSerializer(steps, many=True).data)

    def get_steps_count(self, run: Run) -> int:
        """Return how many operations the run recorded."""
        return run.steps.count()

    def get_cancel_requested(self, run: Run) -> bool:
        """Return whether the run was asked to stop (and was not retried since)."""
        return run.cancel_requested_at is not None

    @extend_schema_field(ChildRunSerializer(many=True))
    def get_children(self, run: Run) -> list[dict[str, Any]]:
        """Return the first MAX_CHILDREN child runs, oldest first (read by the view)."""
        children: list[Any] = self.context.get("children", [])
        return list(ChildRunSerializer(children, many=True).data)

    def get_children_count(self, run: Run) -> int:
        """Return how many child runs the run started (that this user may see)."""
        count: int = self.context.get("children_count", 0)
        return count
