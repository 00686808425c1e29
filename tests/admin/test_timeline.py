"""The run page's timeline: an SVG picture of a run's records, drawn on the server.

Unit tests on unsaved rows (one on saved rows, on both databases), asserting on the parsed
SVG: it must be well-formed XML. A slow test renders two realistic pictures into a page
styled by the admin's own CSS and screenshots them in headless Chromium into
``build/screenshots/timeline-*.png``.
"""

from __future__ import annotations

import math
import os
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib import admin
from django.utils import timezone

from django_durable.admin.timeline import timeline
from django_durable.models import Run, Step

NS = "{http://www.w3.org/2000/svg}"
NOW = datetime(2025, 12, 6, 14, 30, tzinfo=UTC)
START = NOW - timedelta(minutes=10)
CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def tagged(moment: datetime) -> dict[str, str]:
    return {"__durable__": "datetime", "v": moment.isoformat()}


def run_url(run_id: str) -> str:
    return f"/admin/django_durable/run/{run_id}/change/"


def make_run(**fields) -> Run:
    values = {
        "workflow_name": "shop.checkout",
        "status": "completed",
        "created_at": START,
        "started_at": at(1),
        "finished_at": at(500),
    }
    return Run(**{**values, **fields})


def record(position: int, kind: str, name: str, seconds: float, **fields) -> Step:
    values = {"status": "completed", "attempts": 1, "recorded_at": at(seconds)}
    return Step(position=position, kind=kind, name=name, **{**values, **fields})


def failure(attempt: int, message: str, ended: float, took: float) -> dict:
    return {
        "attempt": attempt,
        "type": "shop.PaymentDeclined",
        "message": message,
        "at": tagged(at(ended)),
        "duration_ms": took,
    }


CHILDREN = [str(uuid.UUID(int=n << 64 | 0x7000 << 48)) for n in (1, 2)]


def realistic() -> tuple[Run, list[Step]]:
    """A waiting checkout: retries, a sleep, two children, and an event wait."""
    run = make_run(status="waiting", finished_at=None, waiting_for="event 'order.approved'")
    charge_error = {
        "earlier": [
            failure(1, "card declined: insufficient funds", 14, 1800),
            failure(2, "gateway timeout after 30 s", 75, 30_000),
        ]
    }
    steps = [
        record(0, "now", "now", 1.2),
        record(1, "step", "reserve_stock", 3.5, duration_ms=2300),
        record(2, "value", "progress", 3.6),
        record(3, "step", "charge_card", 140, attempts=3, duration_ms=4100, error=charge_error),
        record(4, "sleep", "cool_off", 140.1, result=tagged(at(200))),
        record(5, "child", "shop.pick_items", 201, result=CHILDREN[0]),
        record(6, "child", "shop.print_label", 201.2, result=CHILDREN[1]),
        record(7, "gather", "2 child runs", 330),
        record(8, "emit", "order.ready", 330.5),
        record(9, "step", "notify_customer", 333, duration_ms=2400),
        record(10, "random", "random", 333.2),
    ]
    marker = {"deadline": tagged(NOW + timedelta(hours=2)), "floor": 17}
    steps.append(record(11, "event", "order.approved", 334, status="waiting", result=marker))
    return run, steps


def long_run(count: int = 250) -> tuple[Run, list[Step]]:
    """A finished import of ``count`` operations: batches (a few retried), waits for the
    next file, progress values."""
    run, steps, clock = make_run(workflow_name="import.catalogue"), [], 2.0
    for position in range(count):
        name, took = f"load_batch_{position}", 0.5 + (position * 7 % 5) * 0.3
        if position % 37 == 5:  # deadlocked once, retried two seconds later
            failed = clock + 1.5
            clock = failed + 2 + took
            error = {"earlier": [failure(1, "deadlock detected", failed, 1500)]}
            fields = {"attempts": 2, "duration_ms": took * 1000, "error": error}
            steps.append(record(position, "step", name, clock, **fields))
        elif position % 25 == 0:
            clock += 15
            steps.append(record(position, "recv", "files", clock))
        elif position % 10 == 3:
            clock += 0.05
            steps.append(record(position, "value", "progress", clock))
        else:
            clock += took + 0.1
            steps.append(record(position, "step", name, clock, duration_ms=took * 1000))
    run.finished_at = at(clock + 1)
    return run, steps


