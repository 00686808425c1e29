"""Turn the samples of a benchmark run into medians, ratios, target checks, Markdown and a plot.

``python bench/report.py`` rebuilds bench/results/latest.md and the plot from latest.json
without running anything; ``--docs`` also puts the table into docs/performance.md.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import workloads
from bench.contenders import CONTENDERS, METRICS, by_key

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS_PLOT = ROOT / "docs" / "img" / "bench-ratios.png"
DASH, TIMES = "\u2013", "\u00d7"  # en dash, multiplication sign


def case_key(workload: str, concurrency: int | None) -> str:
    return f"{workload}/c{concurrency}" if concurrency else f"{workload}/free"


def concurrency_label(concurrency: int | None) -> str:
    return str(concurrency) if concurrency else "no limit"


def summarise(samples: list[dict]) -> dict:
    """Median, min and max of every numeric figure, per case and system."""
    grouped: dict[str, dict[str, dict[str, list[float]]]] = {}
    errors: dict[str, dict[str, list[str]]] = {}
    for sample in samples:
        case = case_key(sample["workload"], sample["concurrency"])
        if "error" in sample:
            errors.setdefault(case, {}).setdefault(sample["system"], []).append(sample["error"])
            continue
        figures = grouped.setdefault(case, {}).setdefault(sample["system"], {})
        for name, value in sample["result"].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                figures.setdefault(name, []).append(float(value))
    summary: dict[str, dict] = {}
    for case, systems in grouped.items():
        for system, figures in systems.items():
            summary.setdefault(case, {})[system] = {
                name: {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "n": len(values),
                }
                for name, values in figures.items()
            }
    for case, systems in errors.items():
        for system, messages in systems.items():
            summary.setdefault(case, {}).setdefault(system, {})["errors"] = messages
    return summary


def _median(summary: dict, case: str, system: str, metric: str) -> float | None:
    figure = summary.get(case, {}).get(system, {}).get(metric)
    return None if figure is None else figure["median"]


def speedup(summary: dict, workload: str, case: str, peer_case: str, peer: str) -> float | None:
    """How many times better django-durable is than ``peer`` (above 1: django-durable wins)."""
    metric = METRICS[workload]
    ours = _median(summary, case, "durable", metric.key)
    theirs = _median(summary, peer_case, peer, metric.key)
    if not ours or not theirs:
        return None
    return ours / theirs if metric.higher_is_better else theirs / ours


# (label, workload, django-durable's case, the peer's case, peer, for the plot)
COMPARISONS = (
    ("W1, concurrency 4 vs DBOS queue", "W1", "W1/c4", "W1/c4", "dbos-queue"),
    ("W1, concurrency 1 vs DBOS queue", "W1", "W1/c1", "W1/c1", "dbos-queue"),
    (
        "W1, concurrency 4 vs DBOS start_workflow (no limit)",
        "W1",
        "W1/c4",
        "W1/free",
        "dbos-direct",
    ),
    ("W1, concurrency 4 vs Absurd", "W1", "W1/c4", "W1/c4", "absurd"),
    ("W1, concurrency 1 vs Absurd", "W1", "W1/c1", "W1/c1", "absurd"),
    ("W2 vs DBOS queue (4)", "W2", "W2/c4", "W2/c4", "dbos-queue"),
    ("W2 vs DBOS start_workflow (no limit)", "W2", "W2/c4", "W2/free", "dbos-direct"),
    ("W2 vs Absurd (4)", "W2", "W2/c4", "W2/c4", "absurd"),
    ("W2 vs procrastinate (4)", "W2", "W2/c4", "W2/c4", "procrastinate"),
    ("W2 vs django-tasks-db (4 processes)", "W2", "W2/c4", "W2/c4", "django-tasks"),
    ("W3 latency vs DBOS", "W3", "W3/c4", "W3/c4", "dbos-direct"),
    ("W3 latency vs Absurd", "W3", "W3/c4", "W3/c4", "absurd"),
    ("W4 items written vs DBOS", "W4", "W4/c4", "W4/c4", "dbos-direct"),
)


def comparisons(summary: dict) -> list[dict]:
    """django-durable against each peer, case by case."""
    rows = []
    for label, workload, case, peer_case, peer in COMPARISONS:
        ratio = speedup(summary, workload, case, peer_case, peer)
        if ratio is not None:
            rows.append({"label": label, "peer": peer, "case": case, "speedup": ratio})
    return rows


def targets(summary: dict) -> list[dict]:
    """The issue's targets, each with the figure measured and whether it holds."""
    checks = []

    def check(name: str, value: float | None, threshold: float, shown: str, target: bool = True):
        checks.append(
            {
                "target": name,
                "value": value,
                "threshold": threshold,
                "shown": shown if value is not None else "not measured",
                "holds": None if value is None else value >= threshold,
                "is_target": target,
            }
        )

    for conc in (4, 1):
        ratio = speedup(summary, "W1", f"W1/c{conc}", f"W1/c{conc}", "dbos-queue")
        check(
            f"W1 steps/s >= 10x DBOS, queue path, concurrency {conc}",
            ratio,
            10,
            f"{ratio:.1f}x" if ratio else "",
            target=conc == 4,
        )
    ratio = speedup(summary, "W1", "W1/c4", "W1/free", "dbos-direct")
    check(
        "W1 steps/s >= 10x DBOS, direct start_workflow (for reference: no queue, no limit)",
        ratio,
        10,
        f"{ratio:.1f}x" if ratio else "",
        target=False,
    )
    for conc in (1, 4):
        ratio = speedup(summary, "W1", f"W1/c{conc}", f"W1/c{conc}", "absurd")
        check(
            f"W1 steps/s >= 2x Absurd, one worker process, concurrency {conc}",
            ratio,
            2,
            f"{ratio:.2f}x" if ratio else "",
            target=conc == 1,
        )
    l0 = _median(summary, "L0/c1", "postgres", "commits_per_s")
    for conc in (4, 1):
        steps = _median(summary, f"W1/c{conc}", "durable", "steps_per_s")
        share = steps / l0 if steps and l0 else None
        check(
            f"W1 steps/s >= 20% of L0 (1 client), one worker process, concurrency {conc}",
            share,
            0.2,
            f"{share:.0%} ({steps:,.0f} of {l0:,.0f})" if share else "",
            target=conc == 4,
        )
    for peer in ("dbos-queue", "absurd", "procrastinate", "django-tasks"):
        ratio = speedup(summary, "W2", "W2/c4", "W2/c4", peer)
        check(
            f"W2 runs/s >= {by_key()[peer].label} at equal concurrency (4)",
            ratio,
            1,
            f"{ratio:.2f}x" if ratio else "",
            target=peer != "absurd",
        )
    for peer, name in (("dbos-direct", "DBOS"), ("absurd", "Absurd")):
        ours = _median(summary, "W3/c4", "durable", "median_ms")
        theirs = _median(summary, "W3/c4", peer, "median_ms")
        ratio = theirs / ours if ours and theirs else None
        check(
            f"W3 median latency <= {name}'s",
            ratio,
            1,
            f"{ours:.1f} ms vs {theirs:.1f} ms" if ratio else "",
            target=peer != "absurd",
        )
    return checks


