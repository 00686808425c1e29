"""The HTTP API's views: thin, they call the same functions as Python users do."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, NoReturn

from django.core.handlers.asgi import ASGIRequest
from django.db.models import Max
from django.http import StreamingHttpResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated, ParseError, PermissionDenied
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import exchange
from ..client import cancel, create_run, get_run, retry
from ..conf import get_settings
from ..exceptions import DurableError, RunNotFound, RunNotRetryable
from ..models import Run, RunValue
from ..registry import get_workflow
from . import sse
from .access import get_access_policy
from .errors import NotRetryable, RunFinished, ValueNotFound, exception_handler
from .parsers import CloudEventParser, JSONParser
from .serializers import (
    MAX_CHILDREN,
    CancelRunSerializer,
    EmitEventSerializer,
    ErrorSerializer,
    IdSerializer,
    RunDetailSerializer,
    RunSerializer,
    SendMessageSerializer,
    StartRunSerializer,
)


def documented(**kwargs: Any) -> Any:
    """``extend_schema`` on drf-spectacular's AutoSchema, whatever the project's default.

    extend_schema takes its base class from the function's ``schema`` attribute first, and
    falls back to REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS'], which a project need not set.
    """

    def decorate(method: Any) -> Any:
        method.schema = AutoSchema()
        return extend_schema(**kwargs)(method)

    return decorate


class EventStreamRenderer(BaseRenderer):
    """Lets content negotiation accept ``text/event-stream`` (the view streams itself)."""

    media_type = "text/event-stream"
    format = "sse"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> bytes:
        return b""


class DurableView(APIView):
    """Base of the API's views: JSON in and out, errors mapped, the access policy asked."""

    parser_classes: tuple[type[BaseParser], ...] = (JSONParser,)
    renderer_classes: tuple[type[BaseRenderer], ...] = (JSONRenderer,)
    # Per-object rules live in the access policy; anonymous users get what it allows.
    permission_classes = ()
    schema = AutoSchema()

    def get_exception_handler(self) -> Any:
        return exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if not self.policy.allows(request.user):
            self.deny()

    @property
    def policy(self) -> Any:
        """Return the configured access policy."""
        return get_access_policy()

    def deny(self) -> NoReturn:
        """Refuse the request: 401/403 for anonymous users, 403 for others."""
        if not self.request.user.is_authenticated:
            raise NotAuthenticated()
        raise PermissionDenied()

    def visible_run(self, run_id: uuid.UUID) -> Run:
        """Return the run if this user may see it; 404 otherwise (its existence stays private)."""
        run = Run.objects.using(get_settings().DATABASE).filter(pk=run_id).first()
        if run is None or not self.policy.can_view(self.request.user, run):
            raise RunNotFound()
        return run

    def operable_run(self, run_id: uuid.UUID) -> Run:
        """Return the run if this user may operate it: 404 if not visible, 403 if not operable."""
        run = self.visible_run(run_id)
        if not self.policy.can_operate(self.request.user, run):
            self.deny()
        return run

    def detail(self, run: Run) -> Any:
        """Return the rendered page of ``run``."""
        values = latest_values([run.pk]).get(run.pk, {})
        children, children_count = self.children(run)
        context = {
            "progress": {run.pk: values.get("progress")},
            "values": values,
            "tracebacks": self.policy.can_see_tracebacks(self.request.user),
            "children": children,
            "children_count": children_count,
        }
        return RunDetailSerializer(run, context=context).data

    def children(self, run: Run) -> tuple[list[dict[str, Any]], int]:
        """Return the first MAX_CHILDREN child runs this user may see, and how many there are.

        Oldest first. The count is a query of its own only when the list is full.
        """
        runs = Run.objects.using(get_settings().DATABASE).filter(parent_id=run.pk)
        visible = self.policy.visible_runs(self.request.user, runs)
        rows = list(
            visible.order_by("parent_position", "created_at", "id").values(
                "id", "workflow_name", "status", "created_at", "finished_at"
            )[:MAX_CHILDREN]
        )
        return rows, (len(rows) if len(rows) < MAX_CHILDREN else visible.count())

    def query_float(self, name: str, maximum: float) -> float:
        """Return a non-negative number query parameter, capped at ``maximum``."""
        raw = self.request.query_params.get(name, "0")
        try:
            value = float(raw)
        except ValueError:
            raise ParseError(f"{name} must be a number of seconds.") from None
        if value != value:
            raise ParseError(f"{name} must be a number of seconds, not NaN.")
        if value < 0:
            raise ParseError(f"{name} cannot be negative.")
        return min(value, maximum)

    def query_int(self, name: str) -> int | None:
        """Return a non-negative integer query parameter, if given."""
        raw = self.request.query_params.get(name)
        if raw is None or raw == "":
            return None
        if not raw.isdigit():
            raise ParseError(f"{name} must be a non-negative integer.")
        return int(raw)


