"""The Django admin: runs with their steps, values, messages and streams, events, workers.

All read-only history, built to stay fast with millions of rows: no query per row, no
COUNT(*) of the whole table next to the filtered one, no facet counts, no big JSON columns
in the lists, a bounded read of each payload shown, and filter choices taken from the code
(or the newest rows) rather than a DISTINCT over a whole table. Nothing here edits a row
by hand: operating runs is the client's job.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.utils import display_for_value, flatten_fieldsets
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_permission_codename
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import display
from .conf import get_settings
from .models import Event, Message, Run, RunStatus, Step, WorkerProcess
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


def _when(value: Any) -> str:
    return str(display_for_value(value, "-"))


def _html_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> SafeString:
    """Return an HTML table; cells are escaped unless they are safe strings already."""
    head = format_html_join("", "<th>{}</th>", ((header,) for header in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def _progress_bar(progress: display.Progress, width: str) -> SafeString:
    if progress.percent is None:  # no total: an indeterminate bar
        return format_html('<progress style="width: {}"></progress>', width)
    return format_html(
        '<progress max="100" value="{}" style="width: {}">{}%</progress>',
        f"{progress.percent:g}",
        width,
        f"{progress.percent:g}",
    )


def _run_link(site: admin.AdminSite, run_id: uuid.UUID) -> SafeString:
    url = reverse(f"{site.name}:django_durable_run_change", args=[run_id])
    # A UUIDv7 starts with its timestamp: the random tail tells runs apart.
    return format_html('<a href="{}" title="{}">…{}</a>', url, run_id, run_id.hex[-12:])


def _channels(run: Run) -> display.RunChannels:
    """Return what the run published and received, read once per page."""
    channels = run.__dict__.get("_durable_channels")
    if channels is None:
        channels = run.__dict__["_durable_channels"] = display.run_channels(run.pk)
    return cast(display.RunChannels, channels)


class _ChoicesFromCode(admin.SimpleListFilter):
    """A filter whose choices come from ``names()``, not from a DISTINCT over a whole table."""

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


class HistoryChangeList(ChangeList):
    """A changelist that does not read the big JSON columns its page does not show."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.defer(*cast(HistoryAdmin, self.model_admin).list_deferred)


