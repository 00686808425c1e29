"""Small horizontal bar charts as SVG drawn on the server, for the dashboard: a row per
thing (a workflow, a queue, a worker), one bar per series in it, the figure at the end of
each bar, hover text on everything, a legend, and the same figures as a table next to it.

Every value passes through ``format_html``: workflow and queue names come from user code.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

# Mid tones, readable on the admin's light and dark themes alike (as the timeline's).
COLOURS = {
    "started": "#3a7bd5",
    "completed": "#2f9e5b",
    "failed": "#d63447",
    "waiting": "#b58105",
    "ready": "#7952b3",
    "running": "#0d6efd",
}
WIDTH, LABELS = 520, 170  # the viewBox's width (a wide chart adds its notes'), the labels'
NAME_CHARS = 25  # of a row's label (all of it on hover)
BAR, GAP, PAD = 10, 2, 8  # a bar's height, between bars of a row, between rows
MAX_ROWS = 20


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One bar: its series (a key of COLOURS), its figure, and its hover text."""

    series: str
    value: int
    text: str
    capacity: int | None = None  # drawn as a track behind the bar (a worker's slots)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One thing charted: its name, its bars, and a note after them (a lag, an age)."""

    label: str
    bars: Sequence[Bar]
    note: str = ""
    href: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    """A chart: what it shows (its title), the series of its legend, its rows."""

    uid: str
    title: str
    legend: Sequence[tuple[str, str]]  # (series, label)
    rows: Sequence[Row]
    empty: str  # said instead of a chart without rows
    notes: int = 110  # the width of the notes' column (a wider one widens the chart)

    @property
    def width(self) -> int:
        return WIDTH + max(0, self.notes - 110)

    def svg(self, description: str) -> SafeString:
        """Return the chart as SVG, or its ``empty`` sentence when it has no rows."""
        if not self.rows:
            return format_html('<p class="durable-empty">{}</p>', self.empty)
        rows = list(self.rows)[:MAX_ROWS]
        scale = max([1, *(bar.capacity or bar.value for row in rows for bar in row.bars)])
        body, y = [self.legend_svg()], 28.0
        for row in rows:
            body.append(self.row_svg(row, y, scale))
            y += len(row.bars) * (BAR + GAP) - GAP + PAD * 2
        height = f"{y:.0f}"
        uid = re.sub(r"[^0-9A-Za-z-]", "", self.uid)
        return _svg(SVG, uid, self.width, height, self.title, description, _join(body))

    def legend_svg(self) -> SafeString:
        parts, x = [], 0.0
        for series, label in self.legend:
            swatch = _svg(SWATCH, x, COLOURS[series])
            parts.append(_svg("<g>{}{}</g>", swatch, _svg(TEXT, x + 16, 12, "start", label)))
            x += 28 + len(label) * 6.5
        return _svg('<g class="durable-legend">{}</g>', _join(parts))

    def row_svg(self, row: Row, y: float, scale: int) -> SafeString:
        """Return a row: its label (a link when it has one), its bars, its note."""
        height = len(row.bars) * (BAR + GAP) - GAP
        middle = y + PAD + height / 2
        name = row.label if len(row.label) <= NAME_CHARS else row.label[: NAME_CHARS - 1] + "…"
        label = _svg(TEXT, 0, middle, "start", _join([_svg(TITLE, row.label), name]))
        if row.href:
            label = _svg(LINK, row.href, label)
        bars = [
            self.bar_svg(bar, y + PAD + i * (BAR + GAP), scale) for i, bar in enumerate(row.bars)
        ]
        note = _svg(TEXT, self.width, middle, "end", row.note) if row.note else ""
        line = _svg(RULE, y + height + PAD * 2, self.width)
        return _svg(ROW, _join([label, *bars, note, line]))

    def bar_svg(self, bar: Bar, y: float, scale: int) -> SafeString:
        """Return a bar from the labels' column, its figure just past its end."""
        room = WIDTH - LABELS - 150  # the notes' column, and the figure past the longest bar
        width = room * bar.value / scale
        width = max(width, 2.0) if bar.value else 0.0
        parts = [_svg(TITLE, bar.text)]
        if bar.capacity:
            parts.append(_svg(TRACK, LABELS, y, room * bar.capacity / scale, BAR))
        parts.append(_svg(RECT, LABELS, y, width, BAR, COLOURS[bar.series]))
        figure = f"{bar.value:,}" + (f" of {bar.capacity:,}" if bar.capacity else "")
        parts.append(_svg(FIGURE, LABELS + width + 4, y + BAR / 2, figure))
        return _svg(BAR_GROUP, bar.series, _join(parts))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], caption: str) -> SafeString:
    """Return the figures of a chart as a table, folded away: for screen readers, copying."""
    head = format_html_join("", '<th scope="col">{}</th>', ((header,) for header in headers))
    cells = (format_html_join("", "<td>{}</td>", ((cell,) for cell in row)) for row in rows)
    body = format_html_join("", "<tr>{}</tr>", ((cell,) for cell in cells))
    return format_html(
        '<details class="durable-figures"><summary>{}</summary><table><thead><tr>{}</tr>'
        "</thead><tbody>{}</tbody></table></details>",
        caption,
        head,
        body,
    )


def _svg(template: str, *values: object) -> SafeString:
    """Return ``format_html(template, ...)``, numbers with one decimal."""
    return format_html(template, *(f"{v:.1f}" if isinstance(v, float) else v for v in values))


def _join(parts: Iterable[SafeString | str]) -> SafeString:
    return format_html_join("", "{}", ((part,) for part in parts))


SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="{0}-title" '
    'aria-describedby="{0}-desc" width="{1}" height="{2}" viewBox="0 0 {1} {2}" '
    'font-size="12" fill="currentColor" class="durable-chart">'
    '<title id="{0}-title">{3}</title><desc id="{0}-desc">{4}</desc>{5}</svg>'
)
TEXT = '<text x="{}" y="{}" text-anchor="{}" dy="0.35em">{}</text>'
TITLE = "<title>{}</title>"
LINK = '<a href="{}" class="durable-chart-link">{}</a>'
SWATCH = '<rect x="{}" y="6" width="12" height="12" rx="2" fill="{}"/>'
ROW = '<g class="durable-row">{}</g>'
RULE = '<line x1="0" x2="{1}" y1="{0}" y2="{0}" stroke="currentColor" stroke-opacity="0.12"/>'
BAR_GROUP = '<g class="durable-bar" data-series="{}">{}</g>'
TRACK = (
    '<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="currentColor" fill-opacity="0.12"/>'
)
RECT = '<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{}"/>'
FIGURE = '<text x="{}" y="{}" dy="0.35em" font-size="11">{}</text>'
