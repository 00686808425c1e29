"""The dashboard: an admin page of the runs' figures at a glance, for support staff.

What started, completed and failed in the last hour and day, per workflow; what waits and
for how long; how many runs are ready in each queue and how long the oldest has waited for
a worker (the queue's lag); the live workers and the runs they execute; the last failures.
The figures come from ``display.dashboard`` (one indexed query each); this module draws
them (charts.py) for the template ``admin/django_durable/dashboard.html``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import display
from ..display import dashboard as figures
from ..models import Run
from .base import html_table, run_link
from .charts import Bar, Chart, Row, table

WINDOWS = (("hour", "Last hour"), ("day", "Last 24 hours"))
ACTIVITY = (("started", "started"), ("completed", "completed"), ("failed", "failed"))
# A queue whose oldest ready run waited longer than this (seconds) is marked: its workers
# are too few, busy or gone (a healthy queue's lag is a poll interval or less).
LAG_ALERT = 60.0


def dashboard_view(model_admin: admin.ModelAdmin[Any], request: HttpRequest) -> TemplateResponse:
    """Show the dashboard to users who may view runs (``django_durable.view_run``)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    board = figures.dashboard()
    links = Links(model_admin.admin_site.name)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Workflow runs dashboard",
        "subtitle": None,
        "opts": Run._meta,
        "app_label": Run._meta.app_label,
        "now": clock(board.now),
        "tiles": tiles(board),
        "activity": [
            (label, activity_chart(board, window, label, links)) for window, label in WINDOWS
        ],
        "activity_table": activity_table(board, links),
        "waiting": waiting_chart(board, links),
        "queues": queue_chart(board, links),
        "workers": worker_chart(board),
        "failures": failure_table(board, model_admin.admin_site),
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/django_durable/dashboard.html", context)


class Links:
    """The runs list, filtered: what a click on a chart's row opens."""

    def __init__(self, site: str) -> None:
        self.base = reverse(f"{site}:django_durable_run_changelist")

    def runs(self, **filters: str) -> str:
        return f"{self.base}?{urlencode(filters)}"


def clock(moment: datetime) -> str:
    """Return ``14:25:03, UTC time``: when the figures were read, in the current time zone."""
    return f"{timezone.localtime(moment):%H:%M:%S}, {timezone.get_current_timezone_name()} time"


@dataclasses.dataclass(frozen=True, slots=True)
class Tile:
    """A headline figure: its name, the figure, what it means; ``alert`` draws the eye."""

    label: str
    figure: str
    meaning: str
    alert: bool = False


def tiles(board: figures.Dashboard) -> list[Tile]:
    """Return the page's headline figures, those that need someone's attention marked."""
    hour, day = board.totals("hour"), board.totals("day")
    waiting = sum(row.runs for row in board.waiting)
    oldest = min((row.since for row in board.waiting if row.since), default=None)
    ready = sum(row.ready for row in board.queues)
    lag = max((row.lag(board.now) for row in board.queues), default=0.0)
    slots = sum(worker.concurrency for worker in board.workers)
    busy = sum(worker.in_flight for worker in board.workers)
    lagging = f"the longest lag {display.format_duration(lag)}" if ready else "no lag"
    running = f"running {_count(busy, 'run')} in {slots:,} slots"
    return [
        Tile("Started", f"{hour.started:,}", f"in the last hour; {day.started:,} in 24 hours"),
        Tile(
            "Failed",
            f"{hour.failed:,}",
            f"in the last hour; {day.failed:,} in 24 hours",
            alert=hour.failed > 0,
        ),
        Tile(
            "Waiting",
            f"{waiting:,}",
            f"the oldest since {_since(oldest, board.now)}" if waiting else "none waits",
        ),
        Tile("Ready", f"{ready:,}", lagging, alert=lag > LAG_ALERT),
        Tile(
            "Live workers",
            f"{len(board.workers):,}",
            running if board.workers else "none: no run goes on",
            alert=not board.workers,
        ),
    ]


def activity_chart(board: figures.Dashboard, window: str, label: str, links: Links) -> SafeString:
    """Return a chart of the runs each workflow started, completed and failed in ``window``."""
    rows = []
    for item in board.activity:
        counts: figures.Counts = getattr(item, window)
        figures_ = [(key, getattr(counts, key), word) for key, word in ACTIVITY]
        bars = [Bar(series=k, value=n, text=f"{item.workflow}: {n:,} {w}") for k, n, w in figures_]
        href = links.runs(workflow_name=item.workflow)
        rows.append(Row(label=item.workflow, bars=bars, href=href))
    chart = Chart(
        uid=f"durable-activity-{window}",
        title=f"Runs started, completed and failed per workflow: {label.lower()}",
        legend=ACTIVITY,
        rows=rows,
        empty="No run started or finished in the last 24 hours.",
    )
    total = board.totals(window)
    words = f"{total.started:,} started, {total.completed:,} completed, {total.failed:,} failed"
    return chart.svg(f"{label}: {words}, in {_count(len(rows), 'workflow')}.")