def draw(run: Run, steps: list[Step], **options) -> tuple[str, ET.Element]:
    """Return the fragment and its parsed SVG (the fragment must be well-formed XML)."""
    html = str(timeline(run, steps, now=NOW, run_url=run_url, **options))
    root = ET.fromstring(html)
    assert root.tag == "div"
    svg = root.find(f"{NS}svg")
    assert svg is not None
    return html, svg


def with_class(svg: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in svg.iter() if name in (el.get("class") or "").split()]


def outcomes(svg: ET.Element, form: str) -> list[str]:
    return [el.get("data-outcome", "") for el in with_class(svg, f"tl-{form}")]


def hover(element: ET.Element) -> str:
    title = element.find(f"{NS}title")
    assert title is not None, ET.tostring(element)
    return title.text or ""


# --- what is drawn -----------------------------------------------------------------------


def test_a_realistic_run_draws_bars_segments_spans_marks_and_links():
    run, steps = realistic()
    html, svg = draw(run, steps)
    assert len(with_class(svg, "tl-row")) == len(steps)
    # reserve_stock, charge_card's three attempts, notify_customer.
    assert outcomes(svg, "bar") == ["done", "retried", "retried", "done", "done"]
    # The sleep (over), the gather (over), the event (still waiting).
    assert outcomes(svg, "span") == ["done", "done", "waiting"]
    assert outcomes(svg, "mark") == ["instant", "instant", "child", "child", "instant", "instant"]
    for child in CHILDREN:  # the mark and the row's name both link to the child's page
        links = [a for a in svg.iter(f"{NS}a") if a.get("href") == run_url(child)]
        assert len(links) == 2
    assert 'class="tl-deadline"' not in html  # the sleep woke on time; the event's is later


def test_every_drawn_element_has_hover_text():
    run, steps = realistic()
    _, svg = draw(run, steps)
    shapes = [*with_class(svg, "tl-bar"), *with_class(svg, "tl-span"), *with_class(svg, "tl-mark")]
    assert len(shapes) == 14
    for shape in shapes:
        assert hover(shape).startswith("#")
    for row in with_class(svg, "tl-row"):
        assert hover(row.find(f"{NS}rect")).startswith("#")  # the band: the row in words
    charge = [hover(bar) for bar in with_class(svg, "tl-bar") if "charge_card" in hover(bar)]
    assert charge[0].splitlines() == [
        "#3 charge_card (step)",
        "attempt 1 of 3: failed, retried",
        "1.8s: 14:20:12.200 → 14:20:14.000",
        "shop.PaymentDeclined: card declined: insufficient funds",
    ]
    assert charge[2].splitlines()[1:3] == [
        "attempt 3 of 3: done",
        "4.1s: 14:22:15.900 → 14:22:20.000",
    ]


def test_the_picture_is_an_image_with_a_title_a_description_and_a_text_list():
    run, steps = realistic()
    html, svg = draw(run, steps)
    assert svg.get("role") == "img"
    title = svg.find(f"{NS}title")
    desc = svg.find(f"{NS}desc")
    assert svg.get("aria-labelledby") == title.get("id")
    assert svg.get("aria-describedby") == desc.get("id")
    assert title.text == f"Timeline of run {run.pk}"
    assert desc.text == (
        f"Timeline of run {run.pk}: 12 operations over 10m 00s; 2 retries; 0 failed; "
        "waiting for event 'order.approved'."
    )
    assert svg.get("viewBox") == f"0 0 1000 {svg.get('height')}" and svg.get("width") == "1000"
    items = ET.fromstring(html).findall("details/ol/li")
    assert len(items) == len(steps)
    assert items[3].text == (  # every attempt, the name once
        "#3 charge_card (step); attempt 1 of 3: failed, retried; 1.8s: 14:20:12.200 → "
        "14:20:14.000; shop.PaymentDeclined: card declined: insufficient funds; attempt 2 of 3: "
        "failed, retried; 30.0s: 14:20:45.000 → 14:21:15.000; shop.PaymentDeclined: gateway "
        "timeout after 30 s; attempt 3 of 3: done; 4.1s: 14:22:15.900 → 14:22:20.000"
    )
    assert [a.get("href") for a in items[5].iter("a")] == [run_url(CHILDREN[0])]


