"""Settling callbacks over HTTP: ``callbacks/<token>/`` completes one with the JSON body as
its value, ``callbacks/<token>/fail/`` fails it with ``{"error": ..., "details": ...}``.

The token is the last segment of a callback's URL (``cb.url``): its id, signed with
``SECRET_KEY``. The signature is the authentication, as for webhooks: there is no user, so
no login, no CSRF check and no access policy. A callback is settled once; a second
completion is a 409.
"""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..client.callbacks import complete_callback, fail_callback
from ..core.signing import callback_id_of
from ..exceptions import CallbackClosed, CallbackNotFound
from .base import documented
from .errors import exception_handler
from .parsers import loads_body, read_limited
from .throttles import ScopeThrottle

TOKEN = OpenApiParameter(
    "token",
    str,
    OpenApiParameter.PATH,
    description="The last segment of the callback's URL (`cb.url`): its id and a signature.",
)
SETTLED = inline_serializer(
    "CallbackSettled",
    {
        "id": serializers.UUIDField(help_text="The callback's id."),
        "status": serializers.CharField(help_text="`completed` or `failed`: what was done."),
    },
)
ERRORS = {
    400: "`parse_error`: the body is not UTF-8 JSON, nests too deeply, or holds a lone "
    "surrogate; `invalid_payload`: JSON that cannot be stored (NaN, NUL).",
    403: "`callback_signature_invalid`: the URL was not made by this site (a signature that "
    "does not match, or not a callback URL at all).",
    404: "`callback_not_found`: a valid URL whose callback no longer exists (its run was pruned).",
    409: "`callback_closed`: the callback was completed or failed before (it is settled "
    "once), its timeout passed, or its run has finished.",
    413: "`payload_too_large`: the body is over `MAX_PAYLOAD_BYTES` plus 64 KiB, or the value "
    "is over `MAX_PAYLOAD_BYTES` once encoded.",
}


class CallbackSignatureInvalid(exceptions.PermissionDenied):
    """The callback URL's signature is not valid: it was not made by this site."""

    default_detail = "The callback URL's signature is not valid."
    default_code = "callback_signature_invalid"


class CallbackNotFoundError(exceptions.NotFound):
    """No callback has that id (any more)."""

    default_detail = "No callback has that id."
    default_code = "callback_not_found"


class CallbackClosedError(exceptions.APIException):
    """The callback cannot be settled any more."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The callback cannot be completed or failed any more."
    default_code = "callback_closed"


def body(request: Request) -> Any:
    """Return the JSON body (``None`` when empty), or raise a 400 / 413."""
    data = loads_body(read_limited(request.stream))
    try:  # a lone surrogate ("\ud800") parses, but no database stores it the same way
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError("The JSON has a lone surrogate (\\ud800 to \\udfff).") from None
    except (RecursionError, ValueError):
        pass  # the client's serialization refuses it with a clear message
    return data


class CallbackView(APIView):
    """``POST callbacks/<token>/``: complete the callback with the JSON body as its value."""

    # The signature authenticates the request: no login, so no CSRF check either.
    authentication_classes = ()
    permission_classes = ()
    parser_classes = ()  # the raw body is read here, within the payload limit
    renderer_classes = (JSONRenderer,)
    throttle_classes = ()
    throttle_scopes = {"POST": "durable_callback"}

    def get_throttles(self) -> list[Any]:
        return [ScopeThrottle(self.throttle_scopes["POST"])]

    def get_exception_handler(self) -> Any:
        return handle_exception

    def callback_id(self, token: str) -> str:
        """Return the id the token was signed for, or refuse the request (403)."""
        found = callback_id_of(token)
        if found is None:
            raise CallbackSignatureInvalid()
        return found

    @documented(
        request={"application/json": OpenApiTypes.ANY},
        parameters=[TOKEN],
        responses={200: SETTLED},
        errors=ERRORS,
        auth=[],
    )
    def post(self, request: Request, token: str) -> Response:
        """Complete the callback: its ``cb.wait()`` returns the body (``null`` if empty)."""
        callback_id = self.callback_id(token)
        complete_callback(callback_id, body(request))
        return Response({"id": callback_id, "status": "completed"})


class CallbackFailView(CallbackView):
    """``POST callbacks/<token>/fail/``: fail the callback with an error."""

    @documented(
        request=inline_serializer(
            "CallbackFailure",
            {
                "error": serializers.CharField(help_text="What went wrong, for people."),
                "details": serializers.JSONField(
                    required=False, help_text="Any JSON: `CallbackFailed.details` in the run."
                ),
            },
        ),
        parameters=[TOKEN],
        responses={200: SETTLED},
        errors=ERRORS,
        auth=[],
    )
    def post(self, request: Request, token: str) -> Response:
        """Fail the callback: its ``cb.wait()`` raises ``CallbackFailed``."""
        callback_id = self.callback_id(token)
        data = body(request)
        if not isinstance(data, dict) or not isinstance(data.get("error"), str):
            raise ParseError('The body must be a JSON object with "error", a string.')
        unknown = sorted(set(data) - {"error", "details"})
        if unknown:
            raise ParseError(f"Unknown field(s): {', '.join(map(repr, unknown))}.")
        fail_callback(callback_id, data["error"], details=data.get("details"))
        return Response({"id": callback_id, "status": "failed"})


def handle_exception(exc: Exception, context: dict[str, Any]) -> Any:
    """Map the callback errors, then hand over to the API's handler."""
    if isinstance(exc, CallbackNotFound):
        exc = CallbackNotFoundError()
    elif isinstance(exc, CallbackClosed):
        exc = CallbackClosedError(str(exc))
    return exception_handler(exc, context)
