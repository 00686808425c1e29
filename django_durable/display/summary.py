"""A run in one sentence: what it waits for, where it runs or failed, how long it took.

The admin's run page, its list, ``manage.py durable runs show`` and the HTTP API all say it
in these words. Computed from the run's row and what its records add (``Facts``): one small
query for one run (``summarize``), at most three for a page of them (``summarize_many``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from ..core.conf import get_settings
from ..core.statuses import RunStatus, StepStatus
from ..models import Run, Step
from .times import format_duration, moment


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """Where a run is, in a sentence and in parts a program can use.

    ``waiting`` is what a waiting run waits for: ``event``, ``message``, ``child``,
    ``callback``, ``first_of`` (the first of several things), ``sleep``, ``retry`` or ``""``;
    ``name`` the event, topic, child run or callback; ``until`` when the wait ends by itself
    (a timeout, a timer, a retry), if it does.
    """

    sentence: str
    waiting: str = ""
    name: str = ""
    since: datetime | None = None
    until: datetime | None = None
    step: str = ""
    worker: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Facts:
    """What a run's records add to its row: its latest record (a waiting or running run),
    how many steps it ran (a completed one), the attempts of the step it failed at."""

    last: Step | None = None
    steps: int = 0
    attempts: int | None = None


# Of a run's latest record, what a sentence says.
_LAST_FIELDS = ("run_id", "kind", "name", "status", "attempts", "error", "recorded_at")


def summarize(run: Run, now: datetime | None = None) -> RunSummary:
    """Return where ``run`` is, as of ``now``."""
    return _summary(run, now or timezone.now(), _facts([run])[run.pk])


def summarize_many(runs: Iterable[Run], now: datetime | None = None) -> dict[uuid.UUID, RunSummary]:
    """Return where each run is, by id: for a list page, in at most three queries in all."""
    listed, now = list(runs), now or timezone.now()
    facts = _facts(listed)
    return {run.pk: _summary(run, now, facts[run.pk]) for run in listed}


def _summary(run: Run, now: datetime, facts: Facts) -> RunSummary:
    status = run.status
    if status == RunStatus.WAITING:
        return _waiting(run, now, facts.last)
    if status == RunStatus.RUNNING:
        return _running(run, now, facts.last)
    if status == RunStatus.PENDING:
        return _pending(run, now)
    if status == RunStatus.COMPLETED:
        took = (
            format_duration((run.finished_at - run.started_at).total_seconds())
            if (run.finished_at and run.started_at)
            else "no time"
        )
        steps = facts.steps
        return RunSummary(sentence=f"Completed in {took}, {steps} {_plural(steps, 'step')}")
    if status == RunStatus.FAILED:
        return _failed(run, facts.attempts)
    reason = run.cancel_reason or (run.error or {}).get("message", "")
    when = f" {moment(run.finished_at, now)}" if run.finished_at else ""
    return RunSummary(sentence=f"Cancelled{when}" + (f": {reason}" if reason else ""))


def flow_description(run: Run) -> str:
    """Return the run's flow key and its limit, in words ("" for a run without a key)."""
    if run.flow_key is None:
        return ""
    if run.flow_limit is None:
        return run.flow_key
    runs = "1 run" if run.flow_limit == 1 else f"{run.flow_limit} runs"
    return f"{run.flow_key} (at most {runs} of this key at once)"


def waiting_description(run: Run) -> str:
    """Return what wakes a waiting run, in words: an event or a message ("" otherwise)."""
    if run.status != RunStatus.WAITING or not run.wake_on:
        return ""
    kind, _, name = run.wake_on.partition(":")
    if kind == "e":
        return f"waiting for event {name}"
    if kind == "m":
        return f"waiting for a message on topic {name}" if name else "waiting for a message"
    return ""