def extra_targets(document: dict) -> list[dict]:
    """The targets W5 and W6 judge themselves (their JSON's ``target``)."""
    checks = []
    for name in ("W5", "W6"):
        samples = document.get("extras", {}).get(name)
        results = [s["result"] for s in samples or [] if isinstance(s, dict) and "result" in s]
        target = results[-1].get("target", {}) if results else {}
        checks.append(
            {
                "target": f"{name}: {target.get('name', 'not run')}",
                "value": None,
                "threshold": None,
                "shown": target.get("detail", "not measured"),
                "holds": target.get("holds"),
                "is_target": True,
            }
        )
    return checks


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(figure: dict | None) -> tuple[str, str]:
    if figure is None:
        return "", ""
    spread = f"{_fmt(figure['min'])}{DASH}{_fmt(figure['max'])}" if figure["n"] > 1 else ""
    return _fmt(figure["median"]), spread


def _verdict(ratio: float) -> str:
    if 0.98 <= ratio <= 1.02:
        return f"{ratio:.2f}{TIMES} (the same)"
    return f"{ratio:.2f}{TIMES} {'faster' if ratio > 1 else '(slower)'}"


def table(document: dict) -> list[str]:
    """The results table: one row per case and system, n/a rows with their reason."""
    summary = document["summary"]
    lines = [
        f"| workload | concurrency | system | how | result (median) | min{DASH}max"
        " | django-durable is |",
        "|---|---|---|---|---|---|---|",
    ]
    contenders = by_key()
    cases = [(w, c) for w, c in workloads.CASES] + [("W1", None), ("W2", None)]
    order = ["L0/c1", "L0/c4", "W1/c1", "W1/c4", "W1/free", "W2/c4", "W2/free", "W3/c4", "W4/c4"]
    seen = {case_key(w, c) for w, c in cases}
    for case in [c for c in order if c in seen and c in summary]:
        workload, _, conc = case.partition("/")
        metric = METRICS[workload]
        for key, figures in summary[case].items():
            contender = contenders[key]
            if "errors" in figures and metric.key not in figures:
                result, spread = f"error ({len(figures['errors'])} runs)", ""
            else:
                result, spread = _cell(figures.get(metric.key))
                result = f"{result} {metric.unit}"
                if metric.second_key and metric.second_key in figures:
                    second, second_spread = _cell(figures[metric.second_key])
                    result += f"; {second} {metric.second_unit}"
                    spread += f"; {second_spread}" if second_spread else ""
            vs = ""
            if key != "durable" and key != "postgres":
                ours_case = "W2/c4" if case == "W2/free" else "W1/c4" if case == "W1/free" else case
                ratio = speedup(summary, workload, ours_case, case, key)
                vs = _verdict(ratio) if ratio else ""
            label = f"**{contender.label}**" if key == "durable" else contender.label
            n = int(conc[1:]) if conc != "free" else None
            how = contender.describe(workload).replace("{n}", str(n))
            lines.append(
                f"| {workload} | {concurrency_label(n)} | {label} | {how} | {result} | {spread}"
                f" | {vs} |"
            )
    return lines


