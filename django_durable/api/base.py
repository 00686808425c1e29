"""What every API view shares: ``DurableView`` (JSON in and out, errors mapped, the access
policy asked, visible and operable runs, a run's detail page with its children, checked
query parameters), ``documented()`` for the OpenAPI description, the runs list's
``RunPagination`` and ``latest_values``. The view modules build on it; it imports none of them.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, NoReturn

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.db.models import Max, QuerySet
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotAuthenticated, NotFound, ParseError, PermissionDenied
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from ..client.lookup import as_uuid
from ..client.tokens import TokenGrant, check_token, is_token
from ..core.conf import get_settings
from ..core.durations import to_seconds
from ..core.names import check_text
from ..exceptions import RunNotFound
from ..models import Run, RunValue
from .access import get_access_policy
from .errors import exception_handler, token_not_accepted
from .parsers import JSONParser
from .schema import DurableSchema
from .serializers import MAX_CHILDREN, RunDetailSerializer, readable
from .throttles import ScopeThrottle


def documented(*, errors: dict[int, str] | None = None, **kwargs: Any) -> Any:
    """``extend_schema`` on ``DurableSchema``, whatever the project's default schema class.

    ``errors`` maps each status this method itself can answer with to when (its codes);
    the errors every view shares (authentication, bodies, throttles) are added by
    ``DurableSchema``. extend_schema takes its base class from the function's ``schema``
    attribute first, and falls back to REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS'], which a
    project need not set.
    """

    def decorate(method: Any) -> Any:
        method.schema = DurableSchema()
        method.documented_errors = dict(errors or {})
        return extend_schema(**kwargs)(method)

    return decorate


class DurableView(APIView):
    """Base of the API's views: JSON in and out, errors mapped, the access policy asked."""

    parser_classes: tuple[type[BaseParser], ...] = (JSONParser,)
    renderer_classes: tuple[type[BaseRenderer], ...] = (JSONRenderer,)
    # Per-object rules live in the access policy; anonymous users get what it allows.
    permission_classes = ()
    schema = DurableSchema()
    # The ability a per-run access token needs here (None: the view takes no token), and
    # whether it may come as ``?token=`` (EventSource cannot set headers: streams only).
    token_ability: str | None = None
    token_in_query = False
    # What the request's token allows, once checked (None: no token).
    grant: TokenGrant | None = None
    # The DRF throttle scope of a method (see ``throttles``), on top of the project's own.
    throttle_scopes: dict[str, str] = {}

    def get_exception_handler(self) -> Any:
        return exception_handler

    def get_throttles(self) -> list[Any]:
        throttles = list(super().get_throttles())
        scope = self.throttle_scopes.get(self.request.method or "")
        if scope is not None:
            throttles.append(ScopeThrottle(scope))
        return throttles

    def perform_authentication(self, request: Request) -> None:
        # A request with one of our tokens is the token's: the project's authentication
        # classes (a JWT one, say, that also reads "Bearer") do not see it.
        if run_token(request, in_query=True) is not None:
            request.user = AnonymousUser()
            return
        super().perform_authentication(request)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.grant = None
        if "token" in request.query_params and not self.token_in_query:
            raise token_not_accepted("in the query string here: send it as a Bearer header")
        token = run_token(request, in_query=self.token_in_query)
        if token is not None:
            if self.token_ability is None:
                raise token_not_accepted("on this endpoint")
            self.grant = check_token(token, self.token_ability)
            return
        if not self.policy.allows(request.user, request=request):
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

    def run_id_of(self, run_id: str | uuid.UUID) -> uuid.UUID:
        """Return the id the path names: a run id, or ``-`` with ``?key=``.

        ``runs/-/...?key=K`` is the run this user started over HTTP with the idempotency
        key ``K``: keys are per user (stored as ``api:<user pk>:<key>``), so nobody reaches
        another user's run by key. Anything else that is not a run id is a 404.
        """
        if run_id != BY_KEY:
            return as_uuid(run_id)  # RunNotFound for what is not a run id
        key = text_param("key", self.request.query_params.get("key", ""))
        if not key:
            raise ParseError(
                "runs/-/ names a run by ?key=: the idempotency key you started it with."
            )
        user = self.request.user
        if self.grant is not None or not user.is_authenticated:
            raise ParseError(
                "?key= needs a signed-in user (idempotency keys are per user); a run access "
                "token reaches its run by the run's id."
            )
        runs = Run.objects.using(get_settings().DATABASE)
        found = runs.filter(idempotency_key=scoped_key(user, key)).values_list("pk", flat=True)
        run = found.first()
        if run is None:
            raise RunNotFound()
        return run

    def visible_run(self, run_id: str | uuid.UUID) -> Run:
        """Return the run if this user (or token) may see it; 404 otherwise.

        A run's existence stays private: one a token does not reach answers as one that
        does not exist. ``run_id`` may be ``-``, with ``?key=`` (see ``run_id_of``).
        """
        run_id = self.run_id_of(run_id)
        if self.grant is not None and not self.grant.reaches(run_id):
            raise RunNotFound()
        run = Run.objects.using(get_settings().DATABASE).filter(pk=run_id).first()
        if run is None:
            raise RunNotFound()
        if self.grant is None and not self.policy.can_view(
            self.request.user, run, request=self.request
        ):
            raise RunNotFound()
        return run

    def operable_run(self, run_id: str | uuid.UUID) -> Run:
        """Return the run if this user may operate it: 404 if not visible, 403 if not operable.

        A token checked for this view's ability (``send``) operates what it reaches.
        """
        run = self.visible_run(run_id)
        if self.grant is None and not self.policy.can_operate(
            self.request.user, run, request=self.request
        ):
            self.deny()
        return run

    def detail(self, run: Run) -> Any:
        """Return the rendered page of ``run``."""
        values = latest_values([run.pk]).get(run.pk, {})
        children, children_count = self.children(run)
        context = {
            "progress": {run.pk: values.get("progress")},
            "values": values,
            "tracebacks": self.grant is None
            and self.policy.can_see_tracebacks(self.request.user, request=self.request),
            "children": children,
            "children_count": children_count,
        }
        return RunDetailSerializer(run, context=context).data

    def children(self, run: Run) -> tuple[list[dict[str, Any]], int]:
        """Return the first MAX_CHILDREN child runs this user may see, and how many there are.

        Oldest first. The count is a query of its own only when the list is full.
        """
        runs = Run.objects.using(get_settings().DATABASE).filter(parent_id=run.pk)
        visible: QuerySet[Run]
        if self.grant is not None:
            visible = runs if self.grant.include_children else runs.none()
        else:
            visible = self.policy.visible_runs(self.request.user, runs, request=self.request)
        page = visible.order_by("parent_position", "created_at", "id").values(
            "id", "workflow_name", "status", "created_at", "finished_at"
        )[:MAX_CHILDREN]
        rows = [dict(row) for row in page]
        return rows, (len(rows) if len(rows) < MAX_CHILDREN else visible.count())

    def query_float(self, name: str, maximum: float) -> float:
        """Return a non-negative number of seconds query parameter, capped at ``maximum``."""
        raw = self.request.query_params.get(name, "0")
        try:
            value = float(raw)
        except ValueError:
            raise ParseError(f"{name} must be a number of seconds.") from None
        try:
            seconds = to_seconds(value, name)  # words NaN and negative values
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        return min(seconds, maximum)

    def query_int(self, name: str) -> int | None:
        """Return a non-negative integer query parameter, if given."""
        raw = self.request.query_params.get(name)
        return None if raw is None or raw == "" else whole_number(name, raw)


