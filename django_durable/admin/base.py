"""What the admin pages share: read-only history admins, filters, HTML helpers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.utils import display_for_value
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import display
from ..conf import get_settings
from ..models import Run


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


def run_link(site: admin.AdminSite, run_id: uuid.UUID) -> SafeString:
    url = reverse(f"{site.name}:django_durable_run_change", args=[run_id])
    # A UUIDv7 starts with its timestamp: the random tail tells runs apart.
    return format_html('<a href="{}" title="{}">…{}</a>', url, run_id, run_id.hex[-12:])


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


class HistoryAdmin(admin.ModelAdmin):
    """Rows nobody edits by hand: no adding, no changing, cheap changelists."""

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
