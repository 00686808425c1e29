"""W5 for DBOS: what waiting workflows cost, and how fast they are all woken.

Run with a Python that has ``dbos`` installed (no Django needed)::

    /tmp/dbosvenv/bin/python bench/w5_dbos.py --dsn postgresql://postgres@127.0.0.1:5432/x

DBOS runs each workflow in a thread of the process that starts it, and a workflow that
waits keeps its thread, blocked, until it resumes. For each case a fresh child process
(and a fresh system database, ``<dsn>_<case>``) starts N workflows, then measures its
own RSS, threads and CPU once they all wait and after idling, and the time until all
have completed after the wake-up:

- ``recv``: each waits in ``DBOS.recv("go")``; DBOS has no broadcast, so they are woken
  by one ``DBOS.send_bulk()`` of N messages (one transaction);
- ``get_event``: each waits in ``DBOS.get_event(coordinator, "go")``; one coordinator
  workflow's ``DBOS.set_event("go")`` wakes them all (the closest to a broadcast);
- ``sleep``: each sleeps in ``DBOS.sleep()`` until one shared time.

A workflow counts as waiting once DBOS has checkpointed its wait's timeout (recv and
get_event) or its wake-up time (sleep): an ``operation_outputs`` row named
``DBOS.sleep``. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg

MB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
COORDINATOR = "w5-coordinator"
VARIANTS = ("recv", "get_event", "sleep")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def status() -> dict[str, float]:
    """Return this process's resident memory, peak (MB) and thread count."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else ""
    return {
        "rss_mb": round(int(fields["VmRSS"]) / 1024, 2),
        "hwm_mb": round(int(fields["VmHWM"]) / 1024, 2),
        "threads": int(fields["Threads"]),
    }


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def admin(dsn: str) -> tuple[str, str]:
    url = urlparse(dsn)
    return url._replace(path="/postgres").geturl(), url.path.lstrip("/")


def drop_database(dsn: str) -> None:
    server, name = admin(dsn)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_mb(conn: psycopg.Connection) -> dict[str, float]:
    """Return the database's size and the DBOS tables' (with indexes), in MB."""
    [(database,)] = conn.execute("SELECT pg_database_size(current_database())").fetchall()
    [(tables,)] = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'dbos' AND c.relkind = 'r'"
    ).fetchall()
    return {"database": round(database / MB, 3), "dbos_tables": round(tables / MB, 3)}


def wait_until(conn: psycopg.Connection, query: str, n: int, timeout: float) -> float:
    """Wait until ``query`` counts ``n``; return when this process saw it (epoch)."""
    deadline = time.monotonic() + timeout
    while (found := conn.execute(query).fetchone()[0]) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {found} of {n} after {timeout} s: {query}")
        time.sleep(0.05)
    return time.time()


def one_case(variant: str, n: int, dsn: str, idle: float) -> dict[str, Any]:
    """Measure one variant at one N in this process (a child of ``main``)."""
    from dbos import DBOS, SendMessage, SetWorkflowID

    DBOS(
        config={
            "name": f"bench-w5-{variant}",
            "system_database_url": dsn,
            "log_level": "WARNING",
        }
    )

    @DBOS.workflow()
    def wait_recv() -> Any:
        return DBOS.recv("go", timeout_seconds=24 * 3600)

    @DBOS.workflow()
    def wait_event() -> Any:
        return DBOS.get_event(COORDINATOR, "go", timeout_seconds=24 * 3600)

    @DBOS.workflow()
    def sleep_until(until: float) -> float:
        DBOS.sleep(until - time.time())
        return until

    @DBOS.workflow()
    def coordinator() -> None:
        DBOS.set_event("go", True)

    DBOS.launch()
    conn = psycopg.connect(dsn, autocommit=True)
    time.sleep(1.0)
    result: dict[str, Any] = {"N": n, "variant": variant, "process_fresh": status()}
    waiting = "SELECT count(*) FROM dbos.operation_outputs WHERE function_name = 'DBOS.sleep'"
    done = "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'"
    # Shared by every run: far enough ahead that all wait and are measured first.
    until = time.time() + 30 + idle + n / 50
    started = time.time()
    for _ in range(n):
        if variant == "recv":
            DBOS.start_workflow(wait_recv)
        elif variant == "get_event":
            DBOS.start_workflow(wait_event)
        else:
            DBOS.start_workflow(sleep_until, until)
    result["start_calls_s"] = round(time.time() - started, 3)
    wait_until(conn, waiting, n, timeout=60 + n / 10)
    [(last,)] = conn.execute(
        "SELECT coalesce(max(started_at_epoch_ms), 0) FROM dbos.operation_outputs "
        "WHERE function_name = 'DBOS.sleep'"
    ).fetchall()
    result["start_to_suspended_s"] = round(last / 1000 - started, 3) if n else None
    result["suspend_runs_per_s"] = round(n / (last / 1000 - started), 1) if n else None
    result["process_suspended"] = status()
    result["db_mb_suspended"] = database_mb(conn)
    cpu = cpu_seconds()
    time.sleep(idle)
    result["idle_s"] = idle
    result["idle_cpu_pct"] = round((cpu_seconds() - cpu) / idle * 100, 2)
    result["process_idle"] = status()
    result["db_mb_idle"] = database_mb(conn)
    if n:
        grown = result["process_idle"]["rss_mb"] - result["process_fresh"]["rss_mb"]
        result["rss_kb_per_waiting_workflow"] = round(grown * 1024 / n, 3)
        if variant == "sleep":
            if time.time() >= until:
                result["note"] = "the timers came due before the measurements ended"
            time.sleep(max(0.0, until - time.time()))
            woken_at = until
        else:
            messages = [SendMessage(handle, "go", "go") for handle in waiting_ids(conn)]
            woken_at = time.time()
            if variant == "recv":
                DBOS.send_bulk(messages)
            else:
                with SetWorkflowID(COORDINATOR):
                    DBOS.start_workflow(coordinator)
            result["wake_call_ms"] = round((time.time() - woken_at) * 1000, 3)
        target = n + (variant == "get_event")
        seen = wait_until(conn, done, target, timeout=120 + n / 10)
        [(first, last)] = conn.execute(
            "SELECT min(updated_at), max(updated_at) FROM dbos.workflow_status "
            "WHERE workflow_uuid <> %s",
            [COORDINATOR],
        ).fetchall()
        result["wake_all_s"] = round(last / 1000 - woken_at, 3)
        result["first_completed_s"] = round(first / 1000 - woken_at, 3)
        result["wake_observed_s"] = round(seen - woken_at, 3)
        result["resume_runs_per_s"] = round(n / (last / 1000 - woken_at), 1)
    result["process_after_wake"] = status()
    conn.close()
    return result


