"""Callbacks inside a workflow: ``ctx.callback()`` makes one, ``cb.wait()`` waits for it.

A callback is an id (and a signed URL under the HTTP API) that the workflow hands to an
outside system, which completes it with a value or fails it with an error, once. Making it
is an operation like any: its id is recorded, so a replay gets the same callback. Waiting
suspends the run (its worker is free) until the callback is settled or its timeout
passes; ``store.callbacks.settle`` wakes it.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.urls import NoReverseMatch, reverse

from ..core import serialization
from ..core.signing import callback_token
from ..core.statuses import CallbackStatus, StepStatus
from ..exceptions import CallbackFailed, CallbackTimeout
from ..models import uuid7
from ..store import callbacks as stored
from ..store.callbacks import CallbackRow
from .operations import Operation

if TYPE_CHECKING:
    from .replay import BaseContext

URL_NAME = "django_durable:callback"


@dataclasses.dataclass(frozen=True, slots=True)
class Callback:
    """A callback made with ``ctx.callback()``: hand ``id`` or ``url`` to an outside system.

    ``wait()`` suspends the run until it is completed (and returns the value), failed
    (``CallbackFailed``) or expired (``CallbackTimeout``). In an async workflow, await it.
    """

    id: str
    expires_at: datetime | None
    _ctx: Any = dataclasses.field(repr=False, compare=False)

    @property
    def url(self) -> str | None:
        """Return the signed path that completes it over HTTP (``None`` without the API).

        Prefix it with your site's origin: ``https://example.com`` + ``cb.url``.
        """
        return callback_url(self.id)

    def wait(self) -> Any:
        """Wait until the callback is settled; return its value (or raise)."""
        return self._ctx._wait_callback(self)


def callback_url(callback_id: str) -> str | None:
    """Return the path of ``POST callbacks/<signed id>/``, if the HTTP API is mounted."""
    try:
        return reverse(URL_NAME, args=[callback_token(callback_id)])
    except NoReverseMatch:
        return None


def create(ctx: BaseContext, op: Operation, timeout: float | None) -> dict[str, Any]:
    """Make the callback of this position, with its checkpoint; return the record."""
    expires = None if timeout is None else ctx.clock.after(timeout)
    with transaction.atomic(using=ctx.alias):
        made, expires = stored.create(
            ctx.claim.run_id, op.position, uuid7(), expires, alias=ctx.alias
        )
        # Fenced: a worker that lost the run rolls its callback back with it.
        return dict(ctx.complete(op, {"id": str(made), "expires_at": expires}))


def made(document: dict[str, Any], ctx: Any) -> Callback:
    """Return the handle of a recorded ``ctx.callback()``."""
    return Callback(id=str(document["id"]), expires_at=document.get("expires_at"), _ctx=ctx)


def settled(row: CallbackRow | None) -> dict[str, Any] | None:
    """Return what a wait records for a settled callback (``None`` while it is pending)."""
    if row is None:  # gone with its run: nothing will ever settle it
        return {"status": "failed", "error": {"message": "The callback no longer exists."}}
    if row.status == CallbackStatus.COMPLETED:
        return {"status": "completed", "value": serialization.loads(row.value)}
    if row.status == CallbackStatus.FAILED:
        return {"status": "failed", "error": serialization.loads(row.error) or {}}
    if row.status == CallbackStatus.EXPIRED:
        return {"status": "expired"}
    return None


def look(ctx: BaseContext, callback: Callback) -> dict[str, Any] | None:
    """Return the settled outcome of ``callback``, expiring it if its time has passed."""
    callback_id = uuid.UUID(callback.id)
    found = settled(stored.get(callback_id, alias=ctx.alias))
    if found is not None or callback.expires_at is None:
        return found
    if ctx.clock.now() < callback.expires_at:
        return None
    if stored.expire(callback_id, alias=ctx.alias):
        return {"status": "expired"}
    # Completed just now, or the database's clock has not reached the expiry yet.
    return settled(stored.get(callback_id, alias=ctx.alias))


def wait(ctx: BaseContext, op: Operation, callback: Callback) -> Any:
    """Record the callback's outcome once it is settled, or return the signal to wait."""
    found = look(ctx, callback)
    if found is not None:
        return ctx.complete(op, found)
    record = ctx.checkpoints.get(op.position)
    if record is None or record.status != StepStatus.WAITING:
        # No deadline of the wait's own: the callback's expiry is the callback's, and only
        # the database's clock passing it expires it (wake_now() cannot cut it short).
        marker = serialization.dumps({"deadline": None, "floor": 0}, what="A wait")
        ctx.checkpoints.write(op.position, op.kind, op.name, StepStatus.WAITING, result=marker)
    return ctx.suspend(callback.expires_at, f"callback {callback.id}", wake_on=f"cb:{callback.id}")


def outcome(document: dict[str, Any], callback_id: str, position: int) -> Any:
    """Return the value of a recorded outcome, or raise CallbackFailed / CallbackTimeout."""
    if document.get("status") == "completed":
        return document.get("value")
    exc = _error(document, callback_id)
    exc.__durable_position__ = position  # type: ignore[attr-defined]
    raise exc


def _error(document: dict[str, Any], callback_id: str) -> Exception:
    if document.get("status") == "expired":
        return CallbackTimeout(f"Callback {callback_id} was not completed before its timeout.")
    error = document.get("error") or {}
    return CallbackFailed(
        f"Callback {callback_id} was failed: {error.get('message', '')}",
        callback_id=callback_id,
        details=error.get("details"),
    )
