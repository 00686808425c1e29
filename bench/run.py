"""`make bench`: django-durable's speed on PostgreSQL, written to bench/results/.

W1: 200 runs x 10 trivial steps, one worker process.  W2: 2000 runs x 1 step.
Each is repeated (median, min-max). The worker is started and registered before the
runs are enqueued in one transaction; the clock runs from that commit to the last
run's finished_at.
W3: a run waits in recv; the time from send() to the client seeing the run complete,
50 times (median, p95).  W4: one run writes 1,000 stream items that a client follows;
items/s written (by the run) and read (by the client).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DB_NAME = "durable_bench"
ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "bench.settings",
    "PYTHONPATH": str(ROOT),
    "BENCH_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}",
}


def fresh_database() -> None:
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"], env=ENV, cwd=ROOT, check=True
    )


def setup_django() -> None:
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE durable_run, durable_worker CASCADE")
        cursor.execute("VACUUM ANALYZE durable_run")
        cursor.execute("VACUUM ANALYZE durable_step")


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    from django_durable.models import WorkerProcess

    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "run_workflow_worker", "--concurrency", str(concurrency)],
        env=ENV,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while not WorkerProcess.objects.filter(pid=proc.pid).exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the worker did not start")
        time.sleep(0.05)
    return proc


def enqueue(workflow: str, runs: int, kwargs: dict) -> float:
    from django.db import transaction

    import django_durable as durable

    with transaction.atomic():
        for _ in range(runs):
            durable.start(workflow, kwargs=kwargs)
    return time.time()


def wait_done(runs: int, timeout: float = 600) -> float:
    from django.db.models import Max

    from django_durable.models import Run

    deadline = time.monotonic() + timeout
    while Run.objects.finished().count() < runs:
        if time.monotonic() > deadline:
            raise RuntimeError("the runs did not finish in time")
        time.sleep(0.05)
    failed = Run.objects.exclude(status="completed").count()
    if failed:
        raise RuntimeError(f"{failed} runs did not complete")
    return Run.objects.aggregate(last=Max("finished_at"))["last"].timestamp()


def measure(workflow: str, runs: int, steps: int, concurrency: int) -> dict:
    truncate()
    worker = start_worker(concurrency)
    try:
        started = enqueue(workflow, runs, {"steps": steps} if workflow == "bench.ten_steps" else {})
        elapsed = wait_done(runs) - started
    finally:
        worker.terminate()
        worker.wait(30)
    return {"seconds": elapsed, "runs_per_s": runs / elapsed, "steps_per_s": runs * steps / elapsed}


def latency_w3(repetitions: int = 50) -> dict:
    """Message wake-up latency: send() to the client seeing the result."""
    import django_durable as durable
    from django_durable.models import Run

    truncate()
    worker = start_worker(4)
    samples = []
    try:
        for _ in range(repetitions):
            handle = durable.start("bench.wait_message")
            deadline = time.monotonic() + 30
            while Run.objects.filter(pk=handle.id, status="waiting").count() == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the run did not reach its recv")
                time.sleep(0.005)
            time.sleep(0.02)  # the worker is idle again, listening
            started = time.perf_counter()
            durable.send(handle.id, "go", topic="go")
            handle.result(timeout=30)
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        worker.terminate()
        worker.wait(30)
    samples.sort()
    return {
        "repetitions": repetitions,
        "median_ms": statistics.median(samples),
        "p95_ms": samples[int(len(samples) * 0.95) - 1],
        "min_ms": samples[0],
        "max_ms": samples[-1],
    }


def stream_w4(items: int = 1000) -> dict:
    """Stream throughput: a run writes ``items``; a client follows them as they commit."""
    import django_durable as durable
    from django_durable.models import Run

    truncate()
    worker = start_worker(4)
    try:
        started = time.perf_counter()
        handle = durable.start("bench.stream_writer", kwargs={"items": items})
        received = sum(1 for _ in durable.read_stream(handle.id, "out", follow=True))
        read_seconds = time.perf_counter() - started
        handle.result(timeout=60)
        run = Run.objects.get(pk=handle.id)
        write_seconds = (run.finished_at - run.started_at).total_seconds()
    finally:
        worker.terminate()
        worker.wait(30)
    if received != items:
        raise RuntimeError(f"the client read {received} of {items} items")
    return {
        "items": items,
        "written_per_s": items / write_seconds,
        "read_per_s": items / read_seconds,
    }


WORKLOADS = {
    "W1": {"workflow": "bench.ten_steps", "runs": 200, "steps": 10},
    "W2": {"workflow": "bench.one_step", "runs": 2000, "steps": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--only", choices=[*sorted(WORKLOADS), "W3", "W4"], action="append")
    args = parser.parse_args()
    fresh_database()
    setup_django()
    results: dict[str, dict] = {}
    chosen = args.only or [*sorted(WORKLOADS), "W3", "W4"]
    for name in [n for n in chosen if n in WORKLOADS]:
        spec = WORKLOADS[name]
        samples = [
            measure(spec["workflow"], spec["runs"], spec["steps"], args.concurrency)
            for _ in range(args.repeat)
        ]
        summary = {}
        for key in ("runs_per_s", "steps_per_s", "seconds"):
            values = [sample[key] for sample in samples]
            summary[key] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
        results[name] = {**spec, "worker_processes": 1, "concurrency": args.concurrency, **summary}
        print(
            f"{name}: {spec['runs']} runs x {spec['steps']} steps: "
            f"{summary['runs_per_s']['median']:.0f} runs/s, "
            f"{summary['steps_per_s']['median']:.0f} steps/s "
            f"(min {summary['steps_per_s']['min']:.0f}, max {summary['steps_per_s']['max']:.0f})",
            flush=True,
        )
    if "W3" in chosen:
        results["W3"] = latency_w3()
        w3 = results["W3"]
        print(f"W3: message wake-up {w3['median_ms']:.1f} ms median, {w3['p95_ms']:.1f} ms p95")
    if "W4" in chosen:
        runs = [stream_w4() for _ in range(args.repeat)]
        results["W4"] = {
            "items": 1000,
            "written_per_s": statistics.median(r["written_per_s"] for r in runs),
            "read_per_s": statistics.median(r["read_per_s"] for r in runs),
        }
        w4 = results["W4"]
        print(
            f"W4: 1000 stream items: {w4['written_per_s']:.0f} written/s, "
            f"{w4['read_per_s']:.0f} read/s (median of {args.repeat})"
        )
    write(results, args)


def write(results: dict, args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "repeat": args.repeat,
        "results": results,
    }
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        "| workload | runs x steps | runs/s (median) | steps/s (median) | steps/s min-max |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if name not in WORKLOADS:
            continue
        lines.append(
            f"| {name} | {r['runs']} x {r['steps']} | {r['runs_per_s']['median']:.0f} | "
            f"{r['steps_per_s']['median']:.0f} | "
            f"{r['steps_per_s']['min']:.0f}-{r['steps_per_s']['max']:.0f} |"
        )
    if "W3" in results:
        w3 = results["W3"]
        lines += [
            "",
            f"W3 message wake-up latency ({w3['repetitions']} sends): median "
            f"{w3['median_ms']:.1f} ms, p95 {w3['p95_ms']:.1f} ms "
            f"(min {w3['min_ms']:.1f}, max {w3['max_ms']:.1f})",
        ]
    if "W4" in results:
        w4 = results["W4"]
        lines += [
            "",
            f"W4 stream of {w4['items']} items: {w4['written_per_s']:.0f} written/s, "
            f"{w4['read_per_s']:.0f} read/s by a following client",
        ]
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")
    print(f"Results written to {RESULTS}/latest.json and latest.md")


if __name__ == "__main__":
    main()