class RunChangeList(HistoryChangeList):
    """The runs page: the progress of the page's runs is read in one more query."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        runs = list(self.result_list)  # evaluated once; the template reuses these objects
        progress = display.progress_by_run(run.pk for run in runs)
        for run in runs:
            run.__dict__["_durable_progress"] = progress.get(run.pk)


class HistoryAdmin(admin.ModelAdmin):
    """Rows nobody edits by hand: no adding, no changing, cheap changelists."""

    # Columns that may hold a megabyte and that the list does not show.
    list_deferred: tuple[str, ...] = ()
    list_select_related = False
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return HistoryChangeList

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the change page is a read-only view


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
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "workflow_name",
                    "coloured_status",
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
        bar = _progress_bar(progress, "5em")
        return format_html(
            '<span title="{}">{} {}%</span>', progress.describe(), bar, f"{progress.percent:g}"
        )

    @admin.display(description=_("progress"))
    def progress_bar(self, run: Run) -> SafeString:
        progress = _channels(run).progress
        if progress is None:
            return SafeString("")
        return format_html("{} {}", _progress_bar(progress, "20em"), progress.describe())

    @admin.display(description=_("wakes on"))
    def wakes_on(self, run: Run) -> str:
        return display.waiting_description(run)

    @admin.display(description=_("latest values"))
    def values_table(self, run: Run) -> SafeString:
        channels = _channels(run)
        rows = [
            (
                value.key,
                _pre(display.head_pretty(value.head)),
                value.position,
                _when(value.created_at),
            )
            for value in channels.values
        ]
        table = _html_table((_("key"), _("value"), _("position"), _("set at")), rows)
        if not channels.more_values:
            return table
        note = _("The first %(count)d keys, by name.") % {"count": display.MAX_KEYS}
        return format_html("<p>{}</p>{}", note, table)

    @admin.display(description=_("messages"))
    def messages_table(self, run: Run) -> SafeString:
        channels = _channels(run)
        rows = [
            (
                message.id,
                message.topic or self.get_empty_value_display(),
                _when(message.created_at),
                _("pending")
                if message.consumed_at is None
                else _("%(when)s at position %(position)s")
                % {"when": _when(message.consumed_at), "position": message.consumed_position},
                display.head_preview(message.head),
            )
            for message in channels.messages
        ]
        headers = (_("id"), _("topic"), _("sent"), _("consumed"), _("message"))
        table = _html_table(headers, rows)
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
        channels = _channels(run)
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
        table = _html_table((_("key"), _("items"), _("state"), _("last offset")), rows)
        if not channels.more_streams:
            return table
        note = _("The first %(count)d streams, by key.") % {"count": display.MAX_KEYS}
        return format_html("<p>{}</p>{}", note, table)

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
        channels = _channels(run)
        shown = {
            "result_json": run.status == RunStatus.COMPLETED,
            "error_json": bool(run.error),
            "traceback": bool((run.error or {}).get("traceback")),
            "progress_bar": channels.progress is not None,
            "wakes_on": bool(display.waiting_description(run)),
            "values_table": bool(channels.values),
            "messages_table": bool(channels.messages),
            "streams_table": bool(channels.streams),
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


class RecentTypeFilter(_ChoicesFromCode):
    """Events of one type; the choices are the types of the newest events, not a DISTINCT."""

    title = _("type")
    parameter_name = "type"
    # How many of the newest events the choices are taken from.
    RECENT = 1000

    def names(self) -> set[str]:
        recent = Event.objects.order_by("-id").values_list("type", flat=True)[: self.RECENT]
        return {name for name in recent if name}


@admin.register(Event)
class EventAdmin(HistoryAdmin):
    """Emitted events, newest first; only superusers delete them."""

    list_display = ("id", "name", "source", "type", "created_at", "emitted_by")
    list_filter = (RecentTypeFilter,)
    search_fields = ("name",)  # shows the search box; get_search_results() does the search
    search_help_text = _(
        "An exact event name, the start of one followed by * (payment.*), or an event id."
    )
    ordering = ("-id",)
    list_deferred = ("data",)
    list_per_page = 100
    fields = readonly_fields = (
        "id",
        "name",
        "source",
        "type",
        "idempotency_key",
        "created_at",
        "emitted_by",
        "data_json",
    )

    @admin.display(description=_("emitted by run"))
    def emitted_by(self, event: Event) -> str:
        if event.run_id is None:
            return self.get_empty_value_display()
        return _run_link(self.admin_site, event.run_id)

    @admin.display(description=_("data"))
    def data_json(self, event: Event) -> SafeString:
        return _pre(display.pretty_json(event.data))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # Exact names use the (name, id) index; a LIKE with a leading % would read every row.
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.endswith("*"):
            return queryset.filter(name__startswith=term[:-1]), False
        query = Q(name=term)
        if term.isascii() and term.isdigit() and int(term) < 2**63:
            query |= Q(pk=int(term))
        return queryset.filter(query), False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


class ConsumedFilter(admin.SimpleListFilter):
    """Messages a run has taken, or still pending."""

    title = _("consumed")
    parameter_name = "consumed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Consumed")), ("no", _("Pending"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(consumed_at__isnull=self.value() == "no")
        return queryset


@admin.register(Message)
class MessageAdmin(HistoryAdmin):
    """Messages sent to runs, newest first, and whether the run has taken each."""

    list_display = ("id", "run_link", "topic_name", "created_at", "consumed")
    list_filter = (ConsumedFilter,)
    search_fields = ("=id",)  # shows the search box; get_search_results() does the search
    search_help_text = _("A run id (its messages), or a message id.")
    ordering = ("-id",)
    list_deferred = ("data",)
    list_per_page = 100
    fields = readonly_fields = (
        "id",
        "run_link",
        "topic_name",
        "idempotency_key",
        "created_at",
        "consumed",
        "data_json",
    )

    @admin.display(description=_("run"))
    def run_link(self, message: Message) -> SafeString:
        return _run_link(self.admin_site, message.run_id)

    @admin.display(description=_("topic"), ordering="topic")
    def topic_name(self, message: Message) -> str:
        return message.topic or self.get_empty_value_display()

    @admin.display(description=_("consumed"))
    def consumed(self, message: Message) -> str:
        if message.consumed_at is None:
            return str(_("pending"))
        return str(
            _("%(when)s at position %(position)s")
            % {"when": _when(message.consumed_at), "position": message.consumed_position}
        )

    @admin.display(description=_("message"))
    def data_json(self, message: Message) -> SafeString:
        return _pre(display.pretty_json(message.data))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(run_id=uuid.UUID(term)), False
        except ValueError:
            pass
        if term.isascii() and term.isdigit() and int(term) < 2**63:
            return queryset.filter(pk=int(term)), False
        return queryset.none(), False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting a message under its run would change what the run receives
