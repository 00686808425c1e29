"""W5: what suspended runs cost, and how fast one event wakes them all.

For N = 0, 1,000 and 10,000 runs (``--quick``: 0, 100, 500), with one real
``run_workflow_worker --concurrency 4`` process per N:

- ``event``: N runs of ``bench.w5_wait_event`` wait for one shared event name. Once all
  are suspended: the worker's RSS (``/proc/<pid>/status``), its CPU while idle, the
  database's size; then one ``durable.emit_event()`` and the time until all N runs have
  completed (``max(finished_at)`` from the database, and as the client saw it).
- ``sleep``: N runs of ``bench.w5_sleep_until`` sleep until one shared time, set far
  enough ahead that all of them are suspended and measured first; then the time from
  that moment until all have completed (the worker's maintenance wakes due timers).

Each case also reports how long it took to get the N runs suspended (runs/s, from the
commit of the transaction that started them to the last run's suspension). DBOS is
measured by ``bench/w5_dbos.py`` in a subprocess of whichever Python has it installed.

    python -m bench.w5 --dsn postgresql://postgres@127.0.0.1:5432/bench_w5 [--quick]

Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
DURABLE_TABLES = ("durable_run", "durable_step", "durable_event")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the database and Django --------------------------------------------------------------


def _admin_dsn(dsn: str) -> tuple[str, str]:
    """Return the DSN of the server's ``postgres`` database, and the name in ``dsn``."""
    url = urlparse(dsn)
    return url._replace(path="/postgres").geturl(), url.path.lstrip("/")


def ensure_database(dsn: str) -> bool:
    """Create the database of ``dsn`` if it does not exist; return whether it was created."""
    admin, name = _admin_dsn(dsn)
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(f'CREATE DATABASE "{name}"')
    return True


def drop_database(dsn: str) -> None:
    admin, name = _admin_dsn(dsn)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def environment(dsn: str) -> dict[str, str]:
    """Return the environment of this process and its workers: bench settings on ``dsn``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "PYTHONPATH": str(ROOT),
        "BENCH_DATABASE_URL": dsn,
    }


def setup_django(dsn: str) -> dict[str, str]:
    """Point Django at ``dsn``, set it up and migrate; return the workers' environment."""
    env = environment(dsn)
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return env


