"""Refusing oversized request bodies under ASGI before Django reads them.

Under WSGI the API reads a body lazily and stops past its limit. Under ASGI, Django reads the
whole body (to memory, then to a temporary file) before any middleware or view runs, so an
anonymous client could make the server take in a 100 MB upload only to refuse it. Wrap the
project's ASGI application::

    # asgi.py
    from django.core.asgi import get_asgi_application

    from django_durable.api.asgi import LimitBodies

    application = LimitBodies(get_asgi_application(), prefix="/durable/")

A request under ``prefix`` whose ``Content-Length`` is over the limit answers 413 at once,
unread. One without a length (chunked) is read here up to the limit, and answers 413 as
soon as it goes past it; a body within the limit is handed to Django as it came.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..core.conf import get_settings
from .parsers import ENVELOPE_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class LimitBodies:
    """ASGI middleware: 413 for request bodies under ``prefix`` over ``max_bytes``.

    ``max_bytes`` defaults to what the API accepts: ``MAX_PAYLOAD_BYTES`` plus 64 KiB for
    the envelope around a payload.
    """

    def __init__(self, app: App, *, prefix: str = "/", max_bytes: int | None = None) -> None:
        self.app = app
        self.prefix = prefix
        self.max_bytes = max_bytes

    def limit(self) -> int:
        """Return the largest body accepted, in bytes."""
        if self.max_bytes is not None:
            return self.max_bytes
        return get_settings().MAX_PAYLOAD_BYTES + ENVELOPE_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        length = _content_length(scope)
        if length is not None and length > limit:
            await _too_large(send, limit)
            return
        if length is not None:
            await self.app(scope, receive, send)  # Django reads at most ``length`` bytes
            return
        messages = await _read_within(receive, limit)
        if messages is None:
            await _too_large(send, limit)
            return
        await self.app(scope, _replay(messages, receive), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _read_within(receive: Receive, limit: int) -> list[Message] | None:
    """Return the body's messages, or ``None`` as soon as they go past ``limit`` bytes."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages  # the client went away: let Django see it
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "detail": f"The request body is over {limit} bytes.",
            "code": "payload_too_large",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
