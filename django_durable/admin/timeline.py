"""A run's timeline as SVG drawn on the server: an axis from the run's creation to its end
(or now), a row per operation (attempts as bars, waits hatched, instants as marks, children
as links), hover text on everything, then the same facts as a list. Every value passes
through ``format_html``: names come from user code."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import display
from ..core import serialization
from ..core.statuses import RunStatus, StepStatus
from ..models import Run, Step

WAITS = frozenset(("sleep", "event", "recv", "child_result", "gather", "first_of", "wait_callback"))
INSTANTS = frozenset(("value", "stream", "stream_many", "close_stream", "emit", "now", "uuid"))
INSTANTS |= {"random", "patch", "cancel_child", "child", "cancel", "callback"}
# Mid tones, readable on the admin's light and dark themes alike.
COLOURS = {"done": "#2f9e5b", "retried": "#e08a00", "failed": "#d63447", "waiting": "#3a7bd5"}
COLOURS |= {"instant": "#7952b3", "child": "#1f77b4", "unknown": "#8a8a8a"}
COLOURS["running"] = "#8fd3a8"  # an attempt not ended yet: a paler "done", its tooltip says so
OUTCOMES = {
    "done": "done",
    "retried": "failed, retried",
    "failed": "failed",
    "running": "running, not ended",
}
LEGEND = (
    ("bar", "done", "attempt that succeeded"),
    ("bar", "retried", "attempt that failed and was retried"),
    ("bar", "failed", "failed"),
    ("span", "waiting", "waiting or sleeping"),
    ("mark", "instant", "instant operation"),
    ("link", "child", "child run (a link)"),
)
WIDTH, LABELS, RIGHT = 1000, 300, 16  # the viewBox's width, the labels' column, a margin
NICE = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
NICE_SECONDS = tuple(n / 1000 for n in (1, 2, 5, 10, 20, 50, 100, 200, 500)) + NICE


@dataclasses.dataclass(frozen=True, slots=True)
class Shape:
    """One thing drawn in a row: a ``bar`` (an attempt), a ``span`` (a wait), a ``mark``."""

    form: str
    start: datetime
    end: datetime
    outcome: str  # a key of COLOURS
    text: str  # the hover text
    href: str = ""
    deadline: datetime | None = None
    open: bool = False  # goes on past the axis's end


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One operation: its label, its kind, and what to draw (a step: a bar per attempt)."""

    label: str
    kind: str
    shapes: list[Shape]

    @property
    def words(self) -> str:
        """Return the row in words, on one line: what every shape says, its name once."""
        lines = [line for shape in self.shapes for line in shape.text.split("\n")[1:]]
        return "; ".join([self.shapes[0].text.split("\n")[0], *lines])


