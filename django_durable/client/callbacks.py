"""Settling callbacks from outside a run: ``complete_callback`` and ``fail_callback``.

A callback made by ``ctx.callback()`` is settled once: the first completion (or failure)
wins, and any later one is refused with ``CallbackClosed``. Writes join the caller's
``transaction.atomic()`` block: the waiting run is woken when it commits.
"""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import sync_to_async

from ..core import serialization
from ..core.statuses import CallbackStatus
from ..exceptions import CallbackClosed, CallbackNotFound
from ..store import callbacks
from .lookup import db_alias

_REFUSED = {
    "completed": "was completed before",
    "failed": "was failed before",
    "expired": "expired: its timeout passed",
    "run_finished": "belongs to a run that has finished",
}


def callback_uuid(callback_id: str | uuid.UUID) -> uuid.UUID:
    """Return ``callback_id`` as a UUID; ``CallbackNotFound`` if it cannot be one."""
    try:
        return callback_id if isinstance(callback_id, uuid.UUID) else uuid.UUID(str(callback_id))
    except ValueError:
        raise CallbackNotFound.of(callback_id) from None


def complete_callback(callback_id: str | uuid.UUID, value: Any = None) -> None:
    """Complete a callback with ``value`` (JSON): its ``cb.wait()`` returns it.

    Raises ``CallbackNotFound`` for an unknown id, ``CallbackClosed`` if it was settled
    before, expired, or its run has finished.
    """
    text = serialization.dumps(value, what="The callback's value")
    _settle(callback_id, CallbackStatus.COMPLETED, value=text)


def fail_callback(callback_id: str | uuid.UUID, error: str, *, details: Any = None) -> None:
    """Fail a callback: its ``cb.wait()`` raises ``CallbackFailed(error)``.

    ``details`` (JSON) reaches the workflow as ``CallbackFailed.details``. Refused like
    ``complete_callback``.
    """
    if not isinstance(error, str):
        raise TypeError("fail_callback() takes the error as a string (its message).")
    document = {"message": error, "details": details}
    text = serialization.dumps(document, what="The callback's error")
    _settle(callback_id, CallbackStatus.FAILED, error=text)


def _settle(callback_id: str | uuid.UUID, status: CallbackStatus, **texts: str) -> None:
    target = callback_uuid(callback_id)
    refused = callbacks.settle(target, status, alias=db_alias(), **texts)
    if refused == "not_found":
        raise CallbackNotFound.of(callback_id)
    if refused is not None:
        raise CallbackClosed(f"Callback {target} {_REFUSED[refused]}.", reason=refused)


async def acomplete_callback(callback_id: str | uuid.UUID, value: Any = None) -> None:
    """Complete a callback with ``value`` (async)."""
    await sync_to_async(complete_callback)(callback_id, value)


async def afail_callback(callback_id: str | uuid.UUID, error: str, *, details: Any = None) -> None:
    """Fail a callback (async)."""
    await sync_to_async(fail_callback)(callback_id, error, details=details)
