"""What the pyworkflow scenarios read from the database, and how they word it.

Two sources: django-durable's ``Run`` and ``Step`` rows (what a run recorded), and the
examples' ``BodyExecution`` rows (each execution of a step body, by which process).
"""

from __future__ import annotations

import io
import itertools
import uuid
from collections.abc import Iterable
from typing import Any

from django.core.management import CommandError, call_command

import django_durable as durable
from django_durable.models import Run, Step
from example_project.demos.stage import ScenarioFailed

from ..models import BodyExecution


def seed(example: str) -> str:
    """Return the ``seed=`` text of a scenario: the seed and the example's file."""
    return f"pyworkflow: the Celery durable examples, {example} (seeds/004)"


def unique(prefix: str) -> str:
    """Return ``prefix`` with a suffix of this demo's own (ids, keys and event names)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def row(handle: durable.RunHandle) -> Run:
    """Return the run's row, read now."""
    return Run.objects.get(pk=handle.id)


def records(run_id: str, kind: str | None = None) -> list[Step]:
    """Return what the run recorded, in position order (only ``kind`` when given)."""
    steps = Step.objects.filter(run_id=run_id).order_by("position")
    return list(steps if kind is None else steps.filter(kind=kind))


def step_names(run_id: str) -> list[str]:
    """Return the names of the run's completed steps, in order: what a replay gets back.

    A step whose body is running has a record too (``running``, written before the body
    runs); it is not counted until it has a result.
    """
    return [step.name for step in records(run_id, "step") if step.status == "completed"]


def executions(run_ids: Iterable[str], step: str | None = None) -> list[BodyExecution]:
    """Return the executions of the runs' step bodies (only ``step``'s), oldest first."""
    rows = BodyExecution.objects.filter(run_id__in=[str(run_id) for run_id in run_ids])
    if step is not None:
        rows = rows.filter(step=step)
    return list(rows.order_by("created_at", "id"))


def seconds(run: Run) -> float:
    """Return how long the run took, from its start to its end (or to now)."""
    if run.started_at is None or run.finished_at is None:
        return 0.0
    return (run.finished_at - run.started_at).total_seconds()


def gaps(rows: list[BodyExecution]) -> list[float]:
    """Return the seconds between consecutive executions."""
    return [(b.created_at - a.created_at).total_seconds() for a, b in itertools.pairwise(rows)]


def durable_command(*args: str) -> str:
    """Run ``manage.py durable ARGS`` in this process and return what it printed."""
    out = io.StringIO()
    try:
        call_command("durable", *args, stdout=out)
    except CommandError as exc:
        raise ScenarioFailed(f"durable {' '.join(args)}: {exc}") from None
    return out.getvalue().rstrip()


def indented(text: str, prefix: str = "    ") -> str:
    """Return ``text`` with every line indented."""
    return "\n".join(prefix + line for line in text.splitlines())


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """Return "1 step", "2 steps"."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def names(values: Iterable[Any]) -> str:
    """Return the values joined with arrows, for a sequence of steps."""
    return " -> ".join(str(value) for value in values)