@dataclasses.dataclass(frozen=True, slots=True)
class Reader:
    """Turns records into rows: it knows the run, the time, and where the run ends."""

    run: Run
    now: datetime
    end: datetime
    run_url: Callable[[str], str]
    finished: bool

    def clock(self, moment: datetime) -> str:
        """Return ``14:25:03.120``, with the date when it is not today's."""
        try:
            local, today = timezone.localtime(moment), timezone.localtime(self.now)
        except (OverflowError, ValueError):
            return moment.isoformat()
        text = f"{local:%H:%M:%S}.{local.microsecond // 1000:03d}"
        return text if local.date() == today.date() else f"{local:%d %b %Y} {text}"

    def between(self, start: datetime, end: datetime, open: bool = False) -> str:
        took = display.format_duration((end - start).total_seconds())
        return f"{took}: {self.clock(start)} → {'now' if open else self.clock(end)}"

    def rows(self, records: list[Step], cut: bool) -> list[Row]:
        """Return a row per record; a wait starts at the record before it (if it is shown)."""
        rows, since = [], None if cut else _moment(self.run.started_at or self.run.created_at)
        for step in records:
            label, recorded = f"#{step.position} {step.name or '-'}", _moment(step.recorded_at)
            head, recorded = f"{label} ({step.kind})", recorded or since or self.end
            if step.kind == "step":
                shapes = self.attempts(step, head, recorded)
            elif step.kind in WAITS:
                shapes = [self.wait(step, head, since or recorded, recorded)]
            else:
                shapes = [self.mark(step, head, recorded)]
            rows.append(Row(label, str(step.kind), shapes))
            since = recorded
        return rows

    def attempt(self, head: str, entry: dict[str, Any], of: Any, outcome: str) -> Shape:
        end, took = _moment(entry.get("at")) or self.end, entry.get("duration_ms")
        start = end  # an unknown, negative or absurd duration (NaN too) draws as a line
        if isinstance(took, int | float) and 0 <= took < 1e11 and end.year > 9:
            start = end - timedelta(milliseconds=took)
        took = self.between(start, end) if start < end else f"ended {self.clock(end)}"
        text = f"{head}\nattempt {entry.get('attempt', '?')} of {of}: {OUTCOMES[outcome]}\n{took}"
        return Shape("bar", start, end, outcome, text + _error_text(entry))

    def attempts(self, step: Step, head: str, recorded: datetime) -> list[Shape]:
        """Return a bar per attempt: the earlier ones are in the error's ``earlier``."""
        error = _decoded(step.error)
        error = error if isinstance(error, dict) else {}
        earlier = error["earlier"] if isinstance(error.get("earlier"), list) else []
        earlier = [e for e in earlier if isinstance(e, dict) and _moment(e.get("at"))]
        shapes = [self.attempt(head, e, step.attempts, "retried") for e in earlier]
        if step.status == StepStatus.RUNNING:  # began at its record, runs until now
            since = (self.end - recorded).total_seconds() * 1000
            now = {"at": self.end, "duration_ms": since, "attempt": step.attempts + 1}
            return [*shapes, self.attempt(head, now, step.attempts + 1, "running")]
        outcome = {"completed": "done", "retrying": "retried"}.get(step.status, "failed")
        last = {"at": recorded, "duration_ms": step.duration_ms, "attempt": step.attempts}
        if outcome != "done":
            last.update(type=error.get("type"), message=error.get("message"))
        return [*shapes, self.attempt(head, last, step.attempts, outcome)]

    def wait(self, step: Step, head: str, since: datetime, recorded: datetime) -> Shape:
        """Return a hatched span: a sleep from its record to its target, a wait from the
        record before it to its own (or to now, with its deadline, while it waits)."""
        result, end, deadline = _decoded(step.result), recorded, None
        if step.kind == "sleep":  # recorded when it starts; its result is its target
            since, deadline = recorded, _moment(result) or recorded
            end = max(recorded, min(deadline, self.end))
        elif step.status == StepStatus.WAITING:  # its result is a marker with the deadline
            since, end = min(recorded, self.end), self.end
            deadline = _moment(result.get("deadline")) if isinstance(result, dict) else None
        waiting = step.status == StepStatus.WAITING or bool(deadline and deadline > self.end)
        open, start, failed = waiting and not self.finished, min(since, end), step.status
        outcome = "waiting" if waiting else "failed" if failed == StepStatus.FAILED else "done"
        verb = ("sleeping", "slept") if step.kind == "sleep" else ("waiting for", "waited for")
        text = f"{head}\n{verb[not open]}{_waits_for(step)} {self.between(start, end, open)}"
        until = "\nwakes at " if step.kind == "sleep" else "\ntimes out at "
        text += (until + self.clock(deadline) if deadline else "") + _error_text(step.error)
        return Shape("span", start, end, outcome, text, "", deadline, open)

    def mark(self, step: Step, head: str, at: datetime) -> Shape:
        outcome, extra, href = "instant", "", ""
        if step.kind == "child":
            child = _decoded(step.result)
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                href = self.run_url(str(uuid.UUID(child)))
                outcome, extra = "child", f"\nstarted child run {child}"
        elif step.kind == "cancel":
            outcome, extra = "failed", "\nthe run was cancelled here"
        elif step.kind not in INSTANTS:
            outcome, extra = "unknown", "\na kind of record this page does not know"
        if step.status == StepStatus.FAILED:
            outcome, extra = "failed", _error_text(step.error)
        return Shape("mark", at, at, outcome, f"{head}\nat {self.clock(at)}{extra}", href)