def test_a_step_is_drawn_from_its_end_minus_its_duration():
    run = make_run(finished_at=at(100))
    _, svg = draw(run, [record(0, "step", "slow", 75, duration_ms=50_000)])
    rect = with_class(svg, "tl-bar")[0].find(f"{NS}rect")
    plot = 1000 - 300 - 16  # the viewBox's width less the labels and the margin
    assert float(rect.get("x")) == pytest.approx(300 + plot * 0.25, abs=0.1)
    assert float(rect.get("width")) == pytest.approx(plot * 0.5, abs=0.1)


def test_a_failed_step_shows_its_error_and_a_retrying_one_its_attempts():
    error = {"type": "KeyError", "message": "'sku'", "earlier": [failure(1, "busy", 5, 100)]}
    failed = record(
        0, "step", "price", 10, status="failed", attempts=2, duration_ms=90, error=error
    )
    _, svg = draw(make_run(status="failed"), [failed])
    assert outcomes(svg, "bar") == ["retried", "failed"]
    assert hover(with_class(svg, "tl-bar")[1]).endswith("\nKeyError: 'sku'")
    retrying = record(0, "step", "price", 10, status="retrying", duration_ms=90, error=error)
    _, svg = draw(make_run(status="waiting", finished_at=None), [retrying])
    assert outcomes(svg, "bar") == ["retried", "retried"]


def test_a_wait_starts_at_the_record_before_it_and_a_waiting_one_ends_now():
    run = make_run(status="waiting", finished_at=None)
    marker = {"deadline": tagged(NOW + timedelta(minutes=5)), "floor": 987654321}
    steps = [
        record(0, "step", "ask", 60, duration_ms=10),
        record(1, "recv", "reply", 120),
        record(2, "event", "approved", 180, status="waiting", result=marker),
    ]
    html, svg = draw(run, steps)
    received, waiting = with_class(svg, "tl-span")
    assert "waited for a message on 'reply' 1m 00s: 14:21:00.000 → 14:22:00.000" in hover(received)
    text = hover(waiting)
    assert "waiting for event 'approved' 7m 00s: 14:23:00.000 → now" in text
    assert text.endswith("times out at 14:35:00.000")
    assert waiting.find(f"{NS}path") is not None  # the arrow: it goes on
    assert "987654321" not in html and "floor" not in html  # the marker is not a result
    assert 'class="tl-deadline"' not in html


def test_a_deadline_that_passed_is_marked():
    run = make_run(status="waiting", finished_at=None)
    marker = {"deadline": tagged(at(300)), "floor": 0}
    _, svg = draw(run, [record(0, "event", "approved", 100, status="waiting", result=marker)])
    (span,) = with_class(svg, "tl-span")
    (deadline,) = with_class(span, "tl-deadline")
    assert float(deadline.get("x")) == pytest.approx(300 + 684 / 2 - 1, abs=0.1)


def test_times_are_local():
    run, steps = realistic()
    with timezone.override("Asia/Kolkata"):  # UTC+05:30
        _, svg = draw(run, steps)
    labels = [t.text for t in with_class(svg, "tl-axis")[0].iter(f"{NS}text")]
    assert labels[0] == "06 Dec 2025, Asia/Kolkata time"
    assert labels[1:] == ["19:50", "19:52", "19:54", "19:56", "19:58", "20:00"]
    assert "19:52:20.000" in hover(with_class(svg, "tl-bar")[3])


