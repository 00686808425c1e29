"""The steps table of a run's admin page: paginated, writes folded away, bookkeeping hidden.

A run may record thousands of operations: the page shows one page of them (no 2 MB page for a
900-step run). Value and stream writes are folded away unless asked for; the internal marker
of a wait (its deadline and event floor) is never shown as a result, but said in words; and
every failed attempt's error is readable, not only the last.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib import admin
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, QueryDict
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import display
from ..core import serialization
from ..core.conf import get_settings
from ..exceptions import SerializationError
from ..models import Run, Step, StepStatus
from .base import html_table, when

PER_PAGE = 50
# Operations shown only when asked for: what a run published, one row per write.
WRITES = ("value", "stream", "stream_many", "close_stream")
WAITS = ("event", "recv", "child_result", "gather")


@dataclasses.dataclass(frozen=True, slots=True)
class StepsTable:
    """One page of a run's steps, rendered, with what the links need."""

    html: SafeString
    page: Page[Step]
    folded: int  # writes hidden from this run's operations
    all_shown: bool


def steps_table(site: admin.AdminSite, run: Run, request: HttpRequest) -> StepsTable:
    """Return the page of the run's steps that ``request`` asks for (``steps``, ``writes``)."""
    rows = Step.objects.using(get_settings().DATABASE).filter(run=run).order_by("position")
    all_shown = request.GET.get("writes") == "1"
    folded = 0 if all_shown else rows.filter(kind__in=WRITES).count()
    if not all_shown:
        rows = rows.exclude(kind__in=WRITES)
    page = Paginator(rows, PER_PAGE).get_page(request.GET.get("steps"))
    headers = ("#", "operation", "name", "status", "attempts", "duration", "recorded", "outcome")
    body = [_row(site, step) for step in page.object_list]
    table = html_table(headers, body)
    html = format_html("{}{}", table, _pager(request.GET, page, folded, all_shown))
    return StepsTable(html=html, page=page, folded=folded, all_shown=all_shown)


def _row(site: admin.AdminSite, step: Step) -> tuple[Any, ...]:
    duration = "" if step.duration_ms is None else display.format_duration(step.duration_ms / 1000)
    return (
        step.position,
        step.kind,
        step.name,
        step.status,
        display.attempts_text(step),
        duration,
        when(step.recorded_at),
        _outcome(site, step),
    )


def _outcome(site: admin.AdminSite, step: Step) -> SafeString:
    """Return what the operation came to, in words: never the internal marker of a wait."""
    errors = _errors(step)
    if step.status == StepStatus.WAITING:
        marker = _decoded(step.result)
        deadline = marker.get("deadline") if isinstance(marker, dict) else None
        said = f"waiting, times out {display.moment(deadline)}" if deadline else "waiting"
        return format_html("{}{}", said, errors)
    if step.status == StepStatus.RUNNING:
        return format_html(
            "began {}, not ended: its worker runs it, or was lost in it and the next one "
            "runs it again{}",
            display.moment(step.recorded_at),
            errors,
        )
    if step.status in (StepStatus.FAILED, StepStatus.RETRYING):
        return errors
    result = _decoded(step.result)
    if step.kind == "child" and isinstance(result, str):
        url = reverse(f"{site.name}:django_durable_run_change", args=[result])
        return format_html('<a href="{}">child run {}</a>{}', url, result, errors)
    if step.kind == "sleep" and result is not None and not isinstance(result, str):
        return format_html("until {}{}", display.clock(result), errors)
    return format_html("<code>{}</code>{}", display.preview(step.result, 100), errors)


def _errors(step: Step) -> SafeString:
    """Return the step's error and every earlier attempt's, oldest first ("" if none)."""
    error = step.error or {}
    attempts = [*error.get("earlier", [])]
    if error.get("type"):
        attempts.append({**error, "attempt": step.attempts})
    if not attempts:
        return SafeString("")
    lines = format_html_join(
        "",
        "<li>attempt {}: {}: {}</li>",
        (
            (a.get("attempt", "?"), str(a.get("type", "")).rsplit(".", 1)[-1], a.get("message"))
            for a in attempts
        ),
    )
    last = attempts[-1]
    summary = f"{str(last.get('type', '')).rsplit('.', 1)[-1]}: {last.get('message', '')}"
    if len(attempts) == 1 and error.get("type"):
        return format_html('<span class="errornote-inline">{}</span>', summary)
    return format_html(
        "<details><summary>{} failed {}</summary><ol>{}</ol></details>",
        len([a for a in attempts if a.get("type")]),
        "attempt" if len(attempts) == 1 else "attempts",
        lines,
    )


def _decoded(document: Any) -> Any:
    try:
        return serialization.from_document(document)
    except SerializationError:
        return display.UNREADABLE


def _pager(query: QueryDict, page: Page[Step], folded: int, all_shown: bool) -> SafeString:
    links = []
    if page.has_previous():
        links.append(_link(query, "steps", page.previous_page_number(), "← earlier"))
    if page.paginator.num_pages > 1:
        links.append(
            format_html(
                "operations {} to {} of {}",
                page.start_index(),
                page.end_index(),
                page.paginator.count,
            )
        )
    if page.has_next():
        links.append(_link(query, "steps", page.next_page_number(), "later →"))
    if folded:
        links.append(_link(query, "writes", "1", f"show the {folded} value and stream writes"))
    elif all_shown:
        links.append(_link(query, "writes", None, "fold value and stream writes"))
    return format_html("<p>{}</p>", format_html_join(" · ", "{}", ((link,) for link in links)))


def _link(query: QueryDict, name: str, value: Any, label: str) -> SafeString:
    params = query.copy()
    params.pop(name, None)
    if value is not None:
        params[name] = str(value)
    if name == "writes":
        params.pop("steps", None)
    return format_html('<a href="?{}">{}</a>', params.urlencode(), label)
