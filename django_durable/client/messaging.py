"""Events and messages from application code: ``emit_event`` and ``send``.

Writes join the caller's ``transaction.atomic()`` block: what a rolled-back request
emitted or sent never existed, and runs are woken only when the transaction commits.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from ..core import serialization
from ..core.names import check_name
from ..exceptions import RunNotFound
from ..store import channels
from .lookup import db_alias, run_ref, text_option


def emit_event(
    name: str,
    data: Any = None,
    source: str | None = None,
    type: str | None = None,
    *,
    idempotency_key: str | None = None,
) -> int:
    """Emit event ``name``; every run waiting for it resumes, and later waiters see it too.

    Returns the event's id. ``source`` and ``type`` describe it (as in CloudEvents); the
    same ``idempotency_key`` emits once (the first event's id is returned).
    """
    check_name(name, "event")
    text = serialization.dumps(data, what=f"The data of event {name!r}")
    return channels.insert_event(
        name,
        text,
        source=text_option(source, "source="),
        type=text_option(type, "type="),
        idempotency_key=None
        if idempotency_key is None
        else text_option(idempotency_key, "idempotency_key="),
        alias=db_alias(),
    )


async def aemit_event(
    name: str,
    data: Any = None,
    source: str | None = None,
    type: str | None = None,
    *,
    idempotency_key: str | None = None,
) -> int:
    """Emit event ``name`` (async)."""
    return await sync_to_async(emit_event)(
        name, data, source, type, idempotency_key=idempotency_key
    )


# ``send(key=..., message=...)`` needs a default for ``message``; leaving it out is an error.
_NO_MESSAGE: Any = object()


def send(
    run_id: Any = None,
    message: Any = _NO_MESSAGE,
    topic: str | None = None,
    idempotency_key: str | None = None,
    *,
    key: str | None = None,
) -> int:
    """Deliver ``message`` to a run; it is kept until the run's ``recv(topic)`` takes it.

    Returns the message's id; the same ``idempotency_key`` stores one message. Raises
    ``RunNotFound`` for an unknown run. ``key=`` names the run by the idempotency key it
    was started with, instead of its id: ``send(key="order-42", message={...})``.
    """
    if message is _NO_MESSAGE:
        raise TypeError("send() needs the message (None is a message too: pass it).")
    name = "" if topic is None else check_name(topic, "message topic")
    if idempotency_key is not None:
        text_option(idempotency_key, "idempotency_key=")
    text = serialization.dumps(message, what="The message")
    run = run_ref(run_id, key)
    message_id = channels.insert_message(
        run, name, text, idempotency_key=idempotency_key, alias=db_alias()
    )
    if message_id is None:
        raise RunNotFound.of(run if run_id is None else run_id)
    return message_id


async def asend(
    run_id: Any = None,
    message: Any = _NO_MESSAGE,
    topic: str | None = None,
    idempotency_key: str | None = None,
    *,
    key: str | None = None,
) -> int:
    """Deliver ``message`` to a run (async)."""
    return await sync_to_async(send)(run_id, message, topic, idempotency_key, key=key)