def sql(query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on Django's connection (autocommit) and return its rows."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return list(cursor.fetchall()) if cursor.description else []


def reset_tables() -> None:
    """Empty the durable tables (new files: their sizes start from nothing)."""
    sql("TRUNCATE durable_run, durable_worker, durable_event CASCADE")
    for table in DURABLE_TABLES:
        sql(f"VACUUM ANALYZE {table}")


def database_sizes() -> dict[str, float]:
    """Return the database's size and the durable tables' (with indexes and TOAST), in MB."""
    sizes = {"database": sql("SELECT pg_database_size(current_database())")[0][0] / MB}
    for table in DURABLE_TABLES:
        sizes[table] = sql("SELECT pg_total_relation_size(%s)", [table])[0][0] / MB
    sizes["durable_tables"] = sum(sizes[table] for table in DURABLE_TABLES)
    return {key: round(value, 3) for key, value in sizes.items()}


def count(status: str, workflow: str) -> int:
    return sql(
        "SELECT count(*) FROM durable_run WHERE status = %s AND workflow_name = %s",
        [status, workflow],
    )[0][0]


def wait_for_count(status: str, workflow: str, n: int, timeout: float) -> float:
    """Wait until ``n`` runs have ``status``; return when this process saw it (epoch)."""
    deadline = time.monotonic() + timeout
    while count(status, workflow) < n:
        if time.monotonic() > deadline:
            found = count(status, workflow)
            raise RuntimeError(f"only {found} of {n} runs reached {status} in {timeout} s")
        time.sleep(0.05)
    return time.time()


# --- the worker process -------------------------------------------------------------------


def start_worker(env: dict[str, str], concurrency: int) -> subprocess.Popen[bytes]:
    """Start ``run_workflow_worker`` and wait until it has registered itself."""
    from django_durable.models import WorkerProcess

    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "run_workflow_worker", "--concurrency", str(concurrency)],
        env=env,
        cwd=ROOT,
        stdout=sys.stderr,
    )
    deadline = time.monotonic() + 30
    while not WorkerProcess.objects.filter(pid=proc.pid).exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_worker(proc)
            raise RuntimeError("the worker did not start")
        time.sleep(0.05)
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (drain), then SIGKILL if it does not exit within 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def process_status(pid: int) -> dict[str, float]:
    """Return a process's resident memory, peak resident memory (MB) and thread count."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else ""
    return {
        "rss_mb": round(int(fields["VmRSS"]) / 1024, 2),
        "hwm_mb": round(int(fields["VmHWM"]) / 1024, 2),
        "threads": int(fields["Threads"]),
    }


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time a process has used."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --- measurements -------------------------------------------------------------------------


def rates_by_fifth(workflow: str) -> list[float | None]:
    """Return the completion rate (runs/s) of each fifth of the runs, in finishing order.

    A wake-all whose cost per run grows with the runs still waiting (a claim that reads
    the whole woken batch) shows as falling rates; a flat line is a constant cost per run.
    """
    rows = sql(
        "SELECT count(*), EXTRACT(EPOCH FROM max(finished_at) - min(finished_at)) FROM "
        "(SELECT finished_at, ntile(5) OVER (ORDER BY finished_at) AS fifth FROM durable_run "
        "WHERE workflow_name = %s) AS ranked GROUP BY fifth ORDER BY fifth",
        [workflow],
    )
    return [round(n / float(seconds), 1) if seconds else None for n, seconds in rows]


def enqueue(workflow: str, n: int, kwargs: dict[str, Any]) -> float:
    """Start ``n`` runs in one transaction; return when it committed (epoch)."""
    from django.db import transaction

    import django_durable as durable

    with transaction.atomic():
        for _ in range(n):
            durable.start(workflow, kwargs=kwargs)
    return time.time()


def maintenance_ms(repeat: int = 5) -> float:
    """Return the median time of one worker maintenance round, run in this process."""
    from django_durable import Worker

    worker = Worker(concurrency=1)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        worker.maintain()
        samples.append((time.perf_counter() - started) * 1000)
    return round(sorted(samples)[len(samples) // 2], 3)


def suspend_and_idle(
    env: dict[str, str], workflow: str, n: int, kwargs: dict[str, Any], args: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start a worker and ``n`` runs; measure once they are all suspended and after idling."""
    reset_tables()
    worker = start_worker(env, args.concurrency)
    time.sleep(1.0)  # settle: the worker's first maintenance rounds, its listener
    result: dict[str, Any] = {"N": n, "worker_fresh": process_status(worker.pid)}
    if n:
        began = time.time()
        committed = enqueue(workflow, n, kwargs)
        wait_for_count("waiting", workflow, n, timeout=max(60.0, n / 20))
        [(last,)] = sql(
            "SELECT max(updated_at) FROM durable_run WHERE workflow_name = %s", [workflow]
        )
        seconds = last.timestamp() - committed
        result["enqueue_s"] = round(committed - began, 3)
        result["suspend_s"] = round(seconds, 3)
        result["suspend_runs_per_s"] = round(n / seconds, 1)
        result["start_to_suspended_s"] = round(last.timestamp() - began, 3)
    result["worker_suspended"] = process_status(worker.pid)
    result["db_mb_suspended"] = database_sizes()
    cpu = cpu_seconds(worker.pid)
    time.sleep(args.idle)
    result["idle_s"] = args.idle
    result["idle_worker_cpu_pct"] = round((cpu_seconds(worker.pid) - cpu) / args.idle * 100, 2)
    result["worker_idle"] = process_status(worker.pid)
    result["db_mb_idle"] = database_sizes()
    result["maintenance_ms"] = maintenance_ms()
    if n:
        grown = result["worker_idle"]["rss_mb"] - result["worker_fresh"]["rss_mb"]
        result["rss_kb_per_suspended_run"] = round(grown * 1024 / n, 3)
    return worker, result