class RunPagination(CursorPagination):
    """Newest first; a cursor, so pages stay fast and stable over millions of runs."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def latest_values(run_ids: list[Any], key: str | None = None) -> dict[Any, dict[str, Any]]:
    """Return the newest value per (run, key) of ``run_ids``, in two queries."""
    rows = RunValue.objects.using(get_settings().DATABASE).filter(run_id__in=run_ids)
    if key is not None:
        rows = rows.filter(key=key)
    newest = rows.values("run_id", "key").annotate(newest=Max("id")).values("newest")
    found: dict[Any, dict[str, Any]] = {}
    for row in RunValue.objects.using(get_settings().DATABASE).filter(id__in=newest):
        found.setdefault(row.run_id, {})[row.key] = row.get_value()
    return found


class RunsView(DurableView):
    """``GET runs/``: the runs this user may see. ``POST runs/``: start one."""

    @documented(
        parameters=[
            OpenApiParameter("workflow", str, description="Only runs of this workflow."),
            OpenApiParameter("status", str, many=True, description="Only these statuses."),
            OpenApiParameter("queue", str, description="Only runs of this queue."),
            OpenApiParameter("parent", uuid.UUID, description="Only the child runs of this run."),
            OpenApiParameter("page_size", int, description="Runs per page (at most 500)."),
        ],
        responses=RunSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        runs = self.policy.visible_runs(
            request.user, Run.objects.using(get_settings().DATABASE).all()
        )
        params = request.query_params
        if params.get("workflow"):
            runs = runs.filter(workflow_name=params["workflow"])
        statuses = [s for value in params.getlist("status") for s in value.split(",") if s]
        if statuses:
            runs = runs.filter(status__in=statuses)
        if params.get("queue"):
            runs = runs.filter(queue=params["queue"])
        if params.get("parent"):
            try:
                runs = runs.filter(parent_id=uuid.UUID(params["parent"]))
            except ValueError:
                raise ParseError("parent must be a run id (a UUID).") from None
        paginator = RunPagination()
        page: list[Run] = paginator.paginate_queryset(runs, request, view=self) or []
        progress = {
            run_id: values["progress"]
            for run_id, values in latest_values([run.pk for run in page], "progress").items()
        }
        data = RunSerializer(page, many=True, context={"progress": progress}).data
        return paginator.get_paginated_response(data)

    @documented(
        request=StartRunSerializer, responses={201: RunDetailSerializer, 200: RunDetailSerializer}
    )
    def post(self, request: Request) -> Response:
        given = StartRunSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        options = given.validated_data
        workflow = get_workflow(options["workflow"])
        if not self.policy.can_start(request.user, workflow):
            self.deny()
        key = options.get("idempotency_key")
        if key is not None:  # scoped per user: nobody can reach another user's run by key
            if not request.user.is_authenticated:
                raise ParseError("idempotency_key needs an authenticated user (keys are per user).")
            key = f"api:{request.user.pk}:{key}"
        start = workflow.using(
            idempotency_key=key,
            owner=request.user if request.user.is_authenticated else None,
            delay=options.get("delay"),
        )
        try:
            handle, created = create_run(start, options["args"], options["kwargs"])
        except DurableError:
            raise  # mapped to its own status (413, 400) by the exception handler
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(self.detail(handle.model), status=code)


class RunView(DurableView):
    """``GET runs/{id}/``: status, progress, values, steps, result or error, children."""

    @documented(responses=RunDetailSerializer)
    def get(self, request: Request, run_id: uuid.UUID) -> Response:
        return Response(self.detail(self.visible_run(run_id)))


class RunMessagesView(DurableView):
    """``POST runs/{id}/messages/``: deliver a message (202)."""

    @documented(request=SendMessageSerializer, responses={202: IdSerializer})
    def post(self, request: Request, run_id: uuid.UUID) -> Response:
        run = self.operable_run(run_id)
        given = SendMessageSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        message_id = exchange.send(
            run.pk, data["message"], data.get("topic"), data.get("idempotency_key")
        )
        return Response({"id": message_id}, status=status.HTTP_202_ACCEPTED)


class RunCancelView(DurableView):
    """``POST runs/{id}/cancel/``: cancel a run and every run under it (202)."""

    @documented(
        request=CancelRunSerializer,
        responses={202: RunDetailSerializer, 409: ErrorSerializer},
    )
    def post(self, request: Request, run_id: uuid.UUID) -> Response:
        run = self.operable_run(run_id)
        given = CancelRunSerializer(data=request.data or {})
        given.is_valid(raise_exception=True)
        if not cancel(run.pk, given.validated_data["reason"]):
            raise RunFinished(f"Run {run.pk} has already finished.")
        return Response(self.detail(get_run(run.pk).model), status=status.HTTP_202_ACCEPTED)


class RunRetryView(DurableView):
    """``POST runs/{id}/retry/``: start a failed or cancelled run again (202)."""

    @documented(request=None, responses={202: RunDetailSerializer, 409: ErrorSerializer})
    def post(self, request: Request, run_id: uuid.UUID) -> Response:
        run = self.operable_run(run_id)
        try:
            handle = retry(run.pk)
        except RunNotRetryable as exc:
            raise NotRetryable(str(exc)) from None
        return Response(self.detail(handle.model), status=status.HTTP_202_ACCEPTED)


class RunValueView(DurableView):
    """``GET runs/{id}/values/{key}/?timeout=s&after=version``: a value, long-polled."""

    @documented(
        parameters=[
            OpenApiParameter("timeout", float, description="Seconds to wait (capped)."),
            OpenApiParameter("after", int, description="Wait for a version newer than this."),
        ],
        responses=inline_serializer(
            "RunValue",
            {
                "key": serializers.CharField(),
                "value": serializers.JSONField(),
                "version": serializers.IntegerField(),
                "run_status": serializers.CharField(),
            },
        ),
    )
    def get(self, request: Request, run_id: uuid.UUID, key: str) -> Response:
        run = self.visible_run(run_id)
        timeout = self.query_float("timeout", get_settings().API_MAX_WAIT)
        after = self.query_int("after")
        found = exchange.watch_value(run.pk, key, after=after, timeout=timeout)
        if found is None and after is not None:  # nothing newer: answer with what is current
            found = exchange.watch_value(run.pk, key)
        if found is None:
            raise ValueNotFound(f"Run {run.pk} has no value {key!r}.")
        # The run's status says whether to poll again (a finished run writes no more).
        return Response(
            {
                "key": key,
                "value": found.value,
                "version": found.version,
                "run_status": exchange.run_status(run),
            }
        )


class RunStreamView(DurableView):
    """``GET runs/{id}/streams/{key}/?offset=n``: items as JSON, or Server-Sent Events."""

    renderer_classes = (JSONRenderer, EventStreamRenderer)

    @documented(
        parameters=[OpenApiParameter("offset", int, description="First offset to return.")],
        responses=inline_serializer(
            "StreamPage",
            {
                "items": serializers.ListField(child=serializers.DictField()),
                "next_offset": serializers.IntegerField(),
                "closed": serializers.BooleanField(),
            },
        ),
    )
    def get(self, request: Request, run_id: uuid.UUID, key: str) -> Any:
        run = self.visible_run(run_id)
        offset = self.query_int("offset") or 0
        if request.accepted_renderer.format == "sse":
            return self._events(request, run, key, offset)
        batch = exchange.stream_batch(run, key, offset)
        items = [{"offset": i.offset, "value": i.get_value()} for i in batch if not i.closes]
        closed = bool(batch) and batch[-1].closes
        next_offset = items[-1]["offset"] + 1 if items else offset
        return Response({"items": items, "next_offset": next_offset, "closed": closed})

    def _events(self, request: Request, run: Run, key: str, offset: int) -> StreamingHttpResponse:
        resume = request.headers.get("Last-Event-ID", "")
        if resume.isdigit():
            offset = max(offset, int(resume) + 1)
        under_asgi = isinstance(request._request, ASGIRequest)
        frames = sse.aevents(run, key, offset) if under_asgi else sse.events(run, key, offset)
        response = StreamingHttpResponse(frames, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: do not buffer
        response["Content-Encoding"] = "identity"  # GZipMiddleware would buffer it
        return response


def _cloud_event(request: Request) -> dict[str, Any] | None:
    """Return a CloudEvent's attributes and data (structured or binary mode), if it is one."""
    if request.content_type.startswith(CloudEventParser.media_type):
        event = request.data
        if not isinstance(event, dict):
            raise ParseError("A structured CloudEvent is a JSON object.")
        return event
    headers = {k.lower(): v for k, v in request.headers.items()}
    if "ce-specversion" not in headers:
        return None
    attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
    data = None if request.stream is None else request.data  # no body: no data
    return {**attributes, "data": data}


