"""What every system module shares: its command line, its JSON answer, its worker processes.

A system module runs as ``python -m bench.systems.NAME WORKLOAD --dsn URL [--concurrency N]
[--quick] [--variant V]`` against a fresh, empty database that the driver made for it. It
sets up its own schema there, runs the workload with real workers, and prints ONE JSON
object as the last line of its stdout. Its logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]


def parse_args(
    supported: Mapping[str, str], *, variants: tuple[str, ...] = ("default",)
) -> argparse.Namespace:
    """Parse a system module's command line; ``serve`` starts one of its worker processes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=[*supported, "serve"])
    parser.add_argument("--dsn", required=True, help="postgresql://... of a fresh database")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="small sizes, for smoke tests")
    parser.add_argument("--variant", choices=variants, default=variants[0])
    return parser.parse_args()


def emit(result: Mapping[str, Any]) -> None:
    """Print the result as the last line of stdout, where the driver reads it."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)


def log(message: str) -> None:
    """Say something that is not the result (stderr)."""
    print(message, file=sys.stderr, flush=True)


def throughput(*, runs: int, steps: int, seconds: float, enqueue_seconds: float) -> dict:
    """The throughput figures of W1 and W2."""
    return {
        "runs": runs,
        "steps": steps,
        "seconds": seconds,
        "runs_per_s": runs / seconds,
        "steps_per_s": runs * steps / seconds,
        "enqueue_seconds": enqueue_seconds,
    }


def latency(samples_ms: list[float]) -> dict:
    """Median, p95, min and max of latencies in milliseconds."""
    ordered = sorted(samples_ms)
    return {
        "samples": len(ordered),
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[max(0, round(len(ordered) * 0.95) - 1)],
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
    }


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def query_value(dsn: str, sql: str, params: tuple = ()) -> Any:
    """Run one query on a connection of its own and return the first column of its row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def other_connections(dsn: str) -> int:
    """How many other sessions are connected to this database (to see workers arrive)."""
    return query_value(
        dsn,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )


def spawn(argv: list[str], *, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a worker process from the project's root; its output goes to our stderr."""
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=sys.stderr,
    )


def serve_command(module: str, dsn: str, concurrency: int) -> list[str]:
    """The command line of a system module's own worker process (its ``serve`` mode)."""
    return [sys.executable, "-m", module, "serve", "--dsn", dsn, "--concurrency", str(concurrency)]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop worker processes: SIGTERM (then SIGINT, then SIGKILL if they linger)."""
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes:
        for sig in (signal.SIGINT, signal.SIGKILL):
            try:
                proc.wait(15)
                break
            except subprocess.TimeoutExpired:
                proc.send_signal(sig)
        proc.wait(15)


def check_alive(processes: list[subprocess.Popen[bytes]]) -> bool:
    """True while every worker process still runs (a dead worker fails the measurement)."""
    dead = [proc.pid for proc in processes if proc.poll() is not None]
    if dead:
        raise RuntimeError(f"worker process(es) {dead} exited early")
    return True
