"""Signed inbound webhooks: ``webhooks/<source>/`` checks a Standard Webhooks signature
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) against the source's
secrets in ``DJANGO_DURABLE["WEBHOOKS"]``, then emits the source's one event with the JSON
body as its data, once per ``webhook-id``. The signature is the authentication: there is no
user, so the access policy is not asked.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, status
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from standardwebhooks import Webhook, WebhookVerificationError

from ..client.messaging import emit_event
from ..core.conf import WebhookSource, webhook_source
from ..exceptions import DurableError
from .base import documented
from .errors import exception_handler
from .parsers import loads_body, read_limited
from .serializers import IdSerializer
from .throttles import ScopeThrottle

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_HEADERS_MEAN = (
    "The call's id, the same on every retry of it.",
    "When it was signed, in whole seconds since 1970 (UTC).",
    "`v1,<base64 HMAC-SHA256>` of `<id>.<timestamp>.<body>`; several, separated by spaces.",
)
# Standard Webhooks' tolerance, which the library applies; here it only picks the error code.
TOLERANCE_SECONDS = 5 * 60


class WebhookNotFound(exceptions.NotFound):
    """No webhook source of that name is configured."""

    default_detail = "No webhook source of that name."
    default_code = "webhook_not_found"


class WebhookSignatureMissing(exceptions.APIException):
    """The request lacks a Standard Webhooks header."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "The request is not signed."
    default_code = "webhook_signature_missing"


class WebhookSignatureInvalid(exceptions.APIException):
    """No secret of the source made the signature (or the headers are malformed)."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "The webhook's signature is not valid."
    default_code = "webhook_signature_invalid"


class WebhookTimestampStale(exceptions.APIException):
    """The timestamp is more than five minutes from now: a replay, or a clock that is off."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "The webhook's timestamp is more than five minutes away from now."
    default_code = "webhook_timestamp_stale"


def verify(source: WebhookSource, body: bytes, request: Request) -> str:
    """Return the ``webhook-id`` if one of the source's secrets signed ``body``; else 401."""
    headers = {name: request.headers.get(name, "") for name in HEADERS}
    missing = [name for name, value in headers.items() if not value]
    if missing:
        raise WebhookSignatureMissing(f"The request lacks the {', '.join(missing)} header(s).")
    for secret in source.secrets:
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError):  # ValueError: text it cannot encode
            continue
        return headers["webhook-id"]
    if _is_stale(headers["webhook-timestamp"]):
        raise WebhookTimestampStale()
    raise WebhookSignatureInvalid()


def _is_stale(timestamp: str) -> bool:
    try:
        seconds = float(timestamp)
    except ValueError:
        return False  # malformed ("nan" and "inf" too, below): invalid, not stale
    return math.isfinite(seconds) and abs(time.time() - seconds) > TOLERANCE_SECONDS


def parse(body: bytes) -> Any:
    """Return the JSON body as data that can be stored, or raise a 400."""
    if not body:
        raise ParseError("The body is empty: a webhook's body is JSON.")
    data = loads_body(body)
    try:  # a lone surrogate ("\ud800") parses, but no database stores it the same way
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError("The JSON has a lone surrogate (\\ud800 to \\udfff).") from None
    except (RecursionError, ValueError):
        pass  # emit_event refuses it with a clear message
    return data


def idempotency_key(source: WebhookSource, webhook_id: str) -> str:
    """Return ``webhook:<source>:<webhook-id>``, hashed when over 255 characters (never cut)."""
    key = f"webhook:{source.name}:{webhook_id}"
    if len(key) > 255:
        key = "webhook:sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


class WebhookView(APIView):
    """``POST webhooks/<source>/``: a signed webhook, emitted as the source's event."""

    # The signature authenticates the request: no login, so no CSRF check either.
    authentication_classes = ()
    permission_classes = ()
    parser_classes = ()  # the raw body is verified, then parsed here
    renderer_classes = (JSONRenderer,)
    throttle_classes = ()
    throttle_scopes = {"POST": "durable_webhook"}

    def get_throttles(self) -> list[Any]:
        return [ScopeThrottle(self.throttle_scopes["POST"])]

    def get_exception_handler(self) -> Any:
        return exception_handler

    @documented(
        request={"application/json": OpenApiTypes.ANY},
        parameters=[
            OpenApiParameter(name, str, OpenApiParameter.HEADER, required=True, description=text)
            for name, text in zip(HEADERS, _HEADERS_MEAN, strict=True)
        ],
        responses={202: IdSerializer},
        errors={
            400: "`parse_error`: a validly signed body that is empty, not UTF-8, not JSON, "
            "nested too deeply, or holds a lone surrogate; `invalid_payload`: JSON that cannot "
            "be stored (NaN, a number out of range, NUL).",
            401: "Unsigned, badly signed or stale: `webhook_signature_missing`, "
            "`webhook_signature_invalid`, `webhook_timestamp_stale`.",
            404: "`webhook_not_found`: no source of that name in `WEBHOOKS`.",
            413: "`payload_too_large`: the body is over `MAX_PAYLOAD_BYTES` plus 64 KiB, or the "
            "data is over `MAX_PAYLOAD_BYTES` once encoded.",
        },
    )
    def post(self, request: Request, source: str) -> Response:
        """Check a Standard Webhooks signature, then emit the source's event (202)."""
        configured = webhook_source(source)
        if configured is None:
            raise WebhookNotFound()
        body = read_limited(request.stream)
        webhook_id = verify(configured, body, request)
        data = parse(body)
        try:
            event_id = emit_event(
                configured.event,
                data,
                source=f"webhook:{configured.name}",
                idempotency_key=idempotency_key(configured, webhook_id),
            )
        except DurableError:
            raise
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        return Response({"id": event_id}, status=status.HTTP_202_ACCEPTED)