def _from_cloud_event(event: dict[str, Any]) -> dict[str, Any]:
    """Map a CloudEvent to emit_event's arguments.

    The event's name is its ``type``, followed by ``:`` and its ``subject`` when it has
    one; ``source`` and ``id`` make the idempotency key, so a redelivery emits once.
    """
    if event.get("specversion") != "1.0":
        raise ParseError("Only CloudEvents specversion 1.0 is supported.")
    missing = [
        a for a in ("id", "source", "type") if not isinstance(event.get(a), str) or not event.get(a)
    ]
    if missing:
        raise ParseError(f"The CloudEvent lacks {', '.join(missing)}.")
    if "data_base64" in event:
        raise ParseError("CloudEvents with binary data (data_base64) are not supported.")
    too_long = [a for a in ("source", "type") if len(event[a]) > 255]
    if too_long:
        raise ParseError(f"The CloudEvent's {', '.join(too_long)} is over 255 characters.")
    subject = event.get("subject")
    name = f"{event['type']}:{subject}" if subject else event["type"]
    key = f"ce:{event['source']}:{event['id']}"
    if len(key) > 255:  # keep it unique rather than cut it
        key = "ce:sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return {
        "name": name,
        "data": event.get("data"),
        "source": event["source"],
        "type": event["type"],
        "idempotency_key": key,
    }


