"""The top of a run's admin page: where it is in one sentence, its progress, its buttons, its
timeline and its steps; and the JSON that keeps the first three live while it runs.

RunAdmin hands these to its change form (``templates/admin/django_durable/run/``) and mounts
the two views under the run's admin URL: ``press/<button>/`` and ``live/``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import display
from ..core.conf import get_settings
from ..models import Run, Step
from .base import progress_bar, run_channels, summary_html
from .run_buttons import buttons_for, may_press, press
from .run_steps import steps_table
from .timeline import timeline

# The timeline draws at most this many operations, the newest.
TIMELINE_LIMIT = 200


def progress_html(run: Run) -> SafeString:
    """Return the run's progress bar and words, or nothing if it publishes none."""
    progress = run_channels(run).progress
    if progress is None:
        return SafeString("")
    return format_html("{} {}", progress_bar(progress, "20em"), progress.describe())


def timeline_html(site: admin.AdminSite, run: Run) -> SafeString:
    """Return the timeline of the run's newest TIMELINE_LIMIT operations."""
    rows = Step.objects.using(get_settings().DATABASE).filter(run=run)
    newest = list(rows.order_by("-position")[: TIMELINE_LIMIT + 1])
    more_url = None
    if len(newest) > TIMELINE_LIMIT:
        more_url = (
            reverse(f"{site.name}:django_durable_run_change", args=[run.pk]) + "#durable-steps"
        )
    steps = sorted(newest[:TIMELINE_LIMIT], key=lambda step: step.position)
    return timeline(
        run,
        steps,
        now=timezone.now(),
        run_url=lambda run_id: reverse(f"{site.name}:django_durable_run_change", args=[run_id]),
        more_url=more_url,
        limit=TIMELINE_LIMIT,
    )


def panel_context(model_admin: admin.ModelAdmin, request: HttpRequest, run: Run) -> dict[str, Any]:
    """Return what the change form's panel shows (the template's ``durable``)."""
    summary = display.summarize(run)
    site = model_admin.admin_site
    buttons = [
        {
            "label": button.label,
            "help": button.help,
            "fields": button.fields,
            "danger": button.danger,
            "url": reverse(f"{site.name}:django_durable_run_press", args=[run.pk, button.name]),
        }
        for button in buttons_for(run, summary)
        if may_press(request.user, button)
    ]
    return {
        "summary": summary_html(summary.sentence),
        "progress": progress_html(run),
        "buttons": buttons,
        "timeline": timeline_html(site, run),
        "steps": steps_table(site, run, request).html,
        "finished": run.is_terminal,
        "live_url": reverse(f"{site.name}:django_durable_run_live", args=[run.pk]),
    }


def press_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, name: str
) -> HttpResponse:
    """Press a button of the run's page (POST), then go back to the page."""
    run = model_admin.get_object(request, object_id)
    if run is None or not model_admin.has_view_permission(request, run):
        raise PermissionDenied
    page = reverse(f"{model_admin.admin_site.name}:django_durable_run_change", args=[run.pk])
    if request.method != "POST":
        return HttpResponseRedirect(page)
    applicable = {button.name: button for button in buttons_for(run, display.summarize(run))}
    button = applicable.get(name)
    if button is None:
        messages.error(
            request, f"{name.capitalize()} does not apply to a run that is {run.status}."
        )
    elif not may_press(request.user, button):
        need = "add_event" if name == "emit" else button.permission
        messages.error(request, f"{button.label}: you need the permission django_durable.{need}.")
    else:
        press(model_admin, request, run, button)
    return HttpResponseRedirect(page)


def live_view(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str) -> JsonResponse:
    """Return the live parts of the run's page (for its script, while the run goes on)."""
    run = model_admin.get_object(request, object_id)
    if run is None or not model_admin.has_view_permission(request, run):
        raise PermissionDenied
    return JsonResponse(
        {
            "finished": run.is_terminal,
            "status": run.status,
            "summary": str(summary_html(display.summarize(run).sentence)),
            "progress": str(progress_html(run)),
            "timeline": str(timeline_html(model_admin.admin_site, run)),
        }
    )
