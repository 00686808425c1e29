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
from bench.contenders import CONTENDERS, METRICS, SCALING, SCALING_CONCURRENCY, by_key

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS_PLOT = ROOT / "docs" / "img" / "bench-ratios.png"
DASH, TIMES, GEQ = "\u2013", "\u00d7", "\u2265"  # en dash, multiplication sign, >=


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


def scaling(summary: dict) -> dict:
    """W1 and W2 per number of worker processes at the same total concurrency, each as a
    ratio to one process and to L0 with as many clients as runs at once."""
    l0 = _median(summary, f"L0/c{SCALING_CONCURRENCY}", "postgres", "commits_per_s")
    workloads_ = ("W1", "W2")
    cases = {w: f"{w}/c{SCALING_CONCURRENCY}" for w in workloads_}
    one = {w: _median(summary, cases[w], SCALING[1], METRICS[w].key) for w in workloads_}
    rows = []
    for processes, key in SCALING.items():
        row: dict = {"processes": processes, "system": key}
        for w in workloads_:
            value = _median(summary, cases[w], key, METRICS[w].key)
            row[w] = {
                "value": value,
                "vs_one": value / one[w] if value and one[w] else None,
                "vs_l0": value / l0 if value and l0 else None,
            }
        if any(row[w]["value"] for w in workloads_):
            rows.append(row)
    return {"concurrency": SCALING_CONCURRENCY, "l0": l0, "rows": rows}