class EventsView(DurableView):
    """``POST events/``: emit an event, as JSON ``{name, data}`` or as a CloudEvent."""

    parser_classes = (JSONParser, CloudEventParser)

    @documented(request=EmitEventSerializer, responses={202: IdSerializer})
    def post(self, request: Request) -> Response:
        cloud_event = _cloud_event(request)
        if cloud_event is not None:
            fields = _from_cloud_event(cloud_event)
        else:
            given = EmitEventSerializer(data=request.data)
            given.is_valid(raise_exception=True)
            fields = dict(given.validated_data)
        if not self.policy.can_emit(request.user, fields["name"]):
            self.deny()
        try:
            event_id = exchange.emit_event(
                fields["name"],
                fields.get("data"),
                fields.get("source"),
                fields.get("type"),
                idempotency_key=fields.get("idempotency_key"),
            )
        except DurableError:
            raise
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        return Response({"id": event_id}, status=status.HTTP_202_ACCEPTED)


class SchemaView(SpectacularAPIView):
    """``GET schema/``: the OpenAPI 3 description of these endpoints."""

    urlconf = "django_durable.api.urls"
    # It does not describe itself (and so needs no project-wide DEFAULT_SCHEMA_CLASS).
    schema = None

    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # The paths are relative to where the API is mounted; say where that is.
        prefix = request.path[: -len("schema/")] if request.path.endswith("schema/") else "/"
        self.custom_settings = {
            "TITLE": "django-durable",
            "DESCRIPTION": "Start runs, read their progress, send them messages, follow streams.",
            "SERVERS": [{"url": prefix.rstrip("/") or "/"}],
        }
        return super().get(request, *args, **kwargs)