# --- escaping and size -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "<script>alert('x')</script>",
        "say \"hi\" & 'bye' </title></svg><b>",
        "&amp; &lt;not an entity&gt; &#x27;",
        "a" * 200,
    ],
)
def test_names_are_escaped_and_come_back_as_they_were(name):
    child = CHILDREN[0]
    run = make_run(workflow_name=name)
    steps = [
        record(0, "step", name, 10, duration_ms=5, status="failed", error={"message": name}),
        record(1, "event", name, 20),
        record(2, "child", name, 30, result=child),
        record(3, name[:16], name, 40),
    ]
    html, svg = draw(run, steps)
    assert "<script>" not in html and "</title></svg><b>" not in html
    texts = [hover(el) for el in svg.iter() if el.find(f"{NS}title") is not None]
    assert any(text.startswith(f"#0 {name} (step)") and text.endswith(name) for text in texts)
    assert any(text == f"#1 {name}" for text in texts)  # the label's own hover: full name
    labels = [t for t in svg.iter(f"{NS}text") if t.find(f"{NS}title") is not None]
    assert all(len("".join(t.itertext())) - len(hover(t)) <= 50 for t in labels)  # cut to fit


def test_only_the_newest_200_are_drawn_with_a_link_to_the_rest():
    run, steps = long_run(250)
    html, svg = draw(run, steps[-200:], more_url="/admin/steps/?run=1&amp=2")
    rows = with_class(svg, "tl-row")
    assert len(rows) == 200
    assert hover(rows[0].find(f"{NS}rect")).startswith("#50 ")
    more = with_class(svg, "tl-more")
    assert [a.get("href") for a in more] == ["/admin/steps/?run=1&amp=2"]
    assert "Only the newest 200 operations are shown." in svg.find(f"{NS}desc").text
    assert '<a href="/admin/steps/?run=1&amp;amp=2">See all operations</a>' in html
    # More than the limit and no link: cut all the same, and said so.
    _, svg = draw(run, steps)
    assert len(with_class(svg, "tl-row")) == 200 and not with_class(svg, "tl-more")
    assert "Only the newest 200" in "".join(svg.itertext())
    # The picture grows in height, not in width.
    width, height = map(float, svg.get("viewBox").split()[2:])
    assert width == 1000 and height > 200 * 14


# --- odd data --------------------------------------------------------------------------

ODD = {
    "no steps": (make_run(), []),
    "no start, no creation": (
        make_run(status="pending", created_at=None, started_at=None, finished_at=None),
        [record(0, "now", "now", 3)],
    ),
    "no duration": (make_run(), [record(0, "step", "old", 10, duration_ms=None)]),
    "absurd durations": (
        make_run(),
        [
            record(0, "step", "nan", 10, duration_ms=math.nan),
            record(1, "step", "inf", 10, duration_ms=math.inf),
            record(2, "step", "huge", 10, duration_ms=1e300),
            record(3, "step", "negative", 10, duration_ms=-5),
        ],
    ),
    "unknown kind": (make_run(), [record(0, "teleport", "x", 5, result={"a": 1})]),
    "clock skew": (
        make_run(started_at=at(50), finished_at=at(20)),
        [
            record(0, "step", "before creation", -30, duration_ms=1000),
            record(1, "event", "before the step", -40),
            record(2, "sleep", "backwards", 10, result=tagged(at(5))),
            record(
                3,
                "step",
                "late earlier",
                12,
                attempts=2,
                duration_ms=3,
                error={"earlier": [failure(1, "x", 90, 10)]},
            ),
        ],
    ),
    "identical times": (
        make_run(created_at=NOW, started_at=NOW, finished_at=NOW),
        [record(0, "step", "a", 600, duration_ms=0), record(1, "event", "b", 600)],
    ),
    "garbage documents": (
        make_run(status="no such status"),
        [
            record(0, "step", "a", 5, status="???", error="oops"),
            record(1, "step", "b", 6, error={"earlier": [1, None, {"at": "never"}, {}]}),
            record(1, "step", "b2", 6, error={"earlier": 5, "type": 7, "message": None}),
            record(2, "sleep", "c", 7, result={"__durable__": "datetime", "v": "2025-13-45"}),
            record(3, "child", "d", 8, result={"not": "an id"}),
            record(4, "child", "e", 9, result="not a uuid"),
            record(5, "event", "f", 9, status="waiting", result=[1, 2]),
            record(6, "cancel", "cancel", 9, result=None),
            record(7, "gather", "g", 9, recorded_at=None),
        ],
    ),
    "naive times": (
        make_run(created_at=datetime(2025, 12, 6, 14, 0), finished_at=datetime(2025, 12, 6, 15)),
        [record(0, "step", "a", 5, recorded_at=datetime(2025, 12, 6, 14, 10), duration_ms=5)],
    ),
    "years apart": (
        make_run(created_at=datetime(1, 1, 1, tzinfo=UTC), finished_at=NOW),
        [record(0, "sleep", "forever", 5, result=tagged(datetime(9999, 12, 31, tzinfo=UTC)))],
    ),
}


