"""The runs admin: the list of runs and the layout of a run's page, its search, and who may
delete and operate runs. The list's filters and changelist are in run_list.py, the step
inline and the panels of a run's page in run_page.py, the cancel and retry actions in
actions.py."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .. import display
from ..core import hour_counts
from ..core.conf import get_settings
from ..models import Run
from .actions import cancel_runs, delete_selected, has_operate_permission, retry_runs
from .base import HistoryAdmin, progress_bar, short_run_id, status_badge, summary_html
from .dashboard import dashboard_view
from .run_list import (
    QueueFilter,
    RunChangeList,
    WorkflowFilter,
    page_progress,
    page_summary,
    search_runs,
)
from .run_page import RunPagePanels, absent_fields
from .run_panel import live_view, panel_context, press_view

# The list's "where it is" shows this many characters of a run's sentence (all on hover).
WHERE_CHARS = 110


@admin.register(Run)
class RunAdmin(RunPagePanels, HistoryAdmin):
    """Runs, newest first; a run's page shows its input, outcome, steps and what it published."""

    list_display = (
        "short_id",
        "workflow_name",
        "coloured_status",
        "where_it_is",
        "progress_column",
        "attempt",
        "duration",
        "created_at",
    )
    # A date filter, not date_hierarchy: that runs a DISTINCT over every run per page.
    list_filter = ("status", WorkflowFilter, QueueFilter, ("created_at", admin.DateFieldListFilter))
    # get_search_results() says how each is found through an index.
    search_fields = ("=id",)
    search_help_text = _(
        "A run id (whole, or the short one this list shows), an idempotency key, "
        "an owner's username, or part of a workflow name."
    )
    ordering = ("-created_at", "-id")
    # Inputs, results and errors may be a megabyte each; the list shows none of them.
    list_deferred = ("input", "result", "error")
    list_per_page = 50
    # Deleting comes last (actions.delete_selected replaces Django's, which comes first).
    actions = (cancel_runs, retry_runs, delete_selected)
    # Its summary, buttons, timeline and steps come first (run_panel.py), then the fields.
    change_form_template = "admin/django_durable/run/change_form.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "workflow_name",
                    "coloured_status",
                    "cancellation",
                    "progress_bar",
                    "waiting_for",
                    "wakes_on",
                    "queue",
                    "flow",
                    "known_by_workers",
                    "priority",
                    "attempt",
                    "idempotency_key",
                    "owner",
                )
            },
        ),
        (
            _("Parent and children"),
            {"fields": ("parent_link", "depth", "when_parent_finishes", "children_table")},
        ),
        (_("Forks"), {"fields": ("forked_from_link", "forks_table")}),
        (_("Input and outcome"), {"fields": ("input_json", "result_json", "error_json")}),
        (_("Values"), {"fields": ("values_table",)}),
        (_("Messages"), {"fields": ("messages_table",)}),
        (_("Streams"), {"fields": ("streams_table",)}),
        (_("Traceback"), {"fields": ("traceback",), "classes": ("collapse",)}),
        (
            _("Timestamps"),
            {
                "fields": (
                    "created_at",
                    "available_at",
                    "started_at",
                    "finished_at",
                    "duration",
                    "wake_at",
                    "deadline_at",
                    "updated_at",
                )
            },
        ),
        (_("Lease"), {"fields": ("claimed_by", "lease_token", "lease_expires_at", "recoveries")}),
    )
    readonly_fields = flatten_fieldsets(fieldsets)

    @admin.display(description=_("id"), ordering="id")
    def short_id(self, run: Run) -> SafeString:
        return format_html('<span title="{}">{}</span>', run.id, short_run_id(run.id))

    @admin.display(description=_("status"), ordering="status")
    def coloured_status(self, run: Run) -> SafeString:
        return status_badge(run.status)

    @admin.display(description=_("where it is"))
    def where_it_is(self, run: Run) -> SafeString:
        sentence = page_summary(run).sentence
        first = sentence.split("\n", 1)[0]
        shown = first if len(first) <= WHERE_CHARS else first[: WHERE_CHARS - 1] + "…"
        return format_html('<span title="{}">{}</span>', sentence, summary_html(shown))

    @admin.display(description=_("progress"))
    def progress_column(self, run: Run) -> str:
        progress = page_progress(run)
        if progress is None:
            return self.get_empty_value_display()
        if progress.percent is None:
            return progress.describe()
        bar = progress_bar(progress, "5em")
        return format_html(
            '<span title="{}">{} {}%</span>', progress.describe(), bar, f"{progress.percent:g}"
        )

    @admin.display(description=_("duration"))
    def duration(self, run: Run) -> str:
        seconds = display.run_seconds(run, run.__dict__.get("_durable_now"))  # see get_results
        return (
            self.get_empty_value_display() if seconds is None else display.format_duration(seconds)
        )

    def get_urls(self) -> list[URLPattern]:
        def view(function: Any) -> Any:
            return self.admin_site.admin_view(partial(function, self))

        return [
            path("dashboard/", view(dashboard_view), name="django_durable_dashboard"),
            path(
                "<path:object_id>/press/<str:name>/",
                view(press_view),
                name="django_durable_run_press",
            ),
            path("<path:object_id>/live/", view(live_view), name="django_durable_run_live"),
            *super().get_urls(),
        ]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        # The run Django read for the page: its panel reads nothing twice.
        if obj is not None:
            context["durable"] = panel_context(self, request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """Leave out what the run does not have: a result, an error, values, messages..."""
        hidden = set() if obj is None else absent_fields(obj)
        fieldsets = []
        for name, options in super().get_fieldsets(request, obj):
            fields = tuple(field for field in options["fields"] if field not in hidden)
            if fields:
                fieldsets.append((name, {**options, "fields": fields}))
        return fieldsets

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RunChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # Each way to find a run goes through an index, so that a search over a million runs
        # reads a few rows (Django's "=id" would compare the id as text, which none serves).
        term = search_term.strip()
        if not term:
            return queryset, False
        return search_runs(queryset, term), False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Return whether the user may cancel and retry runs (``django_durable.operate_run``)."""
        return has_operate_permission(request.user)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Refuse, in words, to delete a run that has not finished."""
        run = self.get_object(request, unquote(object_id))
        if run is not None and not run.is_terminal and self.has_delete_permission(request):
            status = run.get_status_display().lower()
            self.message_user(
                request,
                f"This run is not deleted because it has not finished (it is {status}): its "
                "worker may hold it. Cancel it first; once it is cancelled, it can be deleted.",
                messages.ERROR,
            )
            url = reverse(f"{self.admin_site.name}:django_durable_run_change", args=[run.pk])
            return HttpResponseRedirect(url)
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        hour_counts.changed(get_settings().DATABASE)  # the dashboard counts it no more

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        super().delete_queryset(request, queryset)
        hour_counts.changed(get_settings().DATABASE)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only finished runs: deleting a run under its worker bypasses its invariants.
        return request.user.is_superuser and (obj is None or obj.is_terminal)
