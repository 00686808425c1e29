"""The runs list page, besides its columns: the workflow and queue filters, whose choices
come from the registered workflows rather than a DISTINCT over every run, and the
changelist that reads the progress of the page's runs in one query for
``page_progress`` to hand to the progress column.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import IntegerField, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Substr
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .. import display
from ..core import clock
from ..core.conf import get_settings
from ..declarations.registry import registered_workflows
from ..models import Run, RunStatus
from ..models.runs import SHORT_ID
from .base import ChoicesFromCode, HistoryChangeList


class WorkflowFilter(ChoicesFromCode):
    """Runs of one registered workflow."""

    title = _("workflow")
    parameter_name = "workflow_name"

    def names(self) -> set[str]:
        return set(registered_workflows())


class QueueFilter(ChoicesFromCode):
    """Runs of one queue: the default one and those the registered workflows name."""

    title = _("queue")
    parameter_name = "queue"

    def names(self) -> set[str]:
        default = get_settings().DEFAULT_QUEUE
        return {default} | {wf.queue or default for wf in registered_workflows().values()}


# What the list's sentences read of a failed or cancelled run's error (its message cut).
ERROR_PARTS_NAMES = ("type", "message", "step", "position")
ERROR_PARTS = {
    "_error_type": KT("error__type"),
    "_error_message": Substr(KT("error__message"), 1, 500),
    "_error_step": KT("error__step"),
    "_error_position": Cast(KT("error__position"), IntegerField()),
}


class RunChangeList(HistoryChangeList):
    """The runs page: the progress of the page's runs is read in one more query, where each
    is in at most three (``display.summarize_many``), whatever the page holds."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        # The error's parts a sentence says, read in the database: not its traceback.
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.annotate(**ERROR_PARTS)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        runs = list(self.result_list)  # evaluated once; the template reuses these objects
        for run in runs:
            if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
                parts = {name: getattr(run, f"_error_{name}") for name in ERROR_PARTS_NAMES}
                run.__dict__["error"] = {k: v for k, v in parts.items() if v is not None}
        # The database's time, once for the page: how long the unfinished runs have run.
        unfinished = any(run.started_at and not run.finished_at for run in runs)
        now = clock.database_now(runs[0]._state.db) if unfinished else None
        progress = display.progress_by_run(run.pk for run in runs)
        summaries = display.summarize_many(runs)
        for run in runs:
            run.__dict__["_durable_progress"] = progress.get(run.pk)
            run.__dict__["_durable_summary"] = summaries[run.pk]
            run.__dict__["_durable_now"] = now


def page_progress(run: Run) -> display.Progress | None:
    """Return a listed run's progress, as RunChangeList.get_results() read it."""
    progress: display.Progress | None = run.__dict__.get("_durable_progress")
    return progress


def page_summary(run: Run) -> display.RunSummary:
    """Return where a listed run is, as RunChangeList.get_results() read it."""
    summary: display.RunSummary | None = run.__dict__.get("_durable_summary")
    return summary if summary is not None else display.summarize(run)


_SHORT_ID = re.compile(r"[0-9a-f]{12}")


_EXACT_MATCHES = 20  # runs named exactly (id, short id, key) a search keeps, at most


def search_runs(queryset: QuerySet[Run], term: str) -> QuerySet[Run]:
    """Return the runs ``term`` names: by id (whole or short), idempotency key, owner's
    username, or a registered workflow whose name contains it; each through an index.

    The runs named exactly are looked up first, apart: in one OR with the workflow names,
    a search by a workflow's name would read each run's row to test its key, where the
    list's count of those runs needs the workflow index alone.
    """
    exact = Q(idempotency_key=term)
    short = term.removeprefix("…").strip().lower()
    with contextlib.suppress(ValueError):
        exact |= Q(pk=uuid.UUID(term))
    probe = queryset
    if _SHORT_ID.fullmatch(short):  # the end of the id, as the list shows it
        probe = probe.alias(short_id=SHORT_ID)
        exact |= Q(short_id=short)
    named = list(probe.filter(exact).values_list("pk", flat=True)[:_EXACT_MATCHES])
    query = Q(pk__in=named) if named else Q()
    names = [name for name in registered_workflows() if term.lower() in name.lower()]
    if names:
        query |= Q(workflow_name__in=names)
    users = get_user_model()
    owners = users._default_manager.filter(**{f"{users.USERNAME_FIELD}__iexact": term})
    owner_ids = list(owners.values_list("pk", flat=True)[:10])
    if owner_ids:
        query |= Q(owner__in=owner_ids)
    if not query:
        return queryset.none()
    return queryset.filter(query)