def waiting_ids(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT workflow_uuid FROM dbos.workflow_status WHERE status = 'PENDING'"
    ).fetchall()
    return [row[0] for row in rows]


def child(args: argparse.Namespace) -> None:
    variant, _, n = args.case.partition(":")
    code = 1
    try:
        print(json.dumps(one_case(variant, int(n), args.dsn, args.idle)), flush=True)
        code = 0
    finally:
        sys.stderr.flush()
        os._exit(code)  # waiting threads (a case that failed) must not keep it alive


def run_child(args: argparse.Namespace, variant: str, n: int) -> dict[str, Any]:
    url = urlparse(args.dsn)
    dsn = url._replace(path=f"{url.path.rstrip('/')}_{variant}_{n}").geturl()
    drop_database(dsn)
    command = [sys.executable, __file__, "--dsn", dsn, "--idle", str(args.idle)]
    command += ["--case", f"{variant}:{n}"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=args.case_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return {"N": n, "variant": variant, "error": f"killed after {args.case_timeout} s"}
    finally:
        drop_database(dsn)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"N": n, "variant": variant, "error": f"exited with {proc.returncode}"}
    return json.loads(lines[-1])


def can_run(n: int) -> str | None:
    """Return why N threads would be unsafe here, or None."""
    available_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            available_kb = int(line.split()[1])
    if available_kb < n * 1024 + 2 * 1024 * 1024:  # 1 MB a thread, 2 GB to spare
        return f"{n} threads need more memory than the {available_kb // 1024} MB available"
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    if n > pid_max // 2:
        return f"{n} threads exceed half of pid_max ({pid_max})"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--case-timeout", type=float, default=600.0)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        child(args)
        return
    cases: list[dict[str, Any]] = []
    for n in [0, *(int(size) for size in args.sizes.split(","))]:
        for variant in args.variants.split(",") if n else ["recv"]:
            reason = can_run(n)
            if reason is not None:
                cases.append({"N": n, "variant": variant, "skipped": reason})
                continue
            log(f"W5 DBOS {variant}, N={n}")
            cases.append(run_child(args, variant, n))
            log(json.dumps(cases[-1]))
            if "error" in cases[-1]:
                break  # a larger N will not do better
    print(json.dumps(report(cases)))


def report(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Summarise the cases: RSS per waiting workflow, wake-up times, by variant and N."""
    fresh = next((c["process_fresh"]["rss_mb"] for c in cases if "process_fresh" in c), None)
    per_variant: dict[str, dict[str, Any]] = {}
    for case in cases:
        if not case["N"] or "process_idle" not in case:
            continue
        entry = per_variant.setdefault(case["variant"], {})
        entry[str(case["N"])] = {
            "rss_mb_fresh": case["process_fresh"]["rss_mb"],
            "rss_mb_idle": case["process_idle"]["rss_mb"],
            "threads": case["process_idle"]["threads"],
            "rss_kb_per_waiting_workflow": case["rss_kb_per_waiting_workflow"],
            "idle_cpu_pct": case["idle_cpu_pct"],
            "start_to_suspended_s": case["start_to_suspended_s"],
            "suspend_runs_per_s": case["suspend_runs_per_s"],
            "wake_all_s": case.get("wake_all_s"),
            "dbos_tables_mb": case["db_mb_idle"]["dbos_tables"],
        }
    return {
        "workload": "W5",
        "system": "dbos",
        "version": importlib.metadata.version("dbos"),
        "python": sys.version.split()[0],
        "rss_mb_fresh": fresh,
        "by_variant": per_variant,
        "wake": {
            "recv": "one DBOS.send_bulk() of N messages (one transaction)",
            "get_event": "one DBOS.set_event() by a coordinator workflow",
            "sleep": "DBOS.sleep() until one shared time",
        },
        "cases": cases,
    }


if __name__ == "__main__":
    threading.excepthook = lambda hook: log(f"thread {hook.thread}: {hook.exc_value!r}")
    main()
