"""The views on runs themselves: list the runs this user may see and start one
(``runs/``), read one (``runs/{id}/``), cancel it (``runs/{id}/cancel/``), retry it
(``runs/{id}/retry/``) and fork it (``runs/{id}/fork/``). Thin: they call the same
functions as Python users do.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings as django_settings
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.exceptions import ParseError, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from ..client.operating import cancel
from ..client.runs import fork, get_run, retry
from ..client.starting import create_run
from ..core.conf import get_settings
from ..declarations.registry import get_workflow
from ..exceptions import DurableError, RunNotFound, RunNotRetryable, WorkflowNotFound
from ..models import Run, RunStatus
from .base import (
    NOT_FOUND,
    DurableView,
    RunPagination,
    documented,
    latest_values,
    scoped_key,
    text_param,
)
from .errors import InvalidFromStep, NotRetryable, NotStartable, RunFinishedError
from .schema import FORBIDDEN
from .serializers import (
    CancelRunSerializer,
    ForkRunSerializer,
    RunDetailSerializer,
    RunSerializer,
    StartRunSerializer,
)


class RunsView(DurableView):
    """``GET runs/``: the runs this user may see. ``POST runs/``: start one."""

    throttle_scopes = {"POST": "durable_start"}
    # Not used by APIView itself: it tells the schema that the list is paginated, and how.
    pagination_class = RunPagination

    @documented(
        parameters=[
            OpenApiParameter("workflow", str, description="Only runs of this workflow."),
            OpenApiParameter(
                "status",
                {"type": "array", "items": {"type": "string", "enum": list(RunStatus.values)}},
                description="Only these statuses: repeat it, or separate them with commas.",
            ),
            OpenApiParameter("queue", str, description="Only runs of this queue."),
            OpenApiParameter("parent", uuid.UUID, description="Only the child runs of this run."),
            OpenApiParameter("forked_from", uuid.UUID, description="Only the forks of this run."),
            OpenApiParameter(
                "key",
                str,
                description="Only the run you started with this idempotency key (yours only: "
                "keys are per user).",
            ),
        ],
        responses=RunSerializer(many=True),
        errors={
            400: "`parse_error`: a query parameter holds NUL or a lone surrogate, `parent` or "
            "`forked_from` is not a UUID, or a `cursor` was not made here.",
        },
    )
    def get(self, request: Request) -> Response:
        """List the runs you may see, newest first, a page at a time."""
        runs = self.policy.visible_runs(
            request.user, Run.objects.using(get_settings().DATABASE).all(), request=request
        )
        params = request.query_params
        for name, values in params.lists():
            for value in values:
                text_param(name, value)
        if params.get("workflow"):
            runs = runs.filter(workflow_name=params["workflow"])
        statuses = [s for value in params.getlist("status") for s in value.split(",") if s]
        if statuses:
            runs = runs.filter(status__in=statuses)
        if params.get("queue"):
            runs = runs.filter(queue=params["queue"])
        for name, field in (("parent", "parent_id"), ("forked_from", "forked_from_id")):
            if params.get(name):
                try:
                    runs = runs.filter(**{field: uuid.UUID(params[name])})
                except ValueError:
                    raise ParseError(f"{name} must be a run id (a UUID).") from None
        if params.get("key"):  # keys are per user: only the caller's own
            user = request.user
            runs = runs.filter(idempotency_key=scoped_key(user, params["key"]))
        paginator = self.pagination_class()
        page: list[Run] = paginator.paginate_queryset(runs, request, view=self) or []
        progress = {
            run_id: values["progress"]
            for run_id, values in latest_values([run.pk for run in page], "progress").items()
        }
        data = RunSerializer(page, many=True, context={"progress": progress}).data
        return paginator.get_paginated_response(data)

    def startable(self, request: Request, name: str) -> Any:
        """Return the workflow ``name`` if this user may start it over HTTP, else 403.

        A name that does not exist and one this user may not start answer the same, so
        names cannot be probed; with ``DEBUG = True`` the words say which it is and what
        to change.
        """
        try:
            workflow = get_workflow(name)
        except WorkflowNotFound:
            workflow = None
        if workflow is not None and self.policy.can_start(request.user, workflow, request=request):
            return workflow
        if not django_settings.DEBUG:
            raise NotStartable(name)
        if workflow is None:
            reason = (
                "no workflow of that name is registered in this process (is its module "
                "imported, in an installed app's workflows.py?)."
            )
        elif not workflow.http_start:
            reason = (
                "it is not declared with http_start=True (add it to its "
                "@durable.workflow(...) to let the HTTP API start it)."
            )
        else:
            reason = f"the access policy's can_start() refuses it to user {request.user}."
        raise NotStartable(name, reason + " (This detail is shown because DEBUG = True.)")

    @documented(
        request=StartRunSerializer,
        responses={201: RunDetailSerializer, 200: RunDetailSerializer},
        errors={
            400: "Invalid fields; `parse_error`: the body is not JSON or nests too deeply, or "
            "an idempotency key without a user; `invalid_payload`: the arguments cannot be "
            "stored as JSON; "
            "`invalid_request`: the idempotency key started a run of another workflow.",
            403: "`not_startable`: no workflow this user may start over HTTP has that name "
            "(unknown, not declared `http_start=True`, or refused by the access policy: the "
            "same answer, so names cannot be probed; with `DEBUG = True` the detail says "
            "which); " + FORBIDDEN,
        },
    )
    def post(self, request: Request) -> Response:
        """Start a run of a workflow declared ``http_start=True`` (201; 200 for a known key)."""
        given = StartRunSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        options = given.validated_data
        workflow = self.startable(request, options["workflow"])
        key = options.get("idempotency_key")
        if key is not None:  # scoped per user: nobody can reach another user's run by key
            if not request.user.is_authenticated:
                raise ParseError("idempotency_key needs an authenticated user (keys are per user).")
            key = scoped_key(request.user, key)
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


class NoSuchRunView(DurableView):
    """Any other path under ``runs/``: the JSON 404 of a run that does not exist."""

    schema = None  # type: ignore[assignment]  # not an endpoint: nothing to describe

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise RunNotFound()

    post = put = patch = delete = get


class RunView(DurableView):
    """``GET runs/{id}/``: status, progress, values, steps, result or error, children."""

    token_ability = "read"

    @documented(responses=RunDetailSerializer, errors={404: NOT_FOUND})
    def get(self, request: Request, run_id: str) -> Response:
        """Return a run's page: status, progress, input, outcome, values, steps, children."""
        return Response(self.detail(self.visible_run(run_id)))