def whole_number(name: str, raw: str) -> int:
    """Return ``raw`` as a whole number 0 to 2**63 - 1 written in ASCII digits; else 400.

    ``str.isdigit`` would take "²" and Arabic-Indic digits, and ``int`` 5,000 digits.
    """
    if not _DIGITS.fullmatch(raw) or int(raw) > _BIGGEST:
        raise ParseError(f"{name} must be a whole number from 0 to {_BIGGEST}.")
    return int(raw)


def text_param(name: str, raw: str) -> str:
    """Return a text parameter (query or path) a database can store; else 400."""
    try:
        return check_text(raw, name)
    except ValueError as exc:
        raise ParseError(str(exc)) from None


def scoped_key(user: Any, key: str) -> str:
    """Return the idempotency key ``key`` of ``user`` as it is stored: ``api:<pk>:<key>``.

    Keys given over HTTP are per user, so that nobody can reach another user's run by key.
    """
    return f"api:{user.pk}:{key}"


# The run id of ``runs/-/...?key=K``: the run is named by its idempotency key.
BY_KEY = "-"

_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)
_BIGGEST = 2**63 - 1  # a bigint

# What the schema says of the numbers ``whole_number`` reads, and of a run that is not there.
WHOLE_NUMBER = {"type": "integer", "minimum": 0, "maximum": _BIGGEST}
NOT_FOUND = "`run_not_found`: no run with that id, or one you may not see."