class StatementLog:
    """Count and time the library's statements in ``store.channels`` (the emitter's side)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def __enter__(self) -> StatementLog:
        from django_durable.store import channels

        self.module = channels
        self.original = channels.execute

        def timed(d: Any, query: str, params: dict[str, Any]) -> Any:
            started = time.perf_counter()
            result = self.original(d, query, params)
            self.entries.append(
                {
                    "sql": " ".join(query.split())[:160],
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                    "rows": max(result.rowcount, len(result.rows)),
                }
            )
            return result

        channels.execute = timed
        return self

    def __exit__(self, *exc: object) -> None:
        self.module.execute = self.original


def event_case(env: dict[str, str], n: int, args: argparse.Namespace) -> dict[str, Any]:
    """N runs wait for one event; one emission wakes them all."""
    import django_durable as durable

    workflow = "bench.w5_wait_event"
    name = f"bench/go/{n}/{time.time_ns()}"  # an emission before the wait would count
    worker, result = suspend_and_idle(env, workflow, n, {"name": name}, args)
    try:
        if n:
            started = time.time()
            with StatementLog() as statements:
                durable.emit_event(name, {"go": True})
            emitted = time.time()
            result["emit_ms"] = round((emitted - started) * 1000, 3)
            result["emit_statements"] = statements.entries
            result["left_waiting_after_emit"] = count("waiting", workflow)
            seen = wait_for_count("completed", workflow, n, timeout=max(120.0, n / 10))
            [(first, last)] = sql(
                "SELECT min(finished_at), max(finished_at) FROM durable_run "
                "WHERE workflow_name = %s",
                [workflow],
            )
            result["wake_all_s"] = round(last.timestamp() - started, 3)
            result["first_completed_s"] = round(first.timestamp() - started, 3)
            result["wake_observed_s"] = round(seen - started, 3)
            result["resume_runs_per_s"] = round(n / (last.timestamp() - started), 1)
            result["resume_runs_per_s_by_fifth"] = rates_by_fifth(workflow)
        result["worker_after_wake"] = process_status(worker.pid)
    finally:
        stop_worker(worker)
    return result


def sleep_case(
    env: dict[str, str], n: int, args: argparse.Namespace, lead_s: float
) -> dict[str, Any]:
    """N runs sleep until one shared time ``lead_s`` seconds ahead; their timers wake them."""
    workflow = "bench.w5_sleep_until"
    [(db_now,)] = sql("SELECT now()")
    until = db_now + timedelta(seconds=lead_s)
    worker, result = suspend_and_idle(env, workflow, n, {"until": until.isoformat()}, args)
    try:
        if n:
            result["timer_lead_s"] = round(lead_s, 1)
            [(now,)] = sql("SELECT clock_timestamp()")
            if now >= until:
                result["timer_wake_all_s"] = None
                result["note"] = "the timers came due before the measurements ended"
            else:
                time.sleep((until - now).total_seconds())
            wait_for_count("completed", workflow, n, timeout=max(120.0, n / 10))
            [(first, last)] = sql(
                "SELECT min(finished_at), max(finished_at) FROM durable_run "
                "WHERE workflow_name = %s",
                [workflow],
            )
            if "note" not in result:
                result["timer_wake_all_s"] = round((last - until).total_seconds(), 3)
                result["first_completed_s"] = round((first - until).total_seconds(), 3)
                result["resume_runs_per_s"] = round(n / (last - until).total_seconds(), 1)
                result["resume_runs_per_s_by_fifth"] = rates_by_fifth(workflow)
        result["worker_after_wake"] = process_status(worker.pid)
    finally:
        stop_worker(worker)
    return result


# --- DBOS -------------------------------------------------------------------------------


def dbos_python(choice: str | None) -> tuple[str | None, str]:
    """Return a Python that can import dbos (or None), and why it was chosen or not."""
    candidates = [choice] if choice else [sys.executable, "/tmp/dbosvenv/bin/python"]
    for python in candidates:
        if not python or not Path(python).exists():
            continue
        probe = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0:
            return python, probe.stdout.strip()
    return None, f"no Python with dbos installed among {candidates}"


def run_dbos(args: argparse.Namespace, sizes: list[int]) -> dict[str, Any]:
    """Run bench/w5_dbos.py in a Python that has dbos; return its JSON (or why not)."""
    python, version = dbos_python(args.dbos_python)
    if python is None:
        return {"skipped": version}
    url = urlparse(args.dsn)
    dsn = url._replace(path=f"{url.path.rstrip('/')}_dbos").geturl()
    command = [python, str(ROOT / "bench" / "w5_dbos.py"), "--dsn", dsn, "--idle", str(args.idle)]
    command += ["--sizes", ",".join(str(n) for n in sizes)]
    log(f"DBOS {version}: {' '.join(command)}")
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=args.dbos_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        drop_database(dsn)
        return {"skipped": f"DBOS did not finish within {args.dbos_timeout} s (killed)"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        drop_database(dsn)
        return {"skipped": f"bench/w5_dbos.py exited with {proc.returncode}"}
    return json.loads(lines[-1])


# --- the report ---------------------------------------------------------------------------


def summary(cases: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Return ``{N: value}`` of one field (a dotted path) across the cases."""
    found = {}
    for case in cases:
        value: Any = case
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found[str(case["N"])] = value
    return found


