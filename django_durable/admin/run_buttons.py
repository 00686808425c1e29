"""The buttons of a run's admin page: retry, cancel, wake now, send a message, emit an event,
fork from a step.

Each is a small form posting to its own admin URL, with its own permission (``operate_run``
allows them all but emitting and forking), shown only when it applies to the run's status.
Each calls the same public function as Python users, the HTTP API and the CLI do, and is
recorded in the admin's History (``LogEntry``) with who did it and what was sent. A
refusal says why.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from ..client import forking, messaging, operating, runs
from ..core.names import check_text
from ..display import RunSummary
from ..exceptions import DurableError
from ..models import Run, RunStatus

ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING})


@dataclasses.dataclass(frozen=True, slots=True)
class Button:
    """A button of the run page: its form's fields, and when it is shown."""

    name: str
    label: str
    permission: str
    help: str
    fields: tuple[tuple[str, str, str], ...] = ()  # (name, label, initial value)
    danger: bool = False


def buttons_for(run: Run, summary: RunSummary) -> list[Button]:
    """Return the buttons that apply to ``run`` as it is now."""
    shown = []
    if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
        shown.append(
            Button(
                "retry",
                "Retry",
                "retry_run",
                "Start it again from its checkpoints: what completed stays.",
            )
        )
    if run.status in RunStatus.terminal():
        position = (run.error or {}).get("position") if run.status == RunStatus.FAILED else None
        shown.append(
            Button(
                "fork",
                "Fork from a step",
                "fork_run",
                "A new run of the same input: the operations before this step (by position, "
                "as in the steps below) are copied, not run again; the rest runs on the code "
                "deployed now.",
                (("from_step", "From step #", "" if position is None else str(position)),),
            )
        )
    if run.status in ACTIVE:
        shown.append(
            Button(
                "cancel",
                "Cancel",
                "cancel_run",
                "It stops at its next durable operation; its cleanup runs.",
                (("reason", "Reason", "cancelled in the admin"),),
                danger=True,
            )
        )
    if run.status == RunStatus.WAITING and summary.until is not None:
        what = {"sleep": "its sleep ends", "retry": "its retry backoff ends"}.get(
            summary.waiting, "its wait times out (unless what it waits for came)"
        )
        shown.append(Button("wake", "Wake now", "wake_run", f"Go on now: {what}."))
    if run.status in ACTIVE:
        topic = summary.name if summary.waiting == "message" else ""
        shown.append(
            Button(
                "send",
                "Send a message",
                "send_message",
                "Delivered to the run's recv() on that topic (empty: no topic).",
                (("topic", "Topic", topic), ("message", "Message (JSON)", "")),
            )
        )
    if run.status in ACTIVE:  # an event is for every run, but offered where one waits
        event = summary.name if summary.waiting == "event" else ""
        shown.append(
            Button(
                "emit",
                "Emit an event",
                "add_event",
                "Every run waiting for this name resumes; runs that wait later see it too.",
                (("name", "Event name", event), ("data", "Data (JSON)", "")),
            )
        )
    return sorted(shown, key=lambda button: _order(button, summary))


def _order(button: Button, summary: RunSummary) -> int:
    """First what answers the run's wait (its event, its message), last what ends it."""
    answers = {"event": "emit", "message": "send"}.get(summary.waiting)
    return 0 if button.name == answers else 2 if button.danger else 1


def may_press(user: Any, button: Button) -> bool:
    """Return whether ``user`` may press ``button``: its permission, or ``operate_run``
    (not for emitting an event or forking: those need their own)."""
    if button.name in ("emit", "fork"):
        return bool(user.has_perm(f"django_durable.{button.permission}"))
    return bool(
        user.has_perm(f"django_durable.{button.permission}")
        or user.has_perm("django_durable.operate_run")
    )


def press(model_admin: admin.ModelAdmin, request: HttpRequest, run: Run, button: Button) -> None:
    """Do what ``button`` does with the posted form; say how it went, and log it."""
    try:
        done, logged = PRESSES[button.name](run, request.POST)
    except (DurableError, ValueError, TypeError) as exc:
        messages.error(request, f"{button.label}: {exc}")
        return
    model_admin.log_change(request, run, logged)
    messages.success(request, done)


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not valid JSON ({exc}).") from None


def _retry(run: Run, form: Any) -> tuple[str, str]:
    runs.retry(run.pk)
    return "Retried: the run starts again from its checkpoints.", "Retried."


def _cancel(run: Run, form: Any) -> tuple[str, str]:
    reason = check_text(form.get("reason", "").strip(), "The reason")[:255]
    if not operating.cancel(run.pk, reason or "cancelled in the admin"):
        raise ValueError("the run had already finished; nothing was changed.")
    return "Cancelled: the run stops at its next durable operation.", f"Cancelled: {reason}"


def _wake(run: Run, form: Any) -> tuple[str, str]:
    cut = operating.wake_now(run.pk)
    said = {"sleep": "its sleep ended", "retry": "its retry backoff ended"}.get(
        cut, "its wait's timeout came"
    )
    return f"Woken: {said}; a worker goes on with it now.", f"Woken now ({cut})."


def _send(run: Run, form: Any) -> tuple[str, str]:
    topic = form.get("topic", "").strip() or None
    message = _json(form.get("message", ""), "The message")
    message_id = messaging.send(run.pk, message, topic)
    sent = json.dumps({"topic": topic, "message": message, "id": message_id})
    return f"Message {message_id} sent on topic {topic or '(none)'}.", f"Sent a message: {sent}"


def _emit(run: Run, form: Any) -> tuple[str, str]:
    name = form.get("name", "").strip()
    data = _json(form.get("data", ""), "The data")
    event_id = messaging.emit_event(name, data, source="admin")
    emitted = json.dumps({"name": name, "data": data, "id": event_id})
    return f"Event {event_id} {name!r} emitted.", f"Emitted an event: {emitted}"


def _fork(run: Run, form: Any) -> tuple[str, str]:
    text = form.get("from_step", "").strip()
    if not text.isascii() or not text.isdigit():
        raise ValueError(
            f"the step must be a whole number from 0 (a position in the steps below), not {text!r}."
        )
    step = int(text)
    fork = forking.fork_run(run.pk, from_step=step)
    copied = f"{step} operation{'' if step == 1 else 's'} copied"
    return f"Forked from step {step} ({copied}): the new run is {fork.pk}.", (
        f"Forked from step {step}: run {fork.pk}."
    )


PRESSES: dict[str, Callable[[Run, Any], tuple[str, str]]] = {
    "retry": _retry,
    "cancel": _cancel,
    "wake": _wake,
    "send": _send,
    "emit": _emit,
    "fork": _fork,
}