def timeline(
    run: Run,
    steps: Iterable[Step],
    *,
    now: datetime,
    run_url: Callable[[str], str],
    more_url: str | None = None,
    limit: int = 200,
) -> SafeString:
    """Return a run's timeline: an SVG picture of its records, then the same as a list.

    ``steps`` are the run's records in position order (the newest ``limit`` are drawn);
    ``more_url`` links to all of them when it has more. It ends at the run's end, or ``now``.
    """
    records = list(steps)
    cut = more_url is not None or len(records) > limit
    records = records[max(0, len(records) - max(0, limit)) :]
    now = _moment(now) or timezone.now()
    finished = run.status in RunStatus.terminal()
    recorded = [m for m in (_moment(step.recorded_at) for step in records) if m]
    end = _moment(run.finished_at) or max(recorded, default=now) if finished else now
    reader = Reader(run, now, end, run_url, finished)
    rows = reader.rows(records, cut)
    shapes = [shape for row in rows for shape in row.shapes]
    first = reader.end if cut else _moment(run.created_at) or reader.end  # cut: no empty start
    start = min([first, *(shape.start for shape in shapes)])
    end = max([reader.end, start + timedelta(milliseconds=1), *(shape.end for shape in shapes)])
    uid = "durable-tl-" + re.sub(r"[^0-9A-Za-z]", "", str(run.pk))
    notice = f"Only the newest {_count(len(records), 'operation')} are shown." if cut else ""
    picture = Picture(uid, start, end, len(rows), notice)
    text = _describe(reader, shapes, len(rows), picture) + (f". {notice}" if notice else ".")
    svg = picture.svg(f"Timeline of run {run.pk}", text, rows, more_url)
    return format_html('<div class="durable-timeline">{}{}</div>', svg, _text(text, rows, more_url))


def _moment(value: Any) -> datetime | None:
    """Return an aware datetime from a datetime, a tagged document or ISO text, or None."""
    value = _decoded(value) if isinstance(value, dict) else value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = parse_datetime(value)
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if timezone.is_naive(value) else value


def _decoded(document: Any) -> Any:
    with contextlib.suppress(serialization.SerializationError, ValueError, TypeError):
        return serialization.from_document(document)
    return None


def _waits_for(step: Step) -> str:
    if step.kind in ("event", "recv"):
        return f" {'event' if step.kind == 'event' else 'a message on'} {step.name!r}"
    said = {"sleep": "", "child_result": f" child run {step.name}"}
    said |= {"first_of": f" the first of: {step.name}", "wait_callback": f" callback {step.name}"}
    return said.get(step.kind, f" {step.name}")


def _error_text(error: Any) -> str:
    if not isinstance(error, dict) or not (error.get("type") or error.get("message")):
        return ""
    return f"\n{error.get('type') or 'Error'}: {error.get('message') or ''}"


def _count(count: int, word: str, words: str = "") -> str:
    return f"{count} {word}" if count == 1 else f"{count} {words or word + 's'}"


def _describe(reader: Reader, shapes: list[Shape], count: int, picture: Picture) -> str:
    """Return the picture in a sentence: its size, retries, failures, the run's state."""
    run, took = reader.run, display.format_duration((picture.end - picture.start).total_seconds())
    retries = sum(shape.form == "bar" and shape.outcome == "retried" for shape in shapes)
    failed = sum(shape.outcome == "failed" for shape in shapes)
    state = RunStatus(run.status).label.lower() if run.status in RunStatus.values else run.status
    if run.status == RunStatus.WAITING and run.waiting_for:
        state = f"waiting for {run.waiting_for}"
    text = f"Timeline of run {run.pk}: {_count(count, 'operation')} over {took}"
    return f"{text}; {_count(retries, 'retry', 'retries')}; {failed} failed; {state}"


def _svg(template: str, *values: Any) -> SafeString:
    """Return ``format_html(template, ...)``, numbers with one decimal."""
    return format_html(template, *(f"{v:.1f}" if isinstance(v, float) else v for v in values))


def _join(parts: Iterable[SafeString | str]) -> SafeString:
    return format_html_join("", "{}", ((part,) for part in parts))


SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="{0}-title" '
    'aria-describedby="{0}-desc" width="{1}" height="{2}" viewBox="0 0 {1} {2}" '
    'font-size="{3}" fill="currentColor" style="display: block; max-width: 100%; height: auto">'
    '<title id="{0}-title">{4}</title><desc id="{0}-desc">{5}</desc>'
    '<defs><pattern id="{0}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="{7}" fill-opacity="0.15"/>'
    '<line x2="0" y2="6" stroke="{7}" stroke-width="2.4"/></pattern></defs>{6}</svg>'
)
ROW = '<g class="tl-row" data-kind="{}"><rect x="0" y="{}" width="{}" height="{}" '
ROW += 'fill="currentColor" fill-opacity="{}">{}</rect>{}{}{}</g>'
KIND = '<text x="{}" y="{}" text-anchor="end" dy="0.35em" fill-opacity="0.6">{}</text>'
TEXT = '<text x="{}" y="{}" text-anchor="{}" dy="0.35em">{}</text>'
TITLE = "<title>{}</title>"
HEADER = '<g class="tl-legend" font-size="11">{}</g><g class="tl-axis" font-size="11">{}</g>'
LINK = '<a href="{}" class="{}" fill="{}" text-decoration="underline">{}</a>'
TICK = '<line x1="{0}" x2="{0}" y1="50" y2="{1}" stroke="currentColor" stroke-opacity="0.15"/>'
DEADLINE = '<rect class="tl-deadline" x="{}" y="{}" width="2" height="{}" fill="{}"/>'
RECT = '<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{}" stroke="{}"/>'
CIRCLE = '<circle cx="{}" cy="{}" r="{}" fill="{}"/>'
MARK = '<path d="M{0} {1}l{2} {2} -{2} {2} -{2} -{2}z" fill="{3}"/>'
ARROW = '<path d="M{0} {1}l6 {2} -6 {2}z" fill="{3}"/>'
SHAPE = '<g class="tl-{}" data-outcome="{}">{}</g>'


