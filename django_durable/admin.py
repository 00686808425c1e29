"""The Django admin: runs with their recorded steps, and worker processes, as read-only history.

Built to stay fast with millions of finished runs: no query per row, no COUNT(*) of the
whole table next to the filtered one, no facet counts, no big JSON columns in the list,
and filter choices taken from the code rather than a DISTINCT over every run. Nothing
here edits a run by hand: operating runs is the client's job.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_permission_codename
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from . import display
from .conf import get_settings
from .models import Run, RunStatus, Step, WorkerProcess
from .registry import registered_workflows

STATUS_COLOURS = {
    RunStatus.PENDING: "#6c757d",
    RunStatus.RUNNING: "#0d6efd",
    RunStatus.WAITING: "#b58105",
    RunStatus.COMPLETED: "#198754",
    RunStatus.FAILED: "#dc3545",
    RunStatus.CANCELLED: "#495057",
}


def _pre(text: str) -> SafeString:
    return format_html('<pre style="margin: 0; white-space: pre-wrap">{}</pre>', text)


class _ChoicesFromCode(admin.SimpleListFilter):
    """A filter whose choices come from the code, not from a DISTINCT over every run."""

    def names(self) -> set[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = self.names()
        if self.value():  # a name no longer in the code still shows as selected
            names.add(str(self.value()))
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{str(self.parameter_name): value}) if value else queryset


class WorkflowFilter(_ChoicesFromCode):
    """Runs of one registered workflow."""

    title = _("workflow")
    parameter_name = "workflow_name"

    def names(self) -> set[str]:
        return set(registered_workflows())


class QueueFilter(_ChoicesFromCode):
    """Runs of one queue: the default one and those the registered workflows name."""

    title = _("queue")
    parameter_name = "queue"

    def names(self) -> set[str]:
        default = get_settings().DEFAULT_QUEUE
        return {default} | {wf.queue or default for wf in registered_workflows().values()}


class RunChangeList(ChangeList):
    """The runs page: reads only the columns it shows."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        # Inputs, results and errors may be a megabyte each; the list shows none of them.
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.defer("input", "result", "error")


class StepInline(admin.TabularInline):
    """The operations a run recorded, in order."""

    model = Step
    fields = readonly_fields = (
        "position",
        "kind",
        "name",
        "status",
        "attempts",
        "duration",
        "recorded_at",
        "result_preview",
        "error_summary",
    )
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    @admin.display(description=_("duration"))
    def duration(self, step: Step) -> str:
        if step.duration_ms is None:
            return self.get_empty_value_display()
        return display.format_duration(step.duration_ms / 1000)

    @admin.display(description=_("result"))
    def result_preview(self, step: Step) -> str:
        return display.preview(step.result)

    @admin.display(description=_("error"))
    def error_summary(self, step: Step) -> str:
        return display.error_summary(step.error)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Steps are part of the run: whoever may view the run sees them.
        opts = Run._meta
        return any(
            request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
            for action in ("view", "change")
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """Runs, newest first; a run's page shows its input, outcome and recorded steps."""

    list_display = (
        "short_id",
        "workflow_name",
        "coloured_status",
        "queue",
        "attempt",
        "created_at",
        "duration",
        "waiting_for",
    )
    # A date filter, not date_hierarchy: that runs a DISTINCT over every run per page.
    list_filter = ("status", WorkflowFilter, QueueFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "workflow_name", "=idempotency_key")
    search_help_text = _("A run id, an idempotency key, or part of a workflow name.")
    ordering = ("-created_at", "-id")
    list_select_related = False
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    inlines = (StepInline,)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "workflow_name",
                    "coloured_status",
                    "waiting_for",
                    "queue",
                    "priority",
                    "attempt",
                    "idempotency_key",
                    "owner",
                )
            },
        ),
        (_("Input and outcome"), {"fields": ("input_json", "result_json", "error_json")}),
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
        # A UUIDv7 starts with its timestamp: the random tail tells runs apart.
        return format_html('<span title="{}">…{}</span>', run.id, run.id.hex[-12:])

    @admin.display(description=_("status"), ordering="status")
    def coloured_status(self, run: Run) -> SafeString:
        colour = STATUS_COLOURS.get(RunStatus(run.status), "inherit")
        label = RunStatus(run.status).label
        return format_html('<strong style="color: {}">{}</strong>', colour, label)

    @admin.display(description=_("duration"))
    def duration(self, run: Run) -> str:
        seconds = display.run_seconds(run)
        return (
            self.get_empty_value_display() if seconds is None else display.format_duration(seconds)
        )

    @admin.display(description=_("input"))
    def input_json(self, run: Run) -> SafeString:
        return _pre(display.pretty_json(run.input))

    @admin.display(description=_("result"))
    def result_json(self, run: Run) -> SafeString:
        return _pre(display.pretty_json(run.result))

    @admin.display(description=_("error"))
    def error_json(self, run: Run) -> SafeString:
        return _pre(display.pretty_json(display.error_details(run.error)))

    @admin.display(description=_("traceback"))
    def traceback(self, run: Run) -> SafeString:
        return _pre(str((run.error or {}).get("traceback") or ""))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """Leave out the result of a run that has none, and the error of one without."""
        hidden = set()
        if obj is not None and obj.status != RunStatus.COMPLETED:
            hidden.add("result_json")
        if obj is not None and not obj.error:
            hidden.add("error_json")
        if obj is not None and not (obj.error or {}).get("traceback"):
            hidden.add("traceback")
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
        # Django's "=id" compares the id as text, which no index serves: look it up exactly.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            run_id = uuid.UUID(term)
        except ValueError:
            query = Q(workflow_name__icontains=term) | Q(idempotency_key=term)
        else:
            query = Q(pk=run_id) | Q(idempotency_key=term)
        return queryset.filter(query), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # history: the change page is a read-only view

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only finished runs: deleting a run under its worker bypasses its invariants.
        return request.user.is_superuser and (obj is None or obj.is_terminal)


class AliveFilter(admin.SimpleListFilter):
    """Workers running now, or stopped and lost ones."""

    title = _("alive")
    parameter_name = "alive"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        alive = Q(stopped_at__isnull=True, last_seen_at__gte=display.alive_since())
        if self.value() == "yes":
            return queryset.filter(alive)
        if self.value() == "no":
            return queryset.exclude(alive)
        return queryset


@admin.register(WorkerProcess)
class WorkerProcessAdmin(admin.ModelAdmin):
    """``run_workflow_worker`` processes, as they last reported themselves."""

    list_display = (
        "id",
        "hostname",
        "pid",
        "queue_list",
        "concurrency",
        "started_at",
        "last_seen_at",
        "stopped_at",
        "alive",
    )
    list_filter = (AliveFilter,)
    search_fields = ("hostname", "=id")
    ordering = ("-started_at",)
    readonly_fields = (
        "id",
        "hostname",
        "pid",
        "queue_list",
        "concurrency",
        "started_at",
        "last_seen_at",
        "stopped_at",
        "alive",
    )
    fields = readonly_fields

    @admin.display(description=_("queues"))
    def queue_list(self, worker: WorkerProcess) -> str:
        return ", ".join(map(str, worker.queues or []))

    @admin.display(description=_("alive"), boolean=True)
    def alive(self, worker: WorkerProcess) -> bool:
        return display.worker_alive(worker)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
