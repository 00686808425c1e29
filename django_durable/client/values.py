"""Values runs publish, read from application code, waiting for them if asked to.

A waiting read sleeps until a NOTIFY on PostgreSQL, polling as the fallback.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Max

from ..core.durations import optional_seconds
from ..models import Run, RunValue
from ..store.notify import await_until, wait_until
from .lookup import db_alias, get_row, run_finished


@dataclasses.dataclass(frozen=True, slots=True)
class VersionedValue:
    """A value a run published, with its version (newer versions have larger numbers)."""

    version: int
    value: Any


def _newest(run: Run, key: str, after: int | None) -> VersionedValue | None:
    """Return the newest value of ``key`` (newer than ``after``), if there is one."""
    rows = RunValue.objects.using(db_alias()).filter(run_id=run.pk, key=key)
    row = rows.order_by("-id").only("id", "value").first()
    if row is None or (after is not None and row.pk <= after):
        return None
    return VersionedValue(row.pk, row.get_value())


def _watched(run: Run, key: str, after: int | None) -> tuple[VersionedValue | None] | None:
    # The status first: a run seen finished has committed every value it set, so the read
    # below finds them. Read the other way round, a run that set its value and finished
    # between the two reads would look finished without it.
    finished = run_finished(run)
    newest = _newest(run, key, after)
    if newest is not None or finished:
        # A run that finished without a newer value will never write one: stop waiting.
        return (newest,)
    return None


def watch_value(
    run_id: Any, key: str, *, after: int | None = None, timeout: float | timedelta | None = None
) -> VersionedValue | None:
    """Return the newest value of ``key`` with a version above ``after`` (any, if ``None``).

    Waits up to ``timeout`` for one to be written; returns ``None`` if none was (or the
    run finished without). A frontend follows a value by passing the version it has.
    """
    run = get_row(run_id)
    seconds = optional_seconds(timeout, "timeout=") or 0.0
    found = _newest(run, key, after)
    if found is not None or seconds <= 0:
        return found
    keys = [f"v:{run.pk}", f"r:{run.pk}"]
    try:
        return wait_until(lambda: _watched(run, key, after), keys=keys, timeout=seconds)[0]
    except TimeoutError:
        return None


async def awatch_value(
    run_id: Any, key: str, *, after: int | None = None, timeout: float | timedelta | None = None
) -> VersionedValue | None:
    """Return the newest value of ``key`` above version ``after``, waiting (async)."""
    run = await sync_to_async(get_row)(run_id)
    seconds = optional_seconds(timeout, "timeout=") or 0.0
    found = await sync_to_async(_newest)(run, key, after)
    if found is not None or seconds <= 0:
        return found
    check = sync_to_async(lambda: _watched(run, key, after))
    keys = [f"v:{run.pk}", f"r:{run.pk}"]
    try:
        return (await await_until(check, keys=keys, timeout=seconds))[0]
    except TimeoutError:
        return None


def get_value(
    run_id: Any, key: str, timeout: float | timedelta | None = None, default: Any = None
) -> Any:
    """Return the newest value the run published under ``key``, or ``default``.

    With ``timeout``, wait up to that long for the key to be set (``default`` if it is
    not, or if the run finishes without setting it). Raises ``RunNotFound``.
    """
    found = watch_value(run_id, key, timeout=timeout)
    return default if found is None else found.value


async def aget_value(
    run_id: Any, key: str, timeout: float | timedelta | None = None, default: Any = None
) -> Any:
    """Return the newest value under ``key``, waiting up to ``timeout`` (async)."""
    found = await awatch_value(run_id, key, timeout=timeout)
    return default if found is None else found.value


def get_values(run_id: Any) -> dict[str, Any]:
    """Return the newest value of every key the run published."""
    run = get_row(run_id)
    rows = RunValue.objects.using(db_alias()).filter(run_id=run.pk)
    newest = rows.values("key").annotate(newest=Max("id")).values("newest")
    return {row.key: row.get_value() for row in rows.filter(id__in=newest).order_by("key")}


async def aget_values(run_id: Any) -> dict[str, Any]:
    """Return the newest value of every key the run published (async)."""
    return await sync_to_async(get_values)(run_id)