@dataclasses.dataclass(frozen=True, slots=True)
class Picture:
    """Draws rows: time left to right from ``start`` to ``end``, thinner rows for many."""

    uid: str
    start: datetime
    end: datetime
    count: int  # rows
    notice: str

    def x(self, moment: datetime) -> float:
        fraction = (moment - self.start) / (self.end - self.start)
        return LABELS + min(1.0, max(0.0, fraction)) * (WIDTH - LABELS - RIGHT)

    def y(self, index: int) -> float:
        return 56 + (22 if self.notice else 0) + index * (14 if self.count > 40 else 24)

    def ticks(self) -> list[tuple[float, str]]:
        """Return a few ``(x, label)`` at round local times."""
        span = (self.end - self.start).total_seconds()
        step = next((s for s in NICE_SECONDS if span / s <= 6), math.ceil(span / 432000) * 86400)
        offset = (timezone.localtime(self.start).utcoffset() or timedelta()).total_seconds()
        first = math.ceil((self.start.timestamp() + offset) / step) * step - offset
        shape = "%H:%M:%S.%f" if step < 1 else "%H:%M:%S" if step < 60 else "%H:%M"
        shape = "%d %b" if step >= 86400 else shape
        ticks = []
        with contextlib.suppress(OverflowError, ValueError, OSError):
            for moment in (datetime.fromtimestamp(first + i * step, UTC) for i in range(8)):
                label = timezone.localtime(moment).strftime(shape).removesuffix("000")
                ticks += [(self.x(moment), label)] if moment <= self.end else []
        return ticks

    def svg(self, title: str, desc: str, rows: list[Row], more_url: str | None) -> SafeString:
        """Return the picture: the legend, the axis, what is left out (with a link), the rows."""
        parts = [self.header()]
        if self.notice:  # the link flows on in the same line of text
            words = _svg("<tspan>{}</tspan>", "See all operations")
            link = _svg(LINK, more_url, "tl-more", COLOURS["child"], words) if more_url else ""
            parts.append(_svg(TEXT, 8, 64, "start", format_html("↑ {} {}", self.notice, link)))
        parts += [self.row(i, row) for i, row in enumerate(rows)]
        height = f"{self.y(len(rows)) + (28 if len(rows) > 25 else 8):.0f}"
        font, body = 10 if self.count > 40 else 12, _join(parts)
        return _svg(SVG, self.uid, WIDTH, height, font, title, desc, body, COLOURS["waiting"])

    def header(self) -> SafeString:
        """Return the legend, the date, the ticks' lines and labels (again below many rows)."""
        bottom, local, legend, x = self.y(self.count), timezone.localtime(self.start), [], 8.0
        for form, outcome, text in LEGEND:
            swatch = self.figure(form, x, x + 14, 8, 12, COLOURS[outcome])
            label = _svg(TEXT, x + 20, 14, "start", text)
            legend.append(_svg("<g>{}{}{}</g>", _svg(TITLE, text), swatch, label))
            x += 34 + len(text) * 5.8
        date = f"{local:%d %b %Y}, {timezone.get_current_timezone_name()} time"
        parts = [_svg('<g fill-opacity="0.7">{}</g>', _svg(TEXT, 8, 42, "start", date))]
        for x, tick in self.ticks():
            parts.append(_svg(TICK, x, bottom))
            for y in (42, bottom + 14) if self.count > 25 else (42,):
                parts.append(_svg(TEXT, x, y, "middle", tick))
        return _svg(HEADER, _join(legend), _join(parts))

    def row(self, index: int, row: Row) -> SafeString:
        """Return a row: its band (with the row in words), its name, its kind, its shapes."""
        y, href = self.y(index), row.shapes[-1].href
        height, middle = self.y(index + 1) - y, (self.y(index + 1) + y) / 2
        room = int((LABELS - 30) / ((10 if self.count > 40 else 12) * 0.56) - len(row.kind))
        name = row.label if len(row.label) <= room else row.label[: max(1, room - 1)] + "…"
        label = _svg(TEXT, 8, middle, "start", _join([_svg(TITLE, row.label), name]))
        label = _svg(LINK, href, "tl-child", COLOURS["child"], label) if href else label
        kind = _svg(KIND, LABELS - 12, middle, row.kind)
        shapes = _join(self.shape(shape, y, height) for shape in row.shapes)
        shade, words = 0.04 if index % 2 else 0.0, _svg(TITLE, row.words)
        return _svg(ROW, row.kind, y, WIDTH, height, shade, words, label, kind, shapes)

    def figure(self, form: str, x1: float, x2: float, y: float, h: float, fill: str) -> SafeString:
        """Return a bar, a hatched span, a mark (a diamond) or a child's (a circle)."""
        if form == "mark":
            r = h / 2 + 1
            return _svg(MARK, x1, y + h / 2 - r, r, fill)
        if form == "link":  # a child run: a round mark, unlike the other instants
            return _svg(CIRCLE, x1, y + h / 2, h / 2 - 0.5, fill)
        paint = f"url(#{self.uid}-hatch)" if form == "span" else fill
        return _svg(RECT, x1, y, max(x2 - x1, 3.0), h, paint, fill)

    def shape(self, shape: Shape, y: float, height: float) -> SafeString:
        """Return a shape with its hover text, deadline, an arrow if it goes on; linked if any."""
        x1, x2, pad = self.x(shape.start), self.x(shape.end), height * 0.2
        done_wait = shape.form == "span" and shape.outcome == "done"  # blue, as in the legend
        colour = COLOURS["waiting" if done_wait else shape.outcome]
        form = "link" if shape.href else shape.form
        figure = self.figure(form, x1, x2, y + pad, height - 2 * pad, colour)
        parts = [_svg(TITLE, shape.text), figure]
        deadline = shape.deadline if shape.deadline != shape.end else None  # woke on time
        if deadline and self.start <= deadline <= self.end:  # passed, and the run slept on
            parts.append(_svg(DEADLINE, self.x(deadline) - 1, y + 1, height - 2, COLOURS["failed"]))
        if shape.open:
            parts.append(_svg(ARROW, max(x2, x1 + 2), y + pad, height / 2 - pad, colour))
        element = _svg(SHAPE, shape.form, shape.outcome, _join(parts))
        return _svg('<a href="{}">{}</a>', shape.href, element) if shape.href else element


def _text(summary: str, rows: list[Row], more_url: str | None) -> SafeString:
    """Return the same facts as the picture, as a list: for screen readers, search, copying."""
    link = ' <a href="{}">Open the child run</a>'
    pairs = ((row.words, row.shapes[-1].href) for row in rows)
    items = [(words, format_html(link, href) if href else "") for words, href in pairs]
    more = format_html(' <a href="{}">See all operations</a>', more_url) if more_url else ""
    details = '<details class="durable-timeline-text"><summary>The timeline as text</summary>'
    details += "<p>{}{}</p><ol>{}</ol></details>"
    return format_html(details, summary, more, format_html_join("", "<li>{}{}</li>", items))
