"""Operating runs from the admin: cancel and retry, through the same functions as Python users.

Nothing here edits a row: each selected run goes to ``durable.cancel`` or ``durable.retry``,
which keep the invariants (locks, children, checkpoints). Only users with the
``django_durable.operate_run`` permission see these actions (superusers have it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as delete_confirmed
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..client import operating, runs
from ..core.statuses import RunStatus
from ..exceptions import RunNotFound, RunNotRetryable
from ..models import Run

# A message names at most this many skipped runs.
MAX_NAMED = 10
# The reason recorded on runs cancelled here (the admin's history says who did it).
ADMIN_REASON = "cancelled in the admin"


def _named(run_ids: list[uuid.UUID]) -> str:
    named = ", ".join(str(run_id) for run_id in run_ids[:MAX_NAMED])
    more = len(run_ids) - MAX_NAMED
    return named if more <= 0 else f"{named} and {more} more"


def _operate(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Run],
    operation: Callable[[uuid.UUID], bool],
    logged: str,
) -> tuple[int, list[uuid.UUID], list[uuid.UUID]]:
    """Apply ``operation`` to each selected run; say which ones are gone.

    Return how many it applied to, the runs it skipped (it returned False), and the runs
    that no longer exist.
    """
    done, skipped, gone = 0, [], []
    # Only what __str__ needs: the selection may be large and the payloads big.
    for run in queryset.only("id", "workflow_name", "status").order_by("created_at", "id"):
        try:
            applied = operation(run.pk)
        except RunNotFound:
            gone.append(run.pk)
            continue
        if applied:
            done += 1
            modeladmin.log_change(request, run, logged)
        else:
            skipped.append(run.pk)
    if gone:
        message = ngettext(
            "%(count)d run no longer exists: %(ids)s.",
            "%(count)d runs no longer exist: %(ids)s.",
            len(gone),
        ) % {"count": len(gone), "ids": _named(gone)}
        modeladmin.message_user(request, message, messages.WARNING)
    return done, skipped, gone


@admin.action(description=_("Cancel selected runs"), permissions=["operate"])
def cancel_runs(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Run]
) -> None:
    """Cancel each selected run and the runs under it (``durable.cancel``)."""

    def cancel(run_id: uuid.UUID) -> bool:
        return operating.cancel(run_id, ADMIN_REASON)

    done, finished, _gone = _operate(modeladmin, request, queryset, cancel, "Cancelled.")
    if done:
        message = ngettext(
            "Cancelled %(count)d run; a run in progress stops at its next durable operation.",
            "Cancelled %(count)d runs; runs in progress stop at their next durable operation.",
            done,
        ) % {"count": done}
        modeladmin.message_user(request, message, messages.SUCCESS)
    if finished:
        message = ngettext(
            "Skipped %(count)d run already finished: %(ids)s.",
            "Skipped %(count)d runs already finished: %(ids)s.",
            len(finished),
        ) % {"count": len(finished), "ids": _named(finished)}
        modeladmin.message_user(request, message, messages.WARNING)


@admin.action(description=_("Retry selected runs"), permissions=["operate"])
def retry_runs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Run]) -> None:
    """Start each selected failed or cancelled run again (``durable.retry``)."""

    def retry(run_id: uuid.UUID) -> bool:
        try:
            runs.retry(run_id)
        except RunNotRetryable:
            return False
        return True

    done, refused, _gone = _operate(modeladmin, request, queryset, retry, "Retried.")
    if done:
        message = ngettext(
            "Retried %(count)d run: it starts again from its checkpoints.",
            "Retried %(count)d runs: they start again from their checkpoints.",
            done,
        ) % {"count": done}
        modeladmin.message_user(request, message, messages.SUCCESS)
    if refused:
        message = ngettext(
            "Skipped %(count)d run that is not failed or cancelled: %(ids)s.",
            "Skipped %(count)d runs that are not failed or cancelled: %(ids)s.",
            len(refused),
        ) % {"count": len(refused), "ids": _named(refused)}
        modeladmin.message_user(request, message, messages.WARNING)


# Named as Django's own action, which it replaces: the site's one is then left out, and this
# one comes last in the menu, after the actions that do not destroy anything.
@admin.action(description=_("Delete selected finished runs"), permissions=["delete"])
def delete_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Run]
) -> Any:
    """Delete the selected runs that have finished, after Django's confirmation page; say
    why the others stay."""
    finished = RunStatus.terminal()
    unfinished = queryset.exclude(status__in=finished).order_by("created_at", "id")
    named = list(unfinished.values_list("pk", flat=True)[:MAX_NAMED])
    count = unfinished.count() if len(named) == MAX_NAMED else len(named)
    if count:
        more = f" and {count - len(named)} more" if count > len(named) else ""
        message = ngettext(
            "%(count)d run is not deleted because it has not finished: %(ids)s. "
            "Its worker may hold it; cancel it first, then delete it once it is cancelled.",
            "%(count)d runs are not deleted because they have not finished: %(ids)s. "
            "Their workers may hold them; cancel them first, then delete them once they are "
            "cancelled.",
            count,
        ) % {"count": count, "ids": ", ".join(map(str, named)) + more}
        modeladmin.message_user(request, message, messages.WARNING)
    selected = queryset.filter(status__in=finished)
    if not selected.exists():
        return None
    return delete_confirmed(modeladmin, request, selected)


def has_operate_permission(user: Any) -> bool:
    """Return whether ``user`` may cancel and retry runs in the admin."""
    return bool(user.has_perm(f"{Run._meta.app_label}.operate_run"))