@pytest.mark.parametrize("case", list(ODD))
def test_odd_data_draws_a_picture(case):
    run, steps = ODD[case]
    _, svg = draw(run, steps)
    assert len(with_class(svg, "tl-row")) == len(steps)
    assert svg.find(f"{NS}desc").text.startswith(f"Timeline of run {run.pk}:")
    for element in svg.iter():
        for name in ("x", "y", "width", "height", "x1", "x2"):
            if element.get(name) not in (None, "100%"):
                assert math.isfinite(float(element.get(name))), (name, element.attrib)


def test_a_limit_of_zero_draws_no_rows():
    run, steps = realistic()
    _, svg = draw(run, steps, limit=0)
    assert with_class(svg, "tl-row") == []


@pytest.mark.django_db
def test_saved_rows_draw_the_same_picture():
    run, steps = realistic()
    run.save()
    for step in steps:
        step.run = run
    Step.objects.bulk_create(steps)
    saved = Run.objects.get(pk=run.pk)
    html = timeline(saved, saved.steps.order_by("position"), now=NOW, run_url=run_url)
    assert html == timeline(run, steps, now=NOW, run_url=run_url)


# --- screenshots -------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>{css}</head>
<body><div id="container"><div class="main"><main id="content-start" class="content">
<div id="content" class="colM"><h1>View workflow run</h1><div id="content-main">
<section class="durable-panel"><h2>Timeline</h2><div class="durable-timeline">{fragment}</div>
</section><fieldset class="module aligned"><h2 class="fieldset-heading">Timeline</h2>
<div class="form-row field-timeline"><div><div class="flex-container">
<label>Timeline:</label><div class="readonly">{fragment}</div></div></div></div>
</fieldset></div></div></main></div></div></body></html>"""


def admin_page(title: str, fragment: str) -> str:
    """Return a page styled by the admin's CSS with the fragment twice: where the run page
    shows it (a panel above the fields), and as a read-only field (a narrower column)."""
    css_dir = Path(admin.__file__).parent / "static" / "admin" / "css"
    sheets = [css_dir / name for name in ("base.css", "forms.css", "responsive.css")]
    sheets += [
        css_dir / "dark_mode.css",
        ROOT / "django_durable/static/django_durable/admin/run.css",
    ]
    css = "".join(
        f'<link rel="stylesheet" href="{sheet.as_uri()}">' for sheet in sheets if sheet.exists()
    )
    return PAGE.format(title=title, css=css, fragment=fragment)


@pytest.mark.slow
def test_screenshots_of_two_realistic_pictures(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"the screenshots need Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    run, steps = realistic()
    busy, many = long_run(250)
    pages = {
        "checkout": timeline(run, steps, now=NOW, run_url=run_url),
        "200-operations": timeline(
            busy, many[-200:], now=NOW, run_url=run_url, more_url="/admin/steps/"
        ),
    }
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            for name, fragment in pages.items():
                path = tmp_path / f"{name}.html"
                path.write_text(admin_page(name, fragment), encoding="utf-8")
                for scheme in ("light", "dark"):
                    page = browser.new_page(
                        viewport={"width": 1280, "height": 800}, color_scheme=scheme
                    )
                    page.goto(path.as_uri())
                    for svg in page.locator("svg[role=img]").all():  # as wide as it may be
                        box = svg.bounding_box()
                        assert box is not None and box["width"] > 800, box
                    suffix = "" if scheme == "light" else "-dark"
                    page.screenshot(
                        path=SCREENSHOTS / f"timeline-{name}{suffix}.png", full_page=True
                    )
                    page.close()
        finally:
            browser.close()
    assert os.path.getsize(SCREENSHOTS / "timeline-checkout.png") > 10_000
