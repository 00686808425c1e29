"""What the HTTP API reads and writes: requests validated, runs rendered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..core.names import check_text
from ..display import UNREADABLE
from ..exceptions import SerializationError
from ..models import ParentClose, Run, RunStatus, Step

# A run's page lists at most this many recorded operations, and this many child runs.
MAX_STEPS = 1000
MAX_CHILDREN = 200

# How the schema describes what the serializers' methods return.
_PROGRESS = "The run's `progress` value (`ctx.set_progress()`), any JSON; null if it set none."
_ANY = {"nullable": True}
_UNREADABLE = {"type": "string", "description": f"{UNREADABLE!r}, for input stored too deep."}
_INPUT = {
    "type": "object",
    "properties": {
        "args": {"oneOf": [{"type": "array", "items": _ANY}, _UNREADABLE]},
        "kwargs": {"oneOf": [{"type": "object", "additionalProperties": _ANY}, _UNREADABLE]},
    },
    "required": ["args", "kwargs"],
}
_STEP_ERROR = {
    "type": "object",
    "nullable": True,
    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
    "required": ["type", "message"],
}
_RUN_ERROR = {
    "type": "object",
    "nullable": True,
    "description": "`traceback` only for those the access policy lets see tracebacks.",
    "properties": {
        "type": {"type": "string"},
        "message": {"type": "string"},
        "step": {"type": "string", "nullable": True},
        "traceback": {"type": "string", "nullable": True},
    },
    "required": ["type", "message", "step"],
}


class TextField(serializers.CharField):
    """A string, and only a string (``5`` is an error, not ``"5"``) a database can store."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            check_text(data, "The value")
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return str(super().to_internal_value(data))


class SecondsField(serializers.FloatField):
    """A number of seconds: a JSON number (``true`` and ``"5"`` are errors, not coercions)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return float(super().to_internal_value(data))


def readable(read: Callable[[], Any]) -> Any:
    """Return ``read()``, or UNREADABLE for a document stored too deep to decode."""
    try:
        return read()
    except SerializationError:
        return UNREADABLE


class StartRunSerializer(serializers.Serializer):
    """``POST runs/``: which workflow, with what."""

    workflow = TextField(max_length=200)
    args = serializers.ListField(child=serializers.JSONField(), required=False, default=list)
    kwargs = serializers.DictField(child=serializers.JSONField(), required=False, default=dict)
    idempotency_key = TextField(max_length=200, required=False)
    delay = SecondsField(min_value=0, max_value=10 * 365 * 86400, required=False)


class SendMessageSerializer(serializers.Serializer):
    """``POST runs/{id}/messages/``."""

    message = serializers.JSONField(allow_null=True)
    topic = TextField(max_length=200, required=False, allow_null=True)
    idempotency_key = TextField(max_length=255, required=False, allow_null=True)


class EmitEventSerializer(serializers.Serializer):
    """``POST events/`` with a JSON body (CloudEvents are read by the view)."""

    name = TextField(max_length=200)
    # DRF's metaclass takes declared fields off the class, so these names are safe.
    data = serializers.JSONField(  # type: ignore[assignment]
        required=False, allow_null=True, default=None
    )
    source = TextField(  # type: ignore[assignment]
        max_length=255, required=False, allow_blank=True
    )
    type = TextField(max_length=255, required=False, allow_blank=True)
    idempotency_key = TextField(max_length=255, required=False, allow_null=True)


class StepNumberField(serializers.IntegerField):
    """A whole number in JSON (``true``, ``"5"`` and ``5.0`` are errors, not coercions)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class ForkRunSerializer(serializers.Serializer):
    """``POST runs/{id}/fork/``: from which step, and the fork's idempotency key."""

    from_step = StepNumberField(
        min_value=0,
        max_value=2**31 - 1,
        help_text="The position of the first operation the fork runs again: the operations "
        "before it (positions 0 to from_step - 1) are copied from the run.",
    )
    idempotency_key = TextField(
        max_length=200,
        required=False,
        help_text="Fork once: the same key (yours) returns the fork it made (200).",
    )