class RunCancelView(DurableView):
    """``POST runs/{id}/cancel/``: cancel a run and every run under it (202)."""

    @documented(
        request=CancelRunSerializer,
        responses={202: RunDetailSerializer},
        errors={
            400: "Invalid fields (`reason`); `parse_error`: the body is not JSON.",
            404: NOT_FOUND,
            409: "`run_finished`: the run has already finished.",
        },
    )
    def post(self, request: Request, run_id: str) -> Response:
        """Cancel the run and every run under it (202)."""
        run = self.operable_run(run_id)
        given = CancelRunSerializer(data=request.data or {})
        given.is_valid(raise_exception=True)
        if not cancel(run.pk, given.validated_data["reason"]):
            raise RunFinishedError(f"Run {run.pk} has already finished.")
        return Response(self.detail(get_run(run.pk).model), status=status.HTTP_202_ACCEPTED)


class RunRetryView(DurableView):
    """``POST runs/{id}/retry/``: start a failed or cancelled run again (202)."""

    @documented(
        request=None,
        responses={202: RunDetailSerializer},
        errors={
            404: NOT_FOUND,
            409: "`not_retryable`: the run is not `failed` or `cancelled`.",
        },
    )
    def post(self, request: Request, run_id: str) -> Response:
        """Start a failed or cancelled run again from its checkpoints (202)."""
        run = self.operable_run(run_id)
        try:
            handle = retry(run.pk)
        except RunNotRetryable as exc:
            raise NotRetryable(str(exc)) from None
        return Response(self.detail(handle.model), status=status.HTTP_202_ACCEPTED)


class RunForkView(DurableView):
    """``POST runs/{id}/fork/``: a new run from the run's first checkpoints (201)."""

    # A fork starts a run: it counts against the same scope as starting one.
    throttle_scopes = {"POST": "durable_start"}

    @documented(
        request=ForkRunSerializer,
        responses={201: RunDetailSerializer, 200: RunDetailSerializer},
        errors={
            400: "Invalid fields (`idempotency_key`); `invalid_from_step`: `from_step` is "
            "missing, not a whole number from 0, or past the steps the run recorded and "
            "finished; `parse_error`: the body is not JSON; `invalid_request`: the "
            "idempotency key started a run that is not a fork of this one; "
            "`unknown_workflow`: the run's workflow is not registered here.",
            403: "`permission_denied`: the access policy's `can_fork()` refuses (by default, "
            "it needs the permission `django_durable.fork_run`). " + FORBIDDEN,
            404: NOT_FOUND,
            409: "`not_forkable`: the run has not finished (only `completed`, `failed` or "
            "`cancelled` runs can be forked).",
        },
    )
    def post(self, request: Request, run_id: str) -> Response:
        """Fork the run: a new run whose first ``from_step`` checkpoints are the run's (201;
        200 for a known key)."""
        run = self.visible_run(run_id)
        if not self.policy.can_fork(request.user, run, request=request):
            raise PermissionDenied(
                "You may not fork this run: forking needs the permission "
                "django_durable.fork_run (or whatever the project's access policy asks)."
            )
        given = ForkRunSerializer(data=request.data)
        if not given.is_valid():
            if "from_step" in given.errors:
                words = " ".join(str(error) for error in given.errors["from_step"])
                raise InvalidFromStep(f"from_step: {words}")
            raise ValidationError(given.errors)
        options = given.validated_data
        key = options.get("idempotency_key")
        known = False  # the key made a fork before: 200, not 201
        if key is not None:
            key = scoped_key(request.user, key)
            runs = Run.objects.using(get_settings().DATABASE)
            known = runs.filter(idempotency_key=key).exists()
        handle = fork(run.pk, from_step=options["from_step"], idempotency_key=key)
        code = status.HTTP_200_OK if known else status.HTTP_201_CREATED
        return Response(self.detail(handle.model), status=code)
