"""What the admin pages share: read-only history admins, filters, HTML helpers."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.utils import display_for_value
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .. import display
from ..core.conf import get_settings
from ..models import Run, RunStatus

STATUS_COLOURS = {
    RunStatus.PENDING: "#6c757d",
    RunStatus.RUNNING: "#0d6efd",
    RunStatus.WAITING: "#b58105",
    RunStatus.COMPLETED: "#198754",
    RunStatus.FAILED: "#dc3545",
    RunStatus.CANCELLED: "#495057",
}


_CODE = re.compile(r"`([^`]*)`")


def summary_html(sentence: str) -> SafeString:
    """Return the summary sentence, escaped, with its `names` as code."""
    parts = _CODE.split(sentence)  # text, name, text, name, ...
    return format_html_join(
        "",
        "{}",
        (
            (format_html("<code>{}</code>", part) if i % 2 else part,)
            for i, part in enumerate(parts)
        ),
    )


def pre(text: str) -> SafeString:
    return format_html('<pre style="margin: 0; white-space: pre-wrap">{}</pre>', text)


def when(value: Any) -> str:
    return str(display_for_value(value, "-"))


def html_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> SafeString:
    """Return an HTML table; cells are escaped unless they are safe strings already."""
    head = format_html_join("", "<th>{}</th>", ((header,) for header in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def progress_bar(progress: display.Progress, width: str) -> SafeString:
    if progress.percent is None:  # no total: an indeterminate bar
        return format_html('<progress style="width: {}"></progress>', width)
    return format_html(
        '<progress max="100" value="{}" style="width: {}">{}%</progress>',
        f"{progress.percent:g}",
        width,
        f"{progress.percent:g}",
    )


def short_run_id(run_id: uuid.UUID) -> str:
    """Return the end of a run's id, as lists show it: a UUIDv7 starts with its timestamp,
    and the random tail tells runs apart."""
    return f"…{run_id.hex[-12:]}"


def run_link(site: admin.AdminSite, run_id: uuid.UUID) -> SafeString:
    url = reverse(f"{site.name}:django_durable_run_change", args=[run_id])
    return format_html('<a href="{}" title="{}">{}</a>', url, run_id, short_run_id(run_id))


def consumed_text(consumed_at: Any, position: int | None) -> str:
    """Return when (and at which position) a message was taken, or that it is pending."""
    if consumed_at is None:
        return str(_("pending"))
    return str(
        _("%(when)s at position %(position)s") % {"when": when(consumed_at), "position": position}
    )


def status_badge(status: str) -> SafeString:
    """Return a run status as its label, in the status's colour."""
    colour = STATUS_COLOURS.get(RunStatus(status), "inherit")
    label = RunStatus(status).label
    return format_html('<strong style="color: {}">{}</strong>', colour, label)


def run_channels(run: Run) -> display.RunChannels:
    """Return what the run published and received, read once per page."""
    channels = run.__dict__.get("_durable_channels")
    if channels is None:
        channels = run.__dict__["_durable_channels"] = display.run_channels(run.pk)
    return cast(display.RunChannels, channels)


class ChoicesFromCode(admin.SimpleListFilter):
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


class HistoryChangeList(ChangeList):
    """A changelist that does not read the big JSON columns its page does not show."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.defer(*cast(HistoryAdmin, self.model_admin).list_deferred)


class EstimatedPaginator(Paginator):
    """Counts up to ``EXACT_UP_TO`` rows, and estimates past that: a COUNT(*) over a million
    rows on every page would cost more than the page itself.

    Past the bound, PostgreSQL's planner says how many rows it expects (``EXPLAIN``, which
    reads statistics, not rows); SQLite keeps no such figure, so the count stays at the
    bound. ``estimated`` says which; the list then reads "about 1,000,000 runs" or "more
    than 10,000 runs".
    """

    EXACT_UP_TO = 10_000
    estimated = False

    @cached_property
    def count(self) -> int:
        # Only the ids: the list's annotations (parts of each run's error) cost per row.
        queryset = cast(QuerySet[Any], self.object_list).order_by().values("pk")
        counted = queryset[: self.EXACT_UP_TO + 1].count()
        if counted <= self.EXACT_UP_TO:
            return counted
        self.estimated = True
        return max(counted, planned_rows(queryset) or 0)

    @property
    def over_bound(self) -> bool:
        """Return whether the count is the bound itself: the list says "more than"."""
        return self.estimated and self.count == self.EXACT_UP_TO + 1


def planned_rows(queryset: QuerySet[Any]) -> int | None:
    """Return how many rows PostgreSQL's planner expects ``queryset`` to give (None
    elsewhere)."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    document = json.loads(plan) if isinstance(plan, str) else plan
    return int(document[0]["Plan"]["Plan Rows"])


class HistoryAdmin(admin.ModelAdmin):
    """Rows nobody edits by hand: no adding, no changing, cheap changelists."""

    paginator = EstimatedPaginator

    # Columns that may hold a megabyte and that the list does not show.
    list_deferred: tuple[str, ...] = ()
    list_select_related = False
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The durable tables live in DJANGO_DURABLE['DATABASE'], which need not be "default".
        return super().get_queryset(request).using(get_settings().DATABASE)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return HistoryChangeList

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the change page is a read-only view