def _scaling_figure(figures: dict, processes: int, workload: str) -> dict:
    """The figure of ``workload`` with ``processes`` worker processes (None: not measured)."""
    for row in figures["rows"]:
        if row["processes"] == processes:
            return row[workload]
    return {"value": None, "vs_one": None, "vs_l0": None}


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
    # Issue 19: the hot path at concurrency 1, one commit per step, >= 60% of L0.
    for conc, floor in ((4, 0.2), (1, 0.6)):
        steps = _median(summary, f"W1/c{conc}", "durable", "steps_per_s")
        share = steps / l0 if steps and l0 else None
        check(
            f"W1 steps/s >= {floor:.0%} of L0 (1 client), one worker process, concurrency {conc}",
            share,
            floor,
            f"{share:.0%} ({steps:,.0f} of {l0:,.0f})" if share else "",
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
    plain = _median(summary, "W2/c4", "durable", "runs_per_s")
    hot = _median(summary, "W2/c4", "durable-hot-key", "runs_per_s")
    share = hot / plain if hot and plain else None
    check(
        "W2 beside a hot key (10,000 runs queued behind its full slot) >= 80% of W2 alone"
        " (for reference)",
        share,
        0.8,
        f"{share:.0%} ({hot:,.0f} of {plain:,.0f} runs/s)" if share else "",
        target=False,
    )
    batched = _median(summary, "W4/c4", "durable", "batched_written_per_s")
    check(
        "W4 batched >= 10,000 items/s (ctx.write_stream_many, 100 items a call)",
        batched,
        10_000,
        f"{batched:,.0f} items/s" if batched else "",
    )
    single = _median(summary, "W4/c4", "durable", "written_per_s")
    share = single / l0 if single and l0 else None
    check(
        "W4 one item per call >= 70% of L0 (1 client)",
        share,
        0.7,
        f"{share:.0%} ({single:,.0f} items/s of {l0:,.0f} commits/s)" if share else "",
    )
    figures = scaling(summary)
    two, one = _scaling_figure(figures, 2, "W2"), _scaling_figure(figures, 1, "W2")
    ratio = two["vs_one"]
    check(
        f"W2 with 2 processes >= 1.5x one process ({SCALING_CONCURRENCY} runs at once in all)",
        ratio,
        1.5,
        f"{ratio:.2f}x ({two['value']:,.0f} vs {one['value']:,.0f} runs/s)" if ratio else "",
    )
    four = _scaling_figure(figures, 4, "W1")
    share = four["vs_l0"]
    check(
        f"W1 with 4 processes >= 50% of L0 ({SCALING_CONCURRENCY} clients)",
        share,
        0.5,
        f"{share:.0%} ({four['value']:,.0f} steps/s of {figures['l0']:,.0f} commits/s)"
        if share
        else "",
    )
    return checks


def wake_all_target(document: dict) -> dict:
    """Issue 19: one event waking 10,000 waiting runs resumes them at least at W2's rate
    (runs of one step started and finished), both from the same ``make bench``."""
    samples = document.get("extras", {}).get("W5") or []
    results = [s["result"] for s in samples if isinstance(s, dict) and "result" in s]
    resumed = results[-1].get("resume_runs_per_s", {}).get("10000") if results else None
    w2 = _median(document.get("summary", {}), "W2/c4", "durable", "runs_per_s")
    ratio = resumed / w2 if resumed and w2 else None
    return {
        "target": "W5: 10,000 runs woken by one event resume at >= W2's rate (same run)",
        "value": ratio,
        "threshold": 1,
        "shown": f"{resumed:,.0f} vs {w2:,.0f} runs/s ({ratio:.2f}x)" if ratio else "not measured",
        "holds": None if ratio is None else ratio >= 1,
        "is_target": True,
    }


def extra_targets(document: dict) -> list[dict]:
    """The targets W5, W6 and the prune under load judge themselves (their JSON's ``target``),
    and the wake-all rate against W2's."""
    checks = [wake_all_target(document)]
    for name in ("W5", "W6", "prune_load"):
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
                for more_key, more_unit in metric.more:
                    if more_key in figures:
                        more, more_spread = _cell(figures[more_key])
                        result += f"; {more} {more_unit}"
                        spread += f"; {more_spread}" if more_spread else ""
            vs = ""
            # The processes variants are compared with one process in the Scaling section.
            if key not in ("postgres", *SCALING.values()):
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


def _ratio_cells(figure: dict) -> list[str]:
    if figure["value"] is None:
        return ["not measured", "", ""]
    vs_one = f"{figure['vs_one']:.2f}{TIMES}" if figure["vs_one"] else ""
    vs_l0 = f"{figure['vs_l0']:.0%}" if figure["vs_l0"] else ""
    return [_fmt(figure["value"]), vs_one, vs_l0]


def scaling_section(document: dict) -> list[str]:
    """The Scaling section: W1 and W2 with 1, 2 and 4 worker processes, beside L0."""
    figures = document.get("scaling") or scaling(document["summary"])
    conc = figures["concurrency"]
    lines = [
        "",
        "### Scaling",
        "",
        f"W1 and W2 with `run_workflow_worker --processes P --concurrency {conc}/P`:"
        f" `--concurrency` is per process, so {conc} runs at once in all, whatever P; one"
        f" process is django-durable's row above. Beside L0 with {conc} clients"
        " (PostgreSQL alone, one commit per transaction), in the same run: "
        + (f"{_fmt(figures['l0'])} commits/s." if figures["l0"] else "not measured."),
        "",
    ]
    if not figures["rows"]:
        systems = ",".join(["postgres", *SCALING.values()])
        return [*lines, f"Not measured in this run (`--systems {systems}`)."]
    lines += [
        f"| worker processes | --concurrency each | W1 steps/s | {TIMES} 1 process"
        f" | of L0 ({conc} clients) | W2 runs/s | {TIMES} 1 process | of L0 ({conc} clients) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in figures["rows"]:
        cells = [str(row["processes"]), str(conc // row["processes"])]
        cells += _ratio_cells(row["W1"]) + _ratio_cells(row["W2"])
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, "", "The curve: scaling.png."]


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
        *scaling_section(document),
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


# How each workload is drawn on the scaling curve: label, colour, marker.
SCALING_STYLES = {"W1": ("W1 steps/s", "#1565c0", "o"), "W2": ("W2 runs/s", "#ef6c00", "s")}


def _scaling_panel(ax, figures: dict, ratio: str, scale: float, floor: float) -> None:
    """Draw W1 and W2's ``ratio`` (times ``scale``) over the number of processes on ``ax``,
    with ``floor`` as the least top of the y axis."""
    series = {
        workload: [
            (row["processes"], row[workload][ratio] * scale)
            for row in figures["rows"]
            if row[workload][ratio]
        ]
        for workload in SCALING_STYLES
    }
    top = max([floor, *(y for points in series.values() for _, y in points)]) * 1.15
    ax.set_ylim(0, top)
    for workload, points in series.items():
        if not points:
            continue
        label, colour, marker = SCALING_STYLES[workload]
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker=marker, color=colour, label=label)
        for x, y in points:
            # W1's figure above its point, W2's below (above near the axis): never overlapping.
            below = workload == "W2" and y > top * 0.12
            shown = f"{y:.2f}{TIMES}" if scale == 1 else f"{y:.0f}%"
            ax.annotate(shown, (x, y), textcoords="offset points", xytext=(7, -13 if below else 5))
    processes = [row["processes"] for row in figures["rows"]]
    ax.set_xscale("log", base=2)
    ax.set_xticks(processes, [str(p) for p in processes])
    ax.minorticks_off()
    ax.set_xlim(min(processes) / 1.3, max(processes) * 1.5)
    ax.set_xlabel(f"worker processes ({figures['concurrency']} runs at once in all)")
    ax.grid(alpha=0.3)


def plot_scaling(document: dict, path: Path) -> None:
    """Two panels over the number of worker processes: W1 and W2 as times one process, and
    as a share of L0 with as many clients; each target drawn where it applies."""
    figures = document["scaling"]
    if not figures["rows"]:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5))
    _scaling_panel(left, figures, "vs_one", 1, floor=2.0)
    left.axhline(1, color="grey", linewidth=1)
    # The targets go into the legend: a label beside them would cross the figures near them.
    left.plot(
        [2],
        [1.5],
        marker="_",
        markersize=24,
        markeredgewidth=2,
        color="#c62828",
        linestyle="none",
        label=f"target: W2 at 2 processes {GEQ} 1.5{TIMES} one process",
    )
    left.set_ylabel(f"{TIMES} one process")
    _scaling_panel(right, figures, "vs_l0", 100, floor=60.0)
    right.axhline(
        50,
        color="#c62828",
        linewidth=1,
        linestyle="--",
        label=f"target: W1 at 4 processes {GEQ} 50% of L0",
    )
    l0 = f"{_fmt(figures['l0'])} commits/s" if figures["l0"] else "not measured"
    right.set_ylabel(f"share of L0 with {figures['concurrency']} clients ({l0})")
    right.yaxis.set_major_formatter(PercentFormatter())
    legend = dict(zip(*left.get_legend_handles_labels()[::-1], strict=True))
    legend.update(zip(*right.get_legend_handles_labels()[::-1], strict=True))
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=2, frameon=False)
    fig.suptitle(
        f"django-durable with more worker processes: medians of {document['repeat']},"
        f" {document['date'][:10]}"
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(document: dict) -> None:
    """Summarise ``document`` and write latest.json, latest.md and the plots."""
    document["summary"] = summarise(document["samples"])
    document["comparisons"] = comparisons(document["summary"])
    document["scaling"] = scaling(document["summary"])
    document["targets"] = targets(document["summary"]) + extra_targets(document)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=1) + "\n")
    (RESULTS / "latest.md").write_text(markdown(document))
    plot(document, RESULTS / "ratios.png")
    plot_scaling(document, RESULTS / "scaling.png")
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