def not_applicable(document: dict) -> list[str]:
    lines = []
    ran = {sample["system"] for sample in document["samples"]}
    for contender in CONTENDERS:
        if contender.key not in ran:
            continue
        for workload, reason in contender.unsupported().items():
            lines.append(f"- {workload}, {contender.label}: n/a ({reason})")
    return lines


# Figures of W5's and W6's JSON left to latest.json: per-phase detail, and DBOS's raw
# figures (``vs_dbos`` shows them beside ours).
DETAIL_PREFIXES = ("phases.", "dbos.")


def extras(document: dict) -> list[str]:
    """W5 and W6, written by their own scripts: every figure of their JSON, as they report it."""
    lines = []
    for name, samples in sorted(document.get("extras", {}).items()):
        lines += ["", f"### {name} (`bench/{name.lower()}.py`)", ""]
        if isinstance(samples, str):
            lines.append(samples)
            continue
        good = [s["result"] for s in samples if "result" in s]
        bad = [s["error"] for s in samples if "error" in s]
        if bad:
            lines.append(f"{len(bad)} of {len(samples)} run(s) failed: `{bad[0][-300:]!r}`")
        figures: dict[str, list[float]] = {}
        for result in good:
            for key, value in _flatten(result):
                if not key.startswith(DETAIL_PREFIXES):
                    figures.setdefault(key, []).append(value)
        if figures:
            lines += [
                f"Run {len(good)} time(s); the script repeats inside itself. Its whole JSON"
                " (each phase, DBOS's own figures, the query plans) is in latest.json under"
                " `extras`.",
                "",
                f"| figure | value (median) | min{DASH}max |",
                "|---|---|---|",
            ]
            for key, values in figures.items():
                spread = f"{_fmt(min(values))}{DASH}{_fmt(max(values))}" if len(values) > 1 else ""
                lines.append(f"| {key} | {_fmt(statistics.median(values))} | {spread} |")
    return lines


