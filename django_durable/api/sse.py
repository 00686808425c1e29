"""A run's streams over HTTP: ``runs/{id}/streams/{key}/`` answers a page of items as JSON,
or, for ``Accept: text/event-stream``, Server-Sent Events, resumable, unbuffered and light
on connections. Each event is ``id: <offset>`` plus ``data: <json>``; a client that
reconnects with ``Last-Event-ID`` resumes after it. The stream ends with ``event: close``
when the run closed it, ``event: end`` when the run finished, or after API_STREAM_SECONDS
(the browser reconnects and resumes). A quiet follower gives back its database connection
(see ``client.streams.poll_stream``) and sends a keep-alive comment every 15 seconds.
Under ASGI the frames come from an async generator (a sync one would be buffered), under
WSGI from a sync one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from ..client.streams import StreamPoll, apoll_stream, poll_stream, stream_batch
from ..core.conf import get_settings
from ..models import Run
from .base import NOT_FOUND, WHOLE_NUMBER, DurableView, documented, text_param, whole_number

# Seconds of silence after which a comment line keeps proxies from closing the stream.
KEEPALIVE_SECONDS = 15.0
# One event of the stream, as OpenAPI 3.2 (``itemSchema``) and Schemathesis read one.
SSE_EVENT = {
    "type": "object",
    "description": "With `Accept: text/event-stream` (or `format=sse`), Server-Sent Events; "
    "each is an item (`message`: `id` is its offset, `data` its value as one line of "
    "JSON), `close` (the run closed the stream, `data` is `{}`) or `end` (the run finished "
    'without closing it, `data` is `{"status": ...}`). A `retry:` line comes first, and a '
    "`: keep-alive` comment after 15 quiet seconds.",
    "properties": {
        "event": {"type": "string", "enum": ["message", "close", "end"]},
        "data": {"type": "string"},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["event", "data"],
}


def _frames(poll: StreamPoll) -> Iterator[bytes]:
    """Return the SSE frames of one poll of the stream."""
    if poll.kind == "items":
        for item in poll.items:
            data = json.dumps(item.get_value(), cls=DjangoJSONEncoder)
            yield f"id: {item.offset}\ndata: {data}\n\n".encode()
    elif poll.kind == "closed":
        yield b"event: close\ndata: {}\n\n"
    elif poll.kind == "ended":
        yield f"event: end\ndata: {json.dumps({'status': poll.status})}\n\n".encode()
    else:
        yield b": keep-alive\n\n"


def _retry() -> bytes:
    return f"retry: {int(get_settings().POLL_INTERVAL * 1000)}\n\n".encode()


def events(run: Run, key: str, offset: int) -> Iterator[bytes]:
    """Yield the SSE frames of stream ``key`` from ``offset`` (for WSGI)."""
    yield _retry()
    polls = poll_stream(
        run,
        key,
        offset,
        follow=True,
        max_seconds=get_settings().API_STREAM_SECONDS,
        idle=KEEPALIVE_SECONDS,
    )
    for poll in polls:
        yield from _frames(poll)


async def aevents(run: Run, key: str, offset: int) -> AsyncIterator[bytes]:
    """Yield the SSE frames of stream ``key`` from ``offset`` (for ASGI)."""
    yield _retry()
    polls = apoll_stream(
        run,
        key,
        offset,
        follow=True,
        max_seconds=get_settings().API_STREAM_SECONDS,
        idle=KEEPALIVE_SECONDS,
    )
    async for poll in polls:
        for frame in _frames(poll):
            yield frame


class EventStreamRenderer(BaseRenderer):
    """Lets content negotiation accept ``text/event-stream`` (the view streams itself)."""

    media_type = "text/event-stream"
    format = "sse"

    def render(
        self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None
    ) -> bytes:
        return b""


class RunStreamView(DurableView):
    """``GET runs/{id}/streams/{key}/?offset=n``: items as JSON, or Server-Sent Events."""

    renderer_classes = (JSONRenderer, EventStreamRenderer)
    token_ability = "stream"
    token_in_query = True  # EventSource cannot set an Authorization header

    def handle_exception(self, exc: Exception) -> Response:
        # An error is a JSON body, also for a request that accepts only text/event-stream.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)

    @documented(
        parameters=[
            OpenApiParameter(
                "offset", WHOLE_NUMBER, description="The first offset to return (default 0)."
            ),
            OpenApiParameter(
                "Last-Event-ID",
                WHOLE_NUMBER,
                OpenApiParameter.HEADER,
                description="Server-Sent Events only: the last id received; the stream resumes "
                "after it (or at `offset`, if that is later).",
            ),
        ],
        responses={
            (200, "application/json"): inline_serializer(
                "StreamPage",
                {
                    "items": inline_serializer(
                        "StreamItem",
                        {"offset": serializers.IntegerField(), "value": serializers.JSONField()},
                        many=True,
                        help_text="The items committed now, at most 500, oldest first.",
                    ),
                    "next_offset": serializers.IntegerField(
                        help_text="The offset to ask for next (the one sent, without items)."
                    ),
                    "closed": serializers.BooleanField(
                        help_text="Whether the page reaches the end the run wrote: no more items."
                    ),
                },
            ),
            (200, "text/event-stream"): SSE_EVENT,
        },
        errors={
            400: "`parse_error`: `offset` or `Last-Event-ID` is not a whole number from 0 to "
            "2**63-1, or the key holds NUL or a lone surrogate.",
            404: f"{NOT_FOUND} `not_found`: a `format` other than `json` or `sse`.",
        },
    )
    def get(self, request: Request, run_id: str, key: str) -> Any:
        """Return a page of stream ``key`` as JSON, or follow it as Server-Sent Events."""
        run = self.visible_run(run_id)
        text_param("key", key)
        offset = self.query_int("offset") or 0
        if request.accepted_renderer.format == "sse":
            return self._events(request, run, key, offset)
        batch = stream_batch(run, key, offset)
        items = [{"offset": i.offset, "value": i.get_value()} for i in batch if not i.closes]
        closed = bool(batch) and batch[-1].closes
        next_offset = items[-1]["offset"] + 1 if items else offset
        return Response({"items": items, "next_offset": next_offset, "closed": closed})

    def _events(self, request: Request, run: Run, key: str, offset: int) -> StreamingHttpResponse:
        resume = request.headers.get("Last-Event-ID", "")
        if resume:
            offset = max(offset, whole_number("Last-Event-ID", resume) + 1)
        under_asgi = isinstance(request._request, ASGIRequest)
        frames = aevents(run, key, offset) if under_asgi else events(run, key, offset)
        response = StreamingHttpResponse(frames, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: do not buffer
        response["Content-Encoding"] = "identity"  # GZipMiddleware would buffer it
        return response