class CancelRunSerializer(serializers.Serializer):
    """``POST runs/{id}/cancel/``: why (optional)."""

    reason = TextField(max_length=255, required=False, allow_blank=True, default="")


class CloudEventSerializer(serializers.Serializer):
    """``POST events/`` as a structured CloudEvent, for the schema (the view reads it)."""

    specversion = serializers.ChoiceField(choices=["1.0"])
    id = serializers.CharField(min_length=1)
    # DRF's metaclass takes declared fields off the class, so these names are safe.
    source = serializers.CharField(  # type: ignore[assignment]
        min_length=1, max_length=255
    )
    type = serializers.CharField(min_length=1, max_length=255)
    subject = serializers.CharField(required=False)
    data = serializers.JSONField(  # type: ignore[assignment]
        required=False, allow_null=True
    )


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
    forked_from = serializers.UUIDField(
        source="forked_from_id",
        allow_null=True,
        help_text="The run this one was forked from (`POST runs/{id}/fork/`), if it is a fork.",
    )
    queue = serializers.CharField()
    flow_key = serializers.CharField(
        allow_null=True,
        help_text="The key of the workflow's flow control (concurrency_key=, singleton_key=, "
        "debounce=), computed from the input at start; null without one.",
    )
    priority = serializers.IntegerField()
    attempt = serializers.IntegerField()
    owner = serializers.CharField(source="owner_id", allow_null=True)
    waiting_for = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    progress = serializers.SerializerMethodField()

    @extend_schema_field({"nullable": True, "description": _PROGRESS})
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
    attempts = serializers.IntegerField(
        help_text="Tries of the body that ended (returned or raised), as its retry policy "
        "counts them; 0 while the first one runs."
    )
    executions = serializers.IntegerField(
        allow_null=True,
        help_text="Times the body began, counting those a lost worker cut short; null for "
        "operations without a body (sleeps, waits, values).",
    )
    duration_ms = serializers.FloatField(
        allow_null=True,
        help_text="Wall time of the last attempt's body; of a sleep, the time it sleeps.",
    )
    recorded_at = serializers.DateTimeField()
    error = serializers.SerializerMethodField()

    @extend_schema_field(_STEP_ERROR)
    def get_error(self, step: Step) -> dict[str, Any] | None:
        """Return the error's type and message, if the operation failed (or is retrying)."""
        if not step.error or not step.error.get("type"):
            return None  # none, or only the errors of attempts before a success
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

    @extend_schema_field(_INPUT)
    def get_input(self, run: Run) -> dict[str, Any]:
        """Return the run's arguments."""
        decoded = readable(run.get_input)
        if decoded == UNREADABLE:
            return {"args": UNREADABLE, "kwargs": UNREADABLE}
        args, kwargs = decoded
        return {"args": args, "kwargs": kwargs}

    @extend_schema_field(_ANY)
    def get_result(self, run: Run) -> Any:
        """Return the result of a completed run."""
        return readable(run.get_result) if run.status == RunStatus.COMPLETED else None

    @extend_schema_field(_RUN_ERROR)
    def get_error(self, run: Run) -> dict[str, Any] | None:
        """Return the run's error; the traceback only for those the policy allows."""
        if not run.error:
            return None
        error = {key: run.error.get(key) for key in ("type", "message", "step")}
        if self.context.get("tracebacks"):
            error["traceback"] = run.error.get("traceback")
        return error

    @extend_schema_field({"type": "object", "additionalProperties": _ANY})
    def get_values(self, run: Run) -> dict[str, Any]:
        """Return the newest value of each key."""
        values: dict[str, Any] = self.context.get("values", {})
        return values

    @extend_schema_field(StepSerializer(many=True))
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