def _flatten(value: object, prefix: str = ""):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield prefix, float(value)


def markdown(document: dict) -> str:
    machine = document["machine"]
    settings = machine["postgresql_settings"]
    packages = ", ".join(f"{name} {v}" for name, v in machine["packages"].items() if v)
    lines = [
        f"Run of {document['date']}: {document['repeat']} repetition(s), systems interleaved"
        f"{' (--quick: sizes too small to mean anything)' if document['quick'] else ''}.",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB;"
        f" PostgreSQL {machine['postgresql']} on the same machine (synchronous_commit ="
        f" {settings['synchronous_commit']}, shared_buffers = {settings['shared_buffers']});"
        f" Python {machine['python']}; {packages}.",
        "",
        *table(document),
        "",
        "Not applicable:",
        "",
        *not_applicable(document),
        "",
        "### Targets",
        "",
        "| target | measured | holds |",
        "|---|---|---|",
    ]
    for check in document["targets"]:
        holds = {True: "PASS", False: "FAIL", None: "not measured"}[check["holds"]]
        if not check["is_target"]:
            holds += " (for reference)"
        lines.append(f"| {check['target']} | {check['shown']} | {holds} |")
    lines += extras(document)
    return "\n".join(lines) + "\n"


def plot(document: dict, path: Path) -> None:
    """A bar per comparison: how many times faster django-durable is (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = document["comparisons"]
    if not rows:
        return
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.8))
    labels = [row["label"] for row in rows][::-1]
    values = [row["speedup"] for row in rows][::-1]
    colours = ["#2e7d32" if v >= 1 else "#c62828" for v in values]
    ax.barh(labels, values, color=colours)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}{TIMES}"))
    ax.axvline(1, color="black", linewidth=1)
    for y, value in enumerate(values):
        ax.text(
            value, y, f" {value:.2f}{TIMES}" if value < 10 else f" {value:.0f}{TIMES}", va="center"
        )
    ax.set_xlim(min(0.5, min(values) / 1.5), max(values) * 3)
    ax.set_xlabel("how many times faster django-durable is (right of 1: faster; log scale)")
    ax.set_title(
        f"django-durable against its peers: medians of {document['repeat']},"
        f" {document['date'][:10]}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(document: dict) -> None:
    """Summarise ``document`` and write latest.json, latest.md and the plot."""
    document["summary"] = summarise(document["samples"])
    document["comparisons"] = comparisons(document["summary"])
    document["targets"] = targets(document["summary"]) + extra_targets(document)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=1) + "\n")
    (RESULTS / "latest.md").write_text(markdown(document))
    plot(document, RESULTS / "ratios.png")
    if not document["quick"] and (RESULTS / "ratios.png").exists():
        DOCS_PLOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RESULTS / "ratios.png", DOCS_PLOT)


DOCS_PAGE = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def update_docs() -> None:
    """Put latest.md between the bench markers of docs/performance.md."""
    page = DOCS_PAGE.read_text()
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest or not tail:
        raise SystemExit(f"{DOCS_PAGE} lacks the {BEGIN} ... {END} markers")
    body = (RESULTS / "latest.md").read_text()
    DOCS_PAGE.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    print(f"Updated {DOCS_PAGE.relative_to(ROOT)} from bench/results/latest.md")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--docs", action="store_true", help="also put the table into docs/performance.md"
    )
    args = parser.parse_args()
    write(json.loads((RESULTS / "latest.json").read_text()))
    print((RESULTS / "latest.md").read_text())
    if args.docs:
        update_docs()
