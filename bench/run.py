"""`make bench`: django-durable and its peers, side by side, on PostgreSQL.

For each repetition, for each case (workload and concurrency), each system runs in turn,
in an order rotated from one repetition to the next so that machine noise hits all alike.
Every run gets a fresh database (``DROP DATABASE ... WITH (FORCE)``, ``CREATE DATABASE``)
and its own process: ``python -m bench.systems.NAME WORKLOAD --dsn ...``, which prints
its figures as JSON on its last line. W5 and W6 (``bench/w5.py``, ``bench/w6.py``) run
the same way when they exist. Results: bench/results/latest.json (every sample, the
summary, the machine), latest.md (the table, the scaling with worker processes and the
targets), ratios.png and scaling.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine, report, workloads
from bench.contenders import CONTENDERS, METRICS, Contender

ROOT = Path(__file__).resolve().parent.parent
SERVER = "postgresql://postgres@127.0.0.1:5432"
DB_NAME = "durable_bench"
DSN = f"{SERVER}/{DB_NAME}"
TIMEOUT = 1800  # seconds, for one system running one workload once
# Scripts of their own, run once each: bench/w5.py, bench/w6.py, bench/prune_load.py,
# bench/statements.py (statements per step, counted).
EXTRAS = ("W5", "W6", "prune_load", "statements")


def fresh_database() -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def run_module(argv: list[str]) -> dict:
    """Run one benchmark process in a fresh database; return its JSON or the error."""
    fresh_database()
    began = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        return {"error": f"timed out after {TIMEOUT} s: {(exc.stderr or '')[-1500:]}"}
    wall = time.monotonic() - began
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr[-1500:]}", "wall_seconds": wall}
    try:
        return {"result": json.loads(lines[-1]), "wall_seconds": wall}
    except json.JSONDecodeError:
        return {"error": f"no JSON on the last line: {lines[-1][:300]!r}", "wall_seconds": wall}


def argv_for(contender: Contender, workload: str, concurrency: int | None, quick: bool):
    argv = [contender.module, workload, "--dsn", DSN]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if contender.variant:
        argv += ["--variant", contender.variant]
    if quick:
        argv.append("--quick")
    return argv


def plan(only: list[str] | None, systems: list[str] | None):
    """The cases to run, each with the contenders that run it, in the cases' order."""
    chosen = [c for c in CONTENDERS if systems is None or c.key in systems]
    cases: list[tuple[str, int | None]] = []
    for workload, concurrency in workloads.CASES:
        cases.append((workload, concurrency))
        if concurrency == 4:
            cases.append((workload, None))  # the systems that set their own concurrency
    steps = []
    for workload, concurrency in cases:
        if only and workload not in only:
            continue
        runners = [c for c in chosen if (workload, concurrency) in c.cases]
        if runners:
            steps.append((workload, concurrency, runners))
    return steps


def describe(sample: dict) -> str:
    if "error" in sample:
        return "ERROR " + sample["error"].strip().splitlines()[-1][:200]
    metric = METRICS[sample["workload"]]
    value = sample["result"].get(metric.key)
    return f"{value:,.1f} {metric.unit} ({sample['wall_seconds']:.0f} s)"


def run_extras(names: list[str], quick: bool, extras: dict) -> None:
    """Run W5, W6 and the prune under load (``python -m bench.w5 --dsn ...``) when their
    scripts exist."""
    for name in names:
        script = ROOT / "bench" / f"{name.lower()}.py"
        if not script.exists():
            extras[name] = f"`bench/{script.name}` does not exist yet: not run."
            continue
        argv = [f"bench.{script.stem}", "--dsn", DSN] + (["--quick"] if quick else [])
        sample = run_module(argv)
        extras[name] = [sample]
        shown = "ERROR " + sample["error"][-200:] if "error" in sample else "done"
        print(f"{name}: {shown} ({sample.get('wall_seconds', 0):.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--only", action="append", help="a workload (L0, W1...W6); repeatable")
    parser.add_argument("--systems", help="comma-separated: " + ",".join(c.key for c in CONTENDERS))
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition")
    args = parser.parse_args()
    repeat = args.repeat or (1 if args.quick else workloads.REPEAT)
    systems = args.systems.split(",") if args.systems else None
    steps = plan(args.only, systems)
    extras_wanted = [n for n in EXTRAS if not args.only or n in args.only]
    if systems is not None and "durable" not in systems:
        extras_wanted = []
    fresh_database()
    document: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(DSN),
        "repeat": repeat,
        "quick": args.quick,
        "sizes": workloads.sizes(args.quick).__repr__(),
        "samples": [],
        "extras": {},
    }
    for rep in range(repeat):
        for workload, concurrency, runners in steps:
            shift = rep % len(runners)
            for contender in runners[shift:] + runners[:shift]:
                outcome = run_module(argv_for(contender, workload, concurrency, args.quick))
                sample = {
                    "rep": rep,
                    "workload": workload,
                    "concurrency": concurrency,
                    "system": contender.key,
                    **outcome,
                }
                document["samples"].append(sample)
                print(
                    f"[{rep + 1}/{repeat}] {workload} c={concurrency or 'free'}"
                    f" {contender.label}: {describe(sample)}",
                    flush=True,
                )
    # W5 and W6 repeat inside themselves and take minutes: once per `make bench`.
    run_extras(extras_wanted, args.quick, document["extras"])
    report.write(document)
    print()
    print((report.RESULTS / "latest.md").read_text())
    print(f"Written: {report.RESULTS}/latest.json, latest.md, ratios.png, scaling.png", flush=True)


if __name__ == "__main__":
    main()
