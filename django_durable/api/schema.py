"""The API's own description: ``schema/`` serves the OpenAPI 3 document of the endpoints in
``urls``, built by drf-spectacular from the views' ``documented()`` annotations, with the
server URL set to wherever the project mounted the API.

``DurableSchema`` adds what every view shares, so that no view has to repeat it: the error
body (``Error``, and DRF's ``FieldErrors`` where a body is validated), the errors of
authentication, permissions, bodies and throttles, the per-run token security schemes, and
the run id and key path parameters. A view method lists only its own errors, in
``documented(errors=...)``.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers

ERROR = {
    "type": "object",
    "description": "An error: a message for people (`detail`) and a code for programs (`code`).",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["detail", "code"],
}
FIELD_ERRORS = {
    "type": "object",
    "description": "Invalid fields, as Django REST framework reports them: for each field its "
    "messages (for a list or an object, the messages of each invalid item or key by index or "
    "key); `non_field_errors` for the body as a whole (not a JSON object, say).",
    "additionalProperties": {
        "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}]
    },
}
SECURITY_SCHEMES = {
    "runToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "dur_<selector>_<secret>",
        "description": "A per-run access token, made on the server with `handle.create_token()`: "
        "it reaches one run (and its children, if made with `include_children=True`) for the "
        "abilities it grants (`read`, `stream`, `send`). A request that carries one is the "
        "token's: the project's authentication and the access policy are not asked.",
    },
    "runTokenQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The same per-run access token in the query string, on stream GETs only "
        "(a browser's EventSource cannot set a header). Elsewhere it is refused.",
    },
}
PATH_PARAMETERS = {
    "run_id": OpenApiParameter(
        "run_id",
        OpenApiTypes.UUID,
        OpenApiParameter.PATH,
        description="The run's id. Anything else, and a run you may not see, answers the JSON "
        "404 `run_not_found`. (`-` with `?key=K` names the run you started with the "
        "idempotency key `K`: see the HTTP API reference.)",
    ),
    "key": OpenApiParameter(
        "key",
        {"type": "string", "minLength": 1},
        OpenApiParameter.PATH,
        description="The key, as the run wrote it (it may hold slashes).",
    ),
}
_BODY_METHODS = ("POST", "PUT", "PATCH")


def error_response(description: str, *, fields: bool = False) -> dict[str, Any]:
    """Return an OpenAPI response of the error body (or DRF's field errors, with ``fields``)."""
    error = {"$ref": "#/components/schemas/Error"}
    schema = {"oneOf": [error, {"$ref": "#/components/schemas/FieldErrors"}]} if fields else error
    return {"description": description, "content": {"application/json": {"schema": schema}}}


class DurableSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus what the API's views share (see the module)."""

    def get_override_parameters(self) -> list[Any]:
        variables = set(re.findall(r"{(\w+)}", self.path))
        shared = [parameter for name, parameter in PATH_PARAMETERS.items() if name in variables]
        hook = getattr(self.view, "schema_parameters", None)
        return shared + (hook() if hook else []) + list(super().get_override_parameters())

    def get_auth(self) -> list[dict[str, list[str]]]:
        auth: list[dict[str, list[str]]] = list(super().get_auth())
        if getattr(self.view, "token_ability", None):
            auth.append({"runToken": []})
            if getattr(self.view, "token_in_query", False):
                auth.append({"runTokenQuery": []})
        for name in {name for requirement in auth for name in requirement}:
            if name in SECURITY_SCHEMES:
                self._register(name, ResolvedComponent.SECURITY_SCHEMA, SECURITY_SCHEMES[name])
        return auth

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for code, response in self.error_responses().items():
            responses.setdefault(str(code), response)
        self._register("Error", ResolvedComponent.SCHEMA, ERROR)
        self._register("FieldErrors", ResolvedComponent.SCHEMA, FIELD_ERRORS)
        return operation

    def error_responses(self) -> dict[int, dict[str, Any]]:
        """Return the error responses of this operation: its own, then the shared ones."""
        method = getattr(self.view, self.method.lower())
        own: dict[int, str] = getattr(method, "documented_errors", {})
        validates = self.method in _BODY_METHODS and _validates(self.get_request_serializer())
        errors = {
            code: error_response(text, fields=code == 400 and validates)
            for code, text in own.items()
        }
        if validates and self.view.get_parsers():
            errors.setdefault(413, error_response(_TOO_LARGE))
            types = _media_types(self.view.get_parsers())
            errors.setdefault(415, error_response(f"`unsupported_media_type`: not {types}."))
        types = _media_types(self.view.get_renderers())
        errors.setdefault(406, error_response(f"`not_acceptable`: `Accept` allows no {types}."))
        if hasattr(self.view, "token_ability"):  # the views that ask the access policy
            errors.setdefault(401, self._unauthenticated())
            errors.setdefault(403, error_response(FORBIDDEN))
        throttled = self._throttled()
        if throttled is not None:
            errors.setdefault(429, throttled)
        return dict(sorted(errors.items()))

    def _unauthenticated(self) -> dict[str, Any]:
        ability = getattr(self.view, "token_ability", None)
        if ability is None:
            tokens = "`token_not_accepted`: a per-run access token (this endpoint takes none)."
        else:
            tokens = (
                "A per-run access token that does not allow this: `token_invalid`, "
                f"`token_expired`, `token_revoked`, `token_not_granted` (it lacks `{ability}`)"
            )
            if not getattr(self.view, "token_in_query", False):
                tokens += "; `token_not_accepted` for one in the query string (streams only)"
            tokens += "."
        response = error_response(
            "`not_authenticated`: no credentials, and the first of the project's authentication "
            "classes can ask for them (HTTP Basic: `WWW-Authenticate` says how); "
            f"`authentication_failed`: wrong credentials. {tokens}"
        )
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        return response

    def _throttled(self) -> dict[str, Any] | None:
        scope = getattr(self.view, "throttle_scopes", {}).get(self.method)
        rates = [f"of the throttle scope `{scope}`"] if scope else []
        if self.view.throttle_classes:
            rates.append("of the project's throttle classes")
        if not rates:
            return None
        response = error_response(
            f"`throttled`: over a rate {' or '.join(rates)}, when one is set. `Retry-After` "
            "says in how many seconds to try again."
        )
        response["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 0}}}
        return response

    def _register(self, name: str, kind: str, schema: dict[str, Any]) -> None:
        self.registry.register_on_missing(ResolvedComponent(name, kind, schema, object=name))


def _media_types(handlers: Any) -> str:
    """Return the media types of parsers or renderers, for people."""
    return " or ".join(f"`{handler.media_type}`" for handler in handlers)


def _validates(request: Any) -> bool:
    """Return whether a request body is checked by a serializer (so may have field errors)."""
    found = request.values() if isinstance(request, dict) else [request]
    return any(
        isinstance(value, serializers.BaseSerializer)
        or (isinstance(value, type) and issubclass(value, serializers.BaseSerializer))
        for value in found
    )


_TOO_LARGE = (
    "`payload_too_large`: the body is over `MAX_PAYLOAD_BYTES` plus 64 KiB (refused before it "
    "is read to the end), or a payload in it is over `MAX_PAYLOAD_BYTES` once encoded."
)
FORBIDDEN = (
    "`not_authenticated`, `authentication_failed`: no credentials or wrong ones, and the first "
    "authentication class cannot ask for them (the session); `permission_denied`: the access "
    "policy refuses, or a session's POST lacks its CSRF token (`X-CSRFToken`)."
)


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