def _waiting(run: Run, now: datetime, last: Step | None) -> RunSummary:
    since = last.recorded_at if last is not None else run.updated_at
    kind, _, name = (run.wake_on or "").partition(":")
    timeout = f"; times out {moment(run.wake_at, now)}" if run.wake_at else ""
    if kind == "e":
        text = f"Waiting for event `{name}` since {moment(since, now)}{timeout}"
        return RunSummary(sentence=text, waiting="event", name=name, since=since, until=run.wake_at)
    if kind == "m":
        what = f"a message on `{name}`" if name else "a message"
        text = f"Waiting for {what} since {moment(since, now)}{timeout}"
        return RunSummary(
            sentence=text, waiting="message", name=name, since=since, until=run.wake_at
        )
    if kind == "c":
        text = f"Waiting for child run {name} since {moment(since, now)}"
        return RunSummary(sentence=text, waiting="child", name=name, since=since)
    if kind == "cb":
        text = f"Waiting for callback {name} since {moment(since, now)}{timeout}"
        return RunSummary(
            sentence=text, waiting="callback", name=name, since=since, until=run.wake_at
        )
    if kind == "f":  # waiting_for lists the things: "the first of: event 'a', message ..."
        text = f"Waiting for {run.waiting_for} since {moment(since, now)}"
        return RunSummary(sentence=text, waiting="first_of", since=since, until=run.wake_at)
    if last is not None and last.status == StepStatus.RETRYING and run.wake_at:
        error = (last.error or {}).get("message", "")
        text = (
            f"Retrying step `{last.name}` (attempt {last.attempts + 1}) {moment(run.wake_at, now)}"
        )
        text += f"; last error: {error}" if error else ""
        return RunSummary(sentence=text, waiting="retry", name=last.name, until=run.wake_at)
    if run.wake_at:
        text = f"Sleeping until {moment(run.wake_at, now)}"
        return RunSummary(sentence=text, waiting="sleep", since=since, until=run.wake_at)
    return RunSummary(sentence=f"Waiting since {moment(since, now)}: {run.waiting_for}")


def _running(run: Run, now: datetime, last: Step | None) -> RunSummary:
    worker = ":".join((run.claimed_by or "?").split(":")[:2])
    text = f"Running on worker {worker}"
    if run.lease_expires_at is not None:
        renewed = run.lease_expires_at.timestamp() - get_settings().LEASE_SECONDS
        text += f", lease renewed {int(max(0.0, now.timestamp() - renewed))} s ago"
    if last is not None and last.status == StepStatus.COMPLETED:
        text += f"; last done: {last.kind} `{last.name}`"
    elif last is not None:  # an attempt that failed and is being tried again, a wait
        text += f"; at {last.kind} `{last.name}` ({last.get_status_display().lower()})"
    if run.cancel_requested_at is not None:
        text += f"; asked to cancel ({run.cancel_reason or 'no reason given'})"
    return RunSummary(sentence=text, worker=worker, step=last.name if last else "")


def _pending(run: Run, now: datetime) -> RunSummary:
    if run.available_at > now:
        text = f"Starts {moment(run.available_at, now)} in queue `{run.queue}`"
        return RunSummary(sentence=text, until=run.available_at)
    since = run.available_at
    again = "Ready again" if run.started_at else "Ready"
    text = f"{again} in queue `{run.queue}` since {moment(since, now)}, waiting for a worker"
    return RunSummary(sentence=text, since=since)


def _failed(run: Run, attempts: int | None) -> RunSummary:
    error = run.error or {}
    what = f"{error.get('type', 'Error').rsplit('.', 1)[-1]}: {error.get('message', '')}"
    step = error.get("step")
    if not step:
        return RunSummary(sentence=f"Failed: {what}")
    after = f" after {attempts} {_plural(attempts, 'attempt')}" if attempts else ""
    return RunSummary(sentence=f"Failed at step `{step}`{after}: {what}", step=str(step))


def _facts(runs: list[Run]) -> dict[uuid.UUID, Facts]:
    """Read what the sentences of ``runs`` need from their records: one query per kind."""
    facts = {run.pk: Facts() for run in runs}
    steps = Step.objects.using(get_settings().DATABASE)
    live = [run.pk for run in runs if run.status in (RunStatus.WAITING, RunStatus.RUNNING)]
    if live:  # each run's newest record, found through the (run, position) key
        newest = steps.filter(run=OuterRef("run")).order_by("-position").values("position")[:1]
        rows = steps.filter(run__in=live, position=Subquery(newest)).only(*_LAST_FIELDS)
        facts.update({row.run_id: Facts(last=row) for row in rows})
    done = [run.pk for run in runs if run.status == RunStatus.COMPLETED]
    if done:
        counted = steps.filter(run__in=done, kind="step").values("run").annotate(n=Count("pk"))
        facts.update({row["run"]: Facts(steps=row["n"]) for row in counted.order_by()})
    failed = [run for run in runs if _failed_position(run) is not None]
    if failed:
        where = Q()
        for run in failed:
            where |= Q(run=run.pk, position=_failed_position(run))
        for run_id, attempts in steps.filter(where).values_list("run", "attempts"):
            facts[run_id] = Facts(attempts=attempts)
    return facts


def _failed_position(run: Run) -> int | None:
    if run.status != RunStatus.FAILED or not isinstance(run.error, dict):
        return None
    position = run.error.get("position")
    return position if isinstance(position, int) and run.error.get("step") else None


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"
