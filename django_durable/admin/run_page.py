"""A run's page, below its summary and steps (run_panel.py): the read-only panels that show
its progress, cancellation, parent and children, forks, input and outcome, values, messages,
streams and traceback. RunAdmin mixes the panels in and shows
them in its fieldsets; ``absent_fields`` says which of them a run has nothing for. Each
panel reads its run's children or channels once per page, a bounded number of rows.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import display
from ..core.conf import get_settings
from ..models import ParentClose, Run, RunStatus
from .base import (
    consumed_text,
    html_table,
    pre,
    progress_bar,
    run_channels,
    run_link,
    status_badge,
    summary_html,
    when,
)

# A run's page lists at most this many of its child runs, and of its forks.
MAX_CHILDREN = 50
MAX_FORKS = 50


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


def run_forks(run: Run) -> tuple[list[tuple[uuid.UUID, str, Any]], int]:
    """Return ``(id, status, created_at)`` of a run's first forks, and how many it has.

    The first MAX_FORKS, oldest first, in one query (read once per page); the count is a
    second query only when there are more.
    """
    cached = run.__dict__.get("_durable_forks")
    if cached is None:
        forks = Run.objects.using(get_settings().DATABASE).filter(forked_from_id=run.pk)
        rows = list(
            forks.order_by("created_at", "id").values_list("id", "status", "created_at")[
                : MAX_FORKS + 1
            ]
        )
        count = len(rows) if len(rows) <= MAX_FORKS else forks.count()
        cached = run.__dict__["_durable_forks"] = (rows[:MAX_FORKS], count)
    return cached


def absent_fields(run: Run) -> set[str]:
    """Return the fields of a run's page that the run has nothing for: a result, an error,
    values, messages..."""
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
        "forked_from_link": run.forked_from_id is not None,
        "flow": run.flow_key is not None,
        "forks_table": bool(run_forks(run)[1]),
        # Which workers may execute it matters only while it has not finished.
        "known_by_workers": not run.is_terminal,
    }
    return {field for field, show in shown.items() if not show}


def _first_only(note: str, table: SafeString) -> SafeString:
    """A table of the first rows only, under a note that says so."""
    return format_html("<p>{}</p>{}", note, table)


def _first_of_all(note: str, url: str, query: str, table: SafeString) -> SafeString:
    """A table of the first rows only, under a note and a link to the list of all of them."""
    return format_html(
        '<p>{} <a href="{}?{}">{}</a></p>{}', note, url, query, _("All of them"), table
    )


class RunPagePanels(admin.ModelAdmin):
    """The read-only panels of a run's page, mixed into RunAdmin, which places them."""

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

    @admin.display(description=_("workers that know its workflow"))
    def known_by_workers(self, run: Run) -> SafeString:
        return summary_html(display.known_by_sentence(run))

    @admin.display(description=_("wakes on"))
    def wakes_on(self, run: Run) -> str:
        return display.waiting_description(run)

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
                (run_link(self.admin_site, child_id), workflow, status_badge(status))
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
        return _first_of_all(note, url, f"parent__id__exact={run.pk}", table)

    @admin.display(description=_("flow key"))
    def flow(self, run: Run) -> str:
        # Runs of the workflow with this key share its concurrency limit or singleton.
        return display.flow_description(run) or self.get_empty_value_display()

    @admin.display(description=_("forked from"))
    def forked_from_link(self, run: Run) -> SafeString | str:
        if run.forked_from_id is None:
            return self.get_empty_value_display()
        # Its first records are copies of that run's: how many, the steps below say.
        return run_link(self.admin_site, run.forked_from_id)

    @admin.display(description=_("forks"))
    def forks_table(self, run: Run) -> SafeString:
        rows, count = run_forks(run)
        table = html_table(
            (_("id"), _("status"), _("created")),
            (
                (run_link(self.admin_site, fork_id), status_badge(status), when(created))
                for fork_id, status, created in rows
            ),
        )
        if count <= len(rows):
            return table
        url = reverse(f"{self.admin_site.name}:django_durable_run_changelist")
        note = _("The first %(shown)d of %(count)d forks.") % {"shown": len(rows), "count": count}
        return _first_of_all(note, url, f"forked_from__id__exact={run.pk}", table)

    @admin.display(description=_("input"))
    def input_json(self, run: Run) -> SafeString:
        return pre(display.pretty_json(run.input))

    @admin.display(description=_("result"))
    def result_json(self, run: Run) -> SafeString:
        return pre(display.pretty_json(run.result))

    @admin.display(description=_("error"))
    def error_json(self, run: Run) -> SafeString:
        return pre(display.pretty_json(display.error_details(run.error)))

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
        return _first_only(
            _("The first %(count)d keys, by name.") % {"count": display.MAX_KEYS}, table
        )

    @admin.display(description=_("messages"))
    def messages_table(self, run: Run) -> SafeString:
        channels = run_channels(run)
        rows = [self._message_row(message) for message in channels.messages]
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
        return _first_of_all(note, url, f"q={run.pk}", table)

    def _message_row(self, message: display.MessageSummary) -> tuple[Any, ...]:
        consumed = consumed_text(message.consumed_at, message.consumed_position)
        topic = message.topic or self.get_empty_value_display()
        created = when(message.created_at)
        return (message.id, topic, created, consumed, display.head_preview(message.head))

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
        return _first_only(
            _("The first %(count)d streams, by key.") % {"count": display.MAX_KEYS}, table
        )

    @admin.display(description=_("traceback"))
    def traceback(self, run: Run) -> SafeString:
        return pre(str((run.error or {}).get("traceback") or ""))