def run_token(request: Request, *, in_query: bool) -> str | None:
    """Return the run access token the request carries, if any.

    ``Authorization: Bearer dur_...``; with ``in_query``, also ``?token=dur_...``. A bearer
    token of another kind (the project's own) is not ours, and is left alone.
    """
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and is_token(value.strip()):
        return value.strip()
    query = request.query_params.get("token", "") if in_query else ""
    return query if is_token(query) else None


class RunPagination(CursorPagination):
    """Newest first; a cursor, so pages stay fast and stable over millions of runs."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "in": "query",
                "required": False,
                "description": "The page to read: take it from `next` or `previous`, never "
                "build it. One that was not made here is a 400 `parse_error`.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "in": "query",
                "required": False,
                "description": f"Runs per page, {self.page_size} by default. A larger number "
                f"gives {self.max_page_size}; one that is not a whole number from 1 gives "
                f"{self.page_size}.",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {**link, "description": "The next page (older runs); null on the last."},
                "previous": {**link, "description": "The previous page; null on the first."},
                "results": schema,
            },
        }

    def decode_cursor(self, request: Any) -> Any:
        try:
            cursor = super().decode_cursor(request)
        except NotFound:  # DRF's answer to a cursor it cannot decode: one we did not make
            raise ParseError("The cursor is not valid: start again from the first page.") from None
        # Our cursors hold an aware time: anything else was not made here.
        if cursor is not None and cursor.position is not None:
            moment = parse_datetime(cursor.position) if isinstance(cursor.position, str) else None
            if moment is None or moment.tzinfo is None:
                raise ParseError("The cursor is not valid: start again from the first page.")
        return cursor

    def paginate_queryset(self, queryset: Any, request: Any, view: Any = None) -> Any:
        # A forged cursor decodes to a position that is not a time: a 400, not a 500.
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, ValueError, TypeError, OverflowError, DataError):
            raise ParseError("The cursor is not valid: start again from the first page.") from None


def latest_values(run_ids: list[Any], key: str | None = None) -> dict[Any, dict[str, Any]]:
    """Return the newest value per (run, key) of ``run_ids``, in two queries."""
    rows = RunValue.objects.using(get_settings().DATABASE).filter(run_id__in=run_ids)
    if key is not None:
        rows = rows.filter(key=key)
    newest = rows.values("run_id", "key").annotate(newest=Max("id")).values("newest")
    found: dict[Any, dict[str, Any]] = {}
    for row in RunValue.objects.using(get_settings().DATABASE).filter(id__in=newest):
        found.setdefault(row.run_id, {})[row.key] = readable(row.get_value)
    return found
