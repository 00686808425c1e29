"""Emitting events over HTTP: ``events/`` takes an event as plain JSON ``{name, data}`` or as
a CloudEvent (structured or binary mode), maps a CloudEvent's attributes to
``emit_event``'s arguments (its ``source`` and ``id`` make the idempotency key, so a
redelivery emits once) and asks the access policy whether this user may emit it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response

from ..client.messaging import emit_event
from ..exceptions import DurableError
from .base import DurableView, documented, text_param
from .parsers import CloudEventParser, JSONParser
from .serializers import CloudEventSerializer, EmitEventSerializer, IdSerializer


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


def _named(event: dict[str, Any]) -> str:
    """Return the name a CloudEvent would be emitted under, before validating it ("" if none)."""
    kind, subject = event.get("type"), event.get("subject")
    if not isinstance(kind, str):
        return ""
    return f"{kind}:{subject}" if isinstance(subject, str) and subject else kind


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
    subject = event.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise ParseError("The CloudEvent's subject must be a string.")
    too_long = [a for a in ("source", "type") if len(event[a]) > 255]
    if too_long:
        raise ParseError(f"The CloudEvent's {', '.join(too_long)} is over 255 characters.")
    for attribute in ("id", "source", "type", "subject"):
        if isinstance(event.get(attribute), str):
            text_param(f"The CloudEvent's {attribute}", event[attribute])
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
    throttle_scopes = {"POST": "durable_emit"}

    @documented(
        request={
            JSONParser.media_type: EmitEventSerializer,
            CloudEventParser.media_type: CloudEventSerializer,
        },
        parameters=[
            OpenApiParameter(
                f"ce-{attribute}",
                {"type": "string", "enum": ["1.0"]} if attribute == "specversion" else str,
                OpenApiParameter.HEADER,
                description=f"A binary-mode CloudEvent's `{attribute}`: with `ce-specversion`, "
                "the `application/json` body is the event's data.",
            )
            for attribute in ("specversion", "id", "source", "type", "subject")
        ],
        responses={202: IdSerializer},
        errors={
            400: "Invalid fields; `parse_error`: the body is not JSON or nests too deeply, a "
            "CloudEvent is refused (a `specversion` other than 1.0, no `id`, `source` or "
            "`type`, `data_base64`, a `source` or `type` over 255 characters), or the event's "
            "name is over 200 characters; `invalid_payload`: the data cannot be stored as JSON.",
        },
    )
    def post(self, request: Request) -> Response:
        """Emit an event, as JSON ``{name, data}`` or as a CloudEvent in either mode (202)."""
        cloud_event = _cloud_event(request)
        if cloud_event is not None:
            # Who may emit comes first: a user who may not learns nothing from validation.
            if not self.policy.can_emit(request.user, _named(cloud_event), request=request):
                self.deny()
            fields = _from_cloud_event(cloud_event)
        else:
            given = EmitEventSerializer(data=request.data)
            given.is_valid(raise_exception=True)
            fields = dict(given.validated_data)
        if not self.policy.can_emit(request.user, fields["name"], request=request):
            self.deny()
        try:
            event_id = emit_event(
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