def activity_table(board: figures.Dashboard, links: Links) -> SafeString:
    """Return both activity charts' figures as one table, the workflows linked as there."""
    headers = ["workflow"]
    headers += [f"{key}, {window}" for window in ("hour", "24 h") for key, _ in ACTIVITY]
    rows = [
        [_link(links.runs(workflow_name=item.workflow), item.workflow)]
        + [f"{getattr(counts, key):,}" for counts in (item.hour, item.day) for key, _ in ACTIVITY]
        for item in board.activity
    ]
    return table(headers, rows, "These figures as a table") if rows else SafeString("")


def waiting_chart(board: figures.Dashboard, links: Links) -> SafeString:
    """Return a chart of each workflow's waiting runs, with how long the oldest waits."""
    rows = [
        _row(
            item.workflow,
            Bar(series="waiting", value=item.runs, text=f"{item.workflow}: {item.runs:,} waiting"),
            note=f"oldest {_age(item.since, board.now)}",
            href=links.runs(status__exact="waiting", workflow_name=item.workflow),
        )
        for item in board.waiting
    ]
    chart = Chart(
        uid="durable-waiting",
        title="Waiting runs per workflow, and how long the oldest has waited",
        legend=(("waiting", "waiting runs"),),
        rows=rows,
        empty="No run is waiting.",
    )
    waiting = sum(item.runs for item in board.waiting)
    data = [
        [_link(row.href, item.workflow), f"{item.runs:,}", _since(item.since, board.now)]
        for row, item in zip(rows, board.waiting, strict=True)
    ]
    headers = ["workflow", "waiting runs", "the oldest waits since"]
    return _with_table(
        chart, f"{_count(waiting, 'run')} wait, in {_count(len(rows), 'workflow')}.", headers, data
    )


def queue_chart(board: figures.Dashboard, links: Links) -> SafeString:
    """Return a chart of each queue's ready runs, with its lag (the oldest ready run's age)."""
    rows = [
        _row(
            item.queue,
            Bar(series="ready", value=item.ready, text=f"{item.queue}: {item.ready:,} ready"),
            note=f"lag {display.format_duration(item.lag(board.now))}" if item.ready else "no lag",
            href=links.runs(status__exact="pending", queue=item.queue),
        )
        for item in board.queues
    ]
    chart = Chart(
        uid="durable-queues",
        title="Ready runs per queue, and the queue's lag",
        legend=(("ready", "ready runs (pending, due)"),),
        rows=rows,
        empty="No queue.",
    )
    ready = sum(item.ready for item in board.queues)
    data = [
        [_link(row.href, item.queue), f"{item.ready:,}", _since(item.oldest, board.now)]
        for row, item in zip(rows, board.queues, strict=True)
    ]
    headers = ["queue", "ready runs", "the oldest is ready since"]
    return _with_table(
        chart, f"{_count(ready, 'run')} ready, in {_count(len(rows), 'queue')}.", headers, data
    )


def worker_chart(board: figures.Dashboard) -> SafeString:
    """Return a chart of the live workers: the runs each executes, out of its slots."""
    rows = []
    for worker in board.workers:
        name, of = f"{worker.hostname}:{worker.pid}", f"{worker.in_flight} of {worker.concurrency}"
        bar = Bar(
            series="running",
            value=worker.in_flight,
            capacity=worker.concurrency,
            text=f"{name}: running {of}",
        )
        rows.append(_row(name, bar, note=", ".join(worker.queues)))
    chart = Chart(
        uid="durable-workers",
        title="Live workers: the runs each one executes, out of its concurrency",
        legend=(("running", "runs in flight, out of the worker's slots"),),
        rows=rows,
        empty="No worker is alive: no run will start or go on until one does.",
        notes=260,  # the queues a worker serves
    )
    busy = sum(worker.in_flight for worker in board.workers)
    data = [
        [
            w.id,
            ", ".join(w.queues),
            f"{w.in_flight} of {w.concurrency}",
            display.moment(w.last_seen_at, board.now),
        ]
        for w in board.workers
    ]
    headers = ["worker", "queues", "runs in flight", "last seen"]
    return _with_table(
        chart, f"{_count(len(rows), 'live worker')} running {_count(busy, 'run')}.", headers, data
    )


def failure_table(board: figures.Dashboard, site: admin.AdminSite) -> SafeString:
    """Return the last failures: a link to each run, its workflow, when, and its error."""
    if not board.failures:
        return format_html('<p class="durable-empty">{}</p>', "No run has failed.")
    rows = [
        [
            run_link(site, failure.run_id),
            failure.workflow,
            display.moment(failure.finished_at, board.now) if failure.finished_at else "-",
            failure.attempt,
            failure.error or "-",
        ]
        for failure in board.failures
    ]
    return html_table(["run", "workflow", "failed at", "attempt", "error"], rows)


def _row(label: str, bar: Bar, *, note: str, href: str = "") -> Row:
    return Row(label=label, bars=[bar], note=note, href=href)


def _with_table(
    chart: Chart, description: str, headers: list[str], data: Sequence[Sequence[object]]
) -> SafeString:
    """Return the chart, then its figures as a table (folded away); or its empty sentence."""
    svg = chart.svg(description)
    return svg + table(headers, data, "As a table") if data else svg


def _link(href: str, text: str) -> SafeString:
    return format_html('<a href="{}">{}</a>', href, text)


def _count(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _since(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else display.moment(moment, now)


def _age(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else display.format_duration((now - moment).total_seconds())