def memory_target(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Worker RSS independent of the number of suspended runs.

    Executing runs warms the worker once (imports, caches, prepared statements), so
    the test compares the two largest N: the RSS they add per suspended run is the
    memory a suspended run holds. It holds if that is below 1 KB per run and the RSS
    with the most runs suspended is within 20% of an idle fresh worker's.
    """
    with_runs = [case for case in cases if case["N"]]
    fresh = cases[0]["worker_fresh"]["rss_mb"]
    if len(with_runs) < 2:
        return {"name": "worker RSS independent of suspended runs", "holds": None}
    small, large = with_runs[-2], with_runs[-1]
    per_run = (
        (large["worker_idle"]["rss_mb"] - small["worker_idle"]["rss_mb"])
        * MB
        / (large["N"] - small["N"])
    )
    ratio = large["worker_idle"]["rss_mb"] / fresh
    return {
        "name": "worker RSS independent of the number of suspended runs",
        "holds": per_run < 1024 and ratio < 1.2,
        "detail": (
            f"idle worker RSS {fresh:.1f} MB fresh, {small['worker_idle']['rss_mb']:.1f} MB "
            f"with {small['N']} suspended runs, {large['worker_idle']['rss_mb']:.1f} MB with "
            f"{large['N']}: {per_run:.0f} bytes per suspended run between them"
        ),
        "bytes_per_suspended_run": round(per_run, 1),
    }


def numbers(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="a database of its own (created if missing)")
    parser.add_argument("--quick", action="store_true", help="N = 0, 100, 500; 2 s idle")
    parser.add_argument("--sizes", help="comma-separated N (default 0,1000,10000)")
    parser.add_argument("--idle", type=float, help="seconds idle before measuring again")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--variants", default="event,sleep")
    parser.add_argument("--dbos", choices=("yes", "no"), default="yes")
    parser.add_argument(
        "--dbos-python", help="a Python with dbos (default: this one, then /tmp/dbosvenv)"
    )
    parser.add_argument("--dbos-sizes", help="comma-separated N for DBOS (default 1000,10000)")
    parser.add_argument("--dbos-timeout", type=float, default=900)
    parser.add_argument("--keep", action="store_true", help="keep a database this created")
    args = parser.parse_args()
    sizes = numbers(args.sizes or ("0,100,500" if args.quick else "0,1000,10000"))
    dbos_sizes = numbers(args.dbos_sizes or ("100" if args.quick else "1000,10000"))
    if args.idle is None:
        args.idle = 2.0 if args.quick else 10.0
    variants = args.variants.split(",")
    created = ensure_database(args.dsn)
    try:
        env = setup_django(args.dsn)
        document = measure(env, args, sizes, variants)
        from django.db import connections

        connections.close_all()
    finally:
        if created and not args.keep:
            drop_database(args.dsn)
    if args.dbos == "yes":
        document["dbos"] = run_dbos(args, dbos_sizes)
        document["vs_dbos"] = side_by_side(document)
    print(json.dumps(document, default=str))


def side_by_side(document: dict[str, Any]) -> dict[str, Any]:
    """Return, per N both measured, what a waiting run costs in each system."""
    fields = ("rss_kb_per_suspended_run", "idle_worker_cpu_pct", "start_to_suspended_s")
    ours = {"event": {}, "sleep": {}} | {
        variant: {str(case["N"]): case for case in cases if case["N"]}
        for variant, cases in document["cases"].items()
    }
    found: dict[str, Any] = {}
    for variant, by_n in document["dbos"].get("by_variant", {}).items():
        mine = "sleep" if variant == "sleep" else "event"
        for n, theirs in by_n.items():
            if n not in ours[mine]:
                continue
            case = ours[mine][n]
            entry = found.setdefault(n, {})
            entry[f"django-durable {mine}"] = {key: case.get(key) for key in fields} | {
                "wake_all_s": case.get("wake_all_s", case.get("timer_wake_all_s"))
            }
            entry[f"dbos {variant}"] = {
                "rss_kb_per_suspended_run": theirs["rss_kb_per_waiting_workflow"],
                "idle_worker_cpu_pct": theirs["idle_cpu_pct"],
                "start_to_suspended_s": theirs["start_to_suspended_s"],
                "wake_all_s": theirs["wake_all_s"],
                "threads": theirs["threads"],
            }
    return found


def measure(
    env: dict[str, str], args: argparse.Namespace, sizes: list[int], variants: list[str]
) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    sleeps: list[dict[str, Any]] = []
    for n in sizes:
        if "event" in variants:
            log(f"W5 event, N={n}")
            events.append(event_case(env, n, args))
            log(json.dumps(events[-1], default=str))
        if "sleep" in variants:
            # Far enough ahead that all N runs are suspended and measured first.
            known = events[-1].get("suspend_s", n / 500) if events else n / 200
            lead = 1.5 * known + args.idle + 8 + (n / 2000)
            log(f"W5 sleep, N={n} (timers due in {lead:.0f} s)")
            sleeps.append(sleep_case(env, n, args, lead))
            log(json.dumps(sleeps[-1], default=str))
    cases = events or sleeps
    document: dict[str, Any] = {
        "workload": "W5",
        "system": "django-durable",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "concurrency": args.concurrency,
        "N": sizes,
        "rss_mb": {
            "fresh": summary(cases, "worker_fresh.rss_mb"),
            "suspended": summary(cases, "worker_suspended.rss_mb"),
            "idle": summary(cases, "worker_idle.rss_mb"),
            "after_wake": summary(cases, "worker_after_wake.rss_mb"),
        },
        "db_mb": {
            "database": summary(cases, "db_mb_idle.database"),
            "durable_tables": summary(cases, "db_mb_idle.durable_tables"),
        },
        "suspend_runs_per_s": summary(cases, "suspend_runs_per_s"),
        "target": memory_target(cases),
    }
    if events:
        document["wake_all_s"] = summary(events, "wake_all_s")
        document["resume_runs_per_s"] = summary(events, "resume_runs_per_s")
        document["emit_ms"] = summary(events, "emit_ms")
    if sleeps:
        document["timer_wake_all_s"] = summary(sleeps, "timer_wake_all_s")
    document["cases"] = {"event": events, "sleep": sleeps}
    return document


if __name__ == "__main__":
    main()
