"""The runs admin: a run's state, outcome, progress, values, messages, streams, steps,
parent and children; actions that cancel and retry runs (see actions.py)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_permission_codename
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import display
from ..conf import get_settings
from ..models import ParentClose, Run, RunStatus, Step
from ..registry import registered_workflows
from .actions import cancel_runs, has_operate_permission, retry_runs
from .base import (
    ChoicesFromCode,
    HistoryAdmin,
    HistoryChangeList,
    html_table,
    pre,
    progress_bar,
    run_channels,
    run_link,
    when,
)

# A run's page lists at most this many of its child runs.
MAX_CHILDREN = 50

STATUS_COLOURS = {
    RunStatus.PENDING: "#6c757d",
    RunStatus.RUNNING: "#0d6efd",
    RunStatus.WAITING: "#b58105",
    RunStatus.COMPLETED: "#198754",
    RunStatus.FAILED: "#dc3545",
    RunStatus.CANCELLED: "#495057",
}


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


def run_children(run: Run) -> tuple[list[tuple[uuid.UUID, str, str]], int]:
    """Return ``(id, workflow, status)`` of a run's first children, and how many it has.

    The first MAX_CHILDREN, oldest first, in one query (read once per page); the count is
    a second query only when there are more.
    """
    cached = run.__dict__.get("_durable_children")
    if cached is None:
        children = Run.objects.using(get_settings().DATABASE).filter(parent_id=run.pk)
        rows = list(
            children.order_by("parent_position", "created_at", "id").values_list(
                "id", "workflow_name", "status"
            )[: MAX_CHILDREN + 1]
        )
        count = len(rows) if len(rows) <= MAX_CHILDREN else children.count()
        cached = run.__dict__["_durable_children"] = (rows[:MAX_CHILDREN], count)
    return cached


class RunChangeList(HistoryChangeList):
    """The runs page: the progress of the page's runs is read in one more query."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        runs = list(self.result_list)  # evaluated once; the template reuses these objects
        progress = display.progress_by_run(run.pk for run in runs)
        for run in runs:
            run.__dict__["_durable_progress"] = progress.get(run.pk)


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
class RunAdmin(HistoryAdmin):
    """Runs, newest first; a run's page shows its input, outcome, steps and what it published."""

    list_display = (
        "short_id",
        "workflow_name",
        "coloured_status",
        "progress_column",
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
    # Inputs, results and errors may be a megabyte each; the list shows none of them.
    list_deferred = ("input", "result", "error")
    list_per_page = 50
    inlines = (StepInline,)
    actions = (cancel_runs, retry_runs)
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
        # A UUIDv7 starts with its timestamp: the random tail tells runs apart.
        return format_html('<span title="{}">…{}</span>', run.id, run.id.hex[-12:])

    @admin.display(description=_("progress"))
    def progress_column(self, run: Run) -> str:
        # Read for the whole page by RunChangeList.get_results().
        progress: display.Progress | None = run.__dict__.get("_durable_progress")
        if progress is None:
            return self.get_empty_value_display()
        if progress.percent is None:
            return progress.describe()
        bar = progress_bar(progress, "5em")
        return format_html(
            '<span title="{}">{} {}%</span>', progress.describe(), bar, f"{progress.percent:g}"
        )

    @admin.display(description=_("progress"))
    def progress_bar(self, run: Run) -> SafeString:
        progress = run_channels(run).progress
        if progress is None:
            return SafeString("")
        return format_html("{} {}", progress_bar(progress, "20em"), progress.describe())

    @admin.display(description=_("cancellation"))
    def cancellation(self, run: Run) -> str:
        if run.cancel_requested_at is None:
            return self.get_empty_value_display()
        return _("requested %(when)s: %(reason)s") % {
            "when": when(run.cancel_requested_at),
            "reason": run.cancel_reason or self.get_empty_value_display(),
        }

    @admin.display(description=_("parent run"))
    def parent_link(self, run: Run) -> SafeString | str:
        if run.parent_id is None:
            return self.get_empty_value_display()
        position = _("started at its position %(position)s") % {"position": run.parent_position}
        return format_html("{} ({})", run_link(self.admin_site, run.parent_id), position)

    @admin.display(description=_("when its parent finishes"))
    def when_parent_finishes(self, run: Run) -> str:
        # The parent_close policy, said as what happens to this run.
        if run.parent_close == ParentClose.ABANDON:
            return str(_("it goes on alone (abandon)"))
        return str(_("it is cancelled, if it has not finished (cancel)"))

    @admin.display(description=_("child runs"))
    def children_table(self, run: Run) -> SafeString:
        rows, count = run_children(run)
        table = html_table(
            (_("id"), _("workflow"), _("status")),
            (
                (run_link(self.admin_site, child_id), workflow, self._status(status))
                for child_id, workflow, status in rows
            ),
        )
        if count <= len(rows):
            return table
        url = reverse(f"{self.admin_site.name}:django_durable_run_changelist")
        note = _("The first %(shown)d of %(count)d child runs.") % {
            "shown": len(rows),
            "count": count,
        }
        return format_html(
            '<p>{} <a href="{}?parent__id__exact={}">{}</a></p>{}',
            note,
            url,
            run.pk,
            _("All of them"),
            table,
        )

    @admin.display(description=_("wakes on"))
    def wakes_on(self, run: Run) -> str:
        return display.waiting_description(run)

    @admin.display(description=_("latest values"))
    def values_table(self, run: Run) -> SafeString:
        channels = run_channels(run)
        rows = [
            (
                value.key,
                pre(display.head_pretty(value.head)),
                value.position,
                when(value.created_at),
            )
            for value in channels.values
        ]
        table = html_table((_("key"), _("value"), _("position"), _("set at")), rows)
        if not channels.more_values:
            return table
        note = _("The first %(count)d keys, by name.") % {"count": display.MAX_KEYS}
        return format_html("<p>{}</p>{}", note, table)

    @admin.display(description=_("messages"))
    def messages_table(self, run: Run) -> SafeString:
        channels = run_channels(run)
        rows = [
            (
                message.id,
                message.topic or self.get_empty_value_display(),
                when(message.created_at),
                _("pending")
                if message.consumed_at is None
                else _("%(when)s at position %(position)s")
                % {"when": when(message.consumed_at), "position": message.consumed_position},
                display.head_preview(message.head),
            )
            for message in channels.messages
        ]
        headers = (_("id"), _("topic"), _("sent"), _("consumed"), _("message"))
        table = html_table(headers, rows)
        if channels.message_count <= len(channels.messages):
            return table
        url = reverse(f"{self.admin_site.name}:django_durable_message_changelist")
        note = ngettext(
            "The newest %(shown)d of %(count)d message.",
            "The newest %(shown)d of %(count)d messages.",
            channels.message_count,
        ) % {"shown": len(channels.messages), "count": channels.message_count}
        return format_html(
            '<p>{} <a href="{}?q={}">{}</a></p>{}', note, url, run.pk, _("All of them"), table
        )

    @admin.display(description=_("streams"))
    def streams_table(self, run: Run) -> SafeString:
        channels = run_channels(run)
        rows = [
            (
                stream.key,
                stream.items,
                _("closed") if stream.closed else _("open"),
                self.get_empty_value_display()
                if stream.last_offset is None
                else stream.last_offset,
            )
            for stream in channels.streams
        ]
        table = html_table((_("key"), _("items"), _("state"), _("last offset")), rows)
        if not channels.more_streams:
            return table
        note = _("The first %(count)d streams, by key.") % {"count": display.MAX_KEYS}
        return format_html("<p>{}</p>{}", note, table)

    @admin.display(description=_("status"), ordering="status")
    def coloured_status(self, run: Run) -> SafeString:
        return self._status(run.status)

    @staticmethod
    def _status(status: str) -> SafeString:
        colour = STATUS_COLOURS.get(RunStatus(status), "inherit")
        label = RunStatus(status).label
        return format_html('<strong style="color: {}">{}</strong>', colour, label)

    @admin.display(description=_("duration"))
    def duration(self, run: Run) -> str:
        seconds = display.run_seconds(run)
        return (
            self.get_empty_value_display() if seconds is None else display.format_duration(seconds)
        )

    @admin.display(description=_("input"))
    def input_json(self, run: Run) -> SafeString:
        return pre(display.pretty_json(run.input))

    @admin.display(description=_("result"))
    def result_json(self, run: Run) -> SafeString:
        return pre(display.pretty_json(run.result))

    @admin.display(description=_("error"))
    def error_json(self, run: Run) -> SafeString:
        return pre(display.pretty_json(display.error_details(run.error)))

    @admin.display(description=_("traceback"))
    def traceback(self, run: Run) -> SafeString:
        return pre(str((run.error or {}).get("traceback") or ""))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """Leave out what the run does not have: a result, an error, values, messages..."""
        hidden = set() if obj is None else self._missing(obj)
        fieldsets = []
        for name, options in super().get_fieldsets(request, obj):
            fields = tuple(field for field in options["fields"] if field not in hidden)
            if fields:
                fieldsets.append((name, {**options, "fields": fields}))
        return fieldsets

    @staticmethod
    def _missing(run: Run) -> set[str]:
        channels = run_channels(run)
        shown = {
            "result_json": run.status == RunStatus.COMPLETED,
            "error_json": bool(run.error),
            "traceback": bool((run.error or {}).get("traceback")),
            "progress_bar": channels.progress is not None,
            "wakes_on": bool(display.waiting_description(run)),
            "values_table": bool(channels.values),
            "messages_table": bool(channels.messages),
            "streams_table": bool(channels.streams),
            "cancellation": run.cancel_requested_at is not None,
            "parent_link": run.parent_id is not None,
            "depth": run.parent_id is not None,
            "when_parent_finishes": run.parent_id is not None,
            "children_table": bool(run_children(run)[1]),
        }
        return {field for field, show in shown.items() if not show}

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

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Return whether the user may cancel and retry runs (``django_durable.operate_run``)."""
        return has_operate_permission(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only finished runs: deleting a run under its worker bypasses its invariants.
        return request.user.is_superuser and (obj is None or obj.is_terminal)
