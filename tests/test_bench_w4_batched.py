"""W4's batched figure (``ctx.write_stream_many``) in the benchmark report, and its target."""

from __future__ import annotations

from bench import report
from tests.test_bench_harness import _document, _sample


def test_the_batched_figure_is_shown_and_judged() -> None:
    samples = [
        _sample(
            "W4",
            4,
            "durable",
            rep,
            written_per_s=300,
            read_per_s=290,
            batched_written_per_s=batched,
        )
        for rep, batched in enumerate([9000, 12000, 15000])
    ]
    summary = report.summarise(samples)
    checks = {check["target"]: check for check in report.targets(summary)}
    target = checks["W4 batched >= 10,000 items/s (ctx.write_stream_many, 100 items a call)"]
    assert (target["value"], target["holds"]) == (12000, True)
    document = _document(samples)
    document.update(summary=summary, targets=report.targets(summary))
    text = report.markdown(document)
    assert "300 items/s written; 290 items/s read; 12,000 items/s written in batches of 100" in text
    assert "9,000\u201315,000" in text  # the spread, after the others'
    assert (
        "| W4 batched >= 10,000 items/s (ctx.write_stream_many, 100 items a call)"
        " | 12,000 items/s | PASS |"
    ) in text


def test_the_batched_target_is_not_measured_without_the_figure() -> None:
    summary = report.summarise([_sample("W4", 4, "durable", 0, written_per_s=300)])
    checks = {check["target"]: check for check in report.targets(summary)}
    target = checks["W4 batched >= 10,000 items/s (ctx.write_stream_many, 100 items a call)"]
    assert (target["value"], target["holds"], target["shown"]) == (None, None, "not measured")
