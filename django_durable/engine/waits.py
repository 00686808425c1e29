"""``ctx.first_of()``: wait for whichever of several things comes first.

The things are an event (``durable.event(name)``), a message on a topic
(``durable.message(topic)``), a timer (``durable.timer(...)``), a child run's end (its
``ChildHandle``) and a callback (``ctx.callback()``). The one that came first is taken and
recorded; the others are left as they are: a message stays for a later ``recv``, an event
for a later wait, a child's end for ``handle.result()``, a callback for ``cb.wait()``.

"First" is by the database's clock: when each arrived (an event emitted, a message sent, a
child finished, a callback settled, a timer due). When several are there as the run looks,
the earliest wins, and a tie goes to the earlier argument. A run that waits is suspended
with ``wake_on = "f:any"`` and one wake key per thing (see ``store.wakes``); whichever
arrives first wakes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction

from ..core import serialization
from ..core.durations import to_seconds
from ..core.names import MAX_NAME_LENGTH, check_name
from ..core.statuses import RunStatus, StepStatus
from ..exceptions import LeaseLost
from ..models import Run
from ..store import channels as stored
from ..store import wakes
from ..store.dialect import dialect
from . import callbacks, channels
from .callbacks import Callback
from .children import ChildHandle, raise_failed
from .operations import Operation, aware

if TYPE_CHECKING:
    from .replay import BaseContext


@dataclasses.dataclass(frozen=True, slots=True)
class EventWait:
    """An event to wait for in ``first_of``: made by ``durable.event(name)``."""

    name: str
    model: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class MessageWait:
    """A message to wait for in ``first_of``: made by ``durable.message(topic)``."""

    topic: str  # "" for messages sent without one


@dataclasses.dataclass(frozen=True, slots=True)
class TimerWait:
    """A timer in ``first_of``: made by ``durable.timer(duration or datetime)``."""

    seconds: float = 0.0
    until: datetime | None = None


def event(name: str, *, model: Any = None) -> EventWait:
    """Return an event ``name`` for ``ctx.first_of()`` (``model`` validates its data)."""
    return EventWait(check_name(name, "event"), model)


def message(topic: str | None = None) -> MessageWait:
    """Return a message on ``topic`` for ``ctx.first_of()`` (none: messages without one)."""
    return MessageWait("" if topic is None else check_name(topic, "message topic"))


def timer(duration: float | timedelta | datetime) -> TimerWait:
    """Return a timer for ``ctx.first_of()``: seconds, a timedelta, or an aware datetime."""
    if isinstance(duration, datetime):
        return TimerWait(until=aware(duration))
    return TimerWait(seconds=to_seconds(duration, "timer()", negative=True))


Source = EventWait | MessageWait | TimerWait | ChildHandle | Callback
_SOURCES = (EventWait, MessageWait, TimerWait, ChildHandle, Callback)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Winner:
    """What ``ctx.first_of()`` returns: which thing came first, and with what.

    ``index`` is its place among the arguments and ``source`` the argument itself;
    ``kind`` is ``"event"``, ``"message"``, ``"timer"``, ``"child"`` or ``"callback"``.
    ``value`` is a ``ReceivedEvent``, the message, the time the timer was due, the child's
    result, or the callback's value.
    """

    index: int
    kind: str
    value: Any
    source: Any


def check(sources: tuple[Any, ...]) -> list[Source]:
    """Return the things of a ``first_of``, or raise ``TypeError`` for anything else."""
    if not sources:
        raise TypeError("first_of() needs at least one thing to wait for.")
    for source in sources:
        if not isinstance(source, _SOURCES):
            raise TypeError(
                "first_of() takes durable.event(...), durable.message(...), "
                "durable.timer(...), a child's handle or a callback, not "
                f"{type(source).__name__}."
            )
    return list(sources)


def _kind(source: Source) -> str:
    return {
        EventWait: "event",
        MessageWait: "message",
        TimerWait: "timer",
        ChildHandle: "child",
        Callback: "callback",
    }[type(source)]


def _name(source: Source) -> str:
    """Return what names ``source`` in the record (and its wake key, after the prefix)."""
    if isinstance(source, EventWait):
        return source.name
    if isinstance(source, MessageWait):
        return source.topic
    if isinstance(source, ChildHandle):
        return source.run_id
    if isinstance(source, Callback):
        return source.id
    return "timer"


def operation_name(sources: list[Source]) -> str:
    """Return the recorded name: every thing, in order (checked on replay)."""
    said = (
        _kind(source) if isinstance(source, TimerWait) else f"{_kind(source)} {_name(source)}"
        for source in sources
    )
    name = " | ".join(part.strip() for part in said)
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{name[: MAX_NAME_LENGTH - 14]}… {digest}"


def _reason(sources: list[Source]) -> str:
    """Return what the run waits for, for people (``waiting_for``)."""
    said = []
    for source in sources:
        if isinstance(source, EventWait):
            said.append(f"event {source.name!r}")
        elif isinstance(source, MessageWait):
            said.append(f"message on {source.topic!r}" if source.topic else "message")
        elif isinstance(source, ChildHandle):
            said.append(f"child run {source.run_id} ({source.workflow_name})")
        elif isinstance(source, Callback):
            said.append(f"callback {source.id}")
        else:
            said.append("a timer")
    return "the first of: " + ", ".join(said)


def _key(source: Source) -> str | None:
    """Return the wake key of ``source`` (``None`` for a timer: its time wakes the run)."""
    prefix = {EventWait: "e", MessageWait: "m", ChildHandle: "c", Callback: "cb"}.get(type(source))
    return None if prefix is None else f"{prefix}:{_name(source)}"


# --- looking, taking, recording --------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Arrival:
    came: datetime
    index: int
    value: Any  # what the record holds; for a message, also its id to consume
    message_id: int | None = None
    expire: bool = False  # a callback whose time passed: expire it, then record that


def first_of(ctx: BaseContext, op: Operation, sources: list[Source]) -> Any:
    """Record whichever thing came first, or return the signal that suspends the run.

    The first time the run waits here, the timers' ends are recorded with the wait, so
    that they count from then however often the run is replayed.
    """
    record = ctx.checkpoints.get(op.position)
    marker = None
    if record is not None and record.status == StepStatus.WAITING and record.result:
        marker = serialization.loads(record.result)
    ends = _ends(ctx, sources, marker)
    floors = {
        index: channels.event_floor(ctx, source.name, op.position)
        for index, source in enumerate(sources)
        if isinstance(source, EventWait)
    }
    for _ in range(3):  # again only if a callback was settled as it expired
        arrivals = _look(ctx, sources, ends, floors)
        if not arrivals:
            break
        first = min(arrivals, key=lambda arrival: (arrival.came, arrival.index))
        done = _take(ctx, op, sources[first.index], first, waited=marker is not None)
        if done is not None:
            return done
    if marker is None:
        _record_wait(ctx, op, sources, ends)
    return _suspend(ctx, sources, ends, floors)


def _record_wait(
    ctx: BaseContext, op: Operation, sources: list[Source], ends: list[datetime | None]
) -> None:
    """Record the wait with each timer's end: ``"ends"``, and the first in ``"deadline"``
    (``wake_now()`` moves that one to now, to end the timers)."""
    timers = [
        end if isinstance(source, TimerWait) else None
        for source, end in zip(sources, ends, strict=True)
    ]
    timed = [end for end in timers if end is not None]
    marker = {"deadline": min(timed) if timed else None, "floor": 0, "ends": timers}
    text = serialization.dumps(marker, what="A wait")
    ctx.checkpoints.write(op.position, op.kind, op.name, StepStatus.WAITING, result=text)


def _suspend(
    ctx: BaseContext, sources: list[Source], ends: list[datetime | None], floors: dict[int, int]
) -> Any:
    """Return the signal that suspends the run until the first thing arrives or ends."""
    keys = tuple(
        (key, floors.get(index, 0))
        for index, source in enumerate(sources)
        if (key := _key(source)) is not None
    )
    known = [end for end in ends if end is not None]
    deadline = min(known) if known else None
    reason = _reason(sources)
    if len(dict(keys)) == 1:  # one thing besides timers: the plain wait on its key
        return ctx.suspend(deadline, reason, wake_on=keys[0][0], floor=keys[0][1])
    return ctx.suspend(deadline, reason, wake_on=wakes.ANY if keys else None, keys=keys)


def _ends(ctx: BaseContext, sources: list[Source], marker: Any) -> list[datetime | None]:
    """Return when each thing ends on its own: a timer's end, a callback's expiry.

    A timer's end is read back from the wait's marker. Its ``deadline`` is when the first
    timer ends, unless ``wake_now()`` moved it to now: then every timer ends there.
    """
    recorded = marker.get("ends") if isinstance(marker, dict) else None
    latest = ctx.clock.latest()  # a timer counted from now never ends early
    ends: list[datetime | None] = []
    for index, source in enumerate(sources):
        if isinstance(source, TimerWait):
            end = recorded[index] if recorded and index < len(recorded) else None
            ends.append(end or source.until or latest + timedelta(seconds=source.seconds))
        elif isinstance(source, Callback):
            ends.append(source.expires_at)
        else:
            ends.append(None)
    cut = marker.get("deadline") if isinstance(marker, dict) else None
    timers = [
        end for end, source in zip(ends, sources, strict=True) if isinstance(source, TimerWait)
    ]
    if cut is not None and timers and cut < min(e for e in timers if e is not None):
        ends = [
            min(end, cut) if isinstance(source, TimerWait) and end is not None else end
            for end, source in zip(ends, sources, strict=True)
        ]
    return ends


def _look(
    ctx: BaseContext,
    sources: list[Source],
    ends: list[datetime | None],
    floors: dict[int, int],
) -> list[_Arrival]:
    """Return what has arrived, without taking anything."""
    now = ctx.clock.now()
    found: list[_Arrival] = []
    for index, source in enumerate(sources):
        arrival = None
        if isinstance(source, EventWait):
            arrival = _event(ctx, index, source, floors[index])
        elif isinstance(source, MessageWait):
            arrival = _message(ctx, index, source)
        elif isinstance(source, ChildHandle):
            arrival = _child(ctx, index, source, now)
        elif isinstance(source, Callback):
            arrival = _callback(ctx, index, source, now)
        else:
            end = ends[index]
            if end is not None and end <= now:
                arrival = _Arrival(end, index, end)
        if arrival is not None:
            found.append(arrival)
    return found


def _event(ctx: BaseContext, index: int, source: EventWait, floor: int) -> _Arrival | None:
    found = stored.newest_event_since(source.name, floor, alias=ctx.alias)
    if found is None:
        return None
    row, came = found
    document = {
        "id": row.id,
        "name": row.name,
        "data": serialization.loads(row.data),
        "source": row.source,
        "type": row.type,
        "time": row.time,
    }
    return _Arrival(came, index, document)


def _message(ctx: BaseContext, index: int, source: MessageWait) -> _Arrival | None:
    found = stored.oldest_message(ctx.claim.run_id, source.topic, alias=ctx.alias)
    if found is None:
        return None
    message_id, data, sent = found
    value = {"id": message_id, "message": serialization.loads(data)}
    return _Arrival(sent, index, value, message_id=message_id)


def _child(ctx: BaseContext, index: int, source: ChildHandle, now: datetime) -> _Arrival | None:
    row = (
        Run.objects.using(ctx.alias)
        .filter(pk=source.run_id)
        .values("status", "result", "error", "finished_at")
        .first()
    )
    if row is None:  # deleted (pruned) while its parent waited
        error = {
            "type": "django_durable.RunNotFound",
            "message": f"Child run {source.run_id} is gone.",
        }
        return _Arrival(now, index, {"status": RunStatus.FAILED, "result": None, "error": error})
    if row["status"] not in RunStatus.terminal():
        return None
    outcome = {"status": row["status"], "result": row["result"], "error": row["error"]}
    return _Arrival(row["finished_at"] or now, index, outcome)


def _callback(ctx: BaseContext, index: int, source: Callback, now: datetime) -> _Arrival | None:
    row = callbacks.stored.get(uuid.UUID(source.id), alias=ctx.alias)
    found = callbacks.settled(row)
    if found is not None:
        came = (row.settled_at if row is not None else None) or now
        return _Arrival(came, index, found)
    if source.expires_at is not None and source.expires_at <= now:
        return _Arrival(source.expires_at, index, {"status": "expired"}, expire=True)
    return None


def _take(
    ctx: BaseContext, op: Operation, source: Source, arrival: _Arrival, *, waited: bool
) -> Any:
    """Record ``arrival`` as the winner (taking a message); ``None`` to look again."""
    if arrival.expire and not callbacks.stored.expire(uuid.UUID(_name(source)), alias=ctx.alias):
        return None  # settled as it expired: look again
    document = {
        "index": arrival.index,
        "kind": _kind(source),
        "name": _name(source),
        "value": arrival.value,
    }
    with transaction.atomic(using=ctx.alias):
        if arrival.message_id is not None and not stored.consume_message(
            arrival.message_id, op.position, alias=ctx.alias
        ):
            raise LeaseLost(f"Run {ctx.run_id}: its message was taken by another worker.")
        done = ctx.complete(op, document)
        if waited:  # its wake keys, if it had any, only take room now
            wakes.clear_keys(dialect(ctx.alias), ctx.claim.run_id)
    return done


def won(document: dict[str, Any], sources: list[Source], position: int) -> Winner:
    """Return the Winner of the ``first_of`` recorded at ``position`` (raising what its
    winner raises: a failed child, a failed or expired callback, invalid event data)."""
    index = int(document["index"])
    source = sources[index]
    value = document["value"]
    if isinstance(source, EventWait):
        value = channels.received(value, source.model)
    elif isinstance(source, MessageWait):
        value = value["message"]
    elif isinstance(source, ChildHandle):
        raise_failed(value, source)
        value = value["result"]
    elif isinstance(source, Callback):
        value = callbacks.outcome(value, source.id, position)
    return Winner(index=index, kind=str(document["kind"]), value=value, source=source)
