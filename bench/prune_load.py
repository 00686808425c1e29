"""Pruning under load: ``durable.prune()`` while a worker runs W2, against each alone.

One database of its own: N finished runs (1,000,000; ``--quick``: 20,000) bulk-loaded
(``INSERT ... SELECT generate_series``, the real schema, then ``VACUUM ANALYZE``), each
with what a run leaves behind: 3 steps, a value, a stream item, a consumed message, and
one event for every tenth run. They finished between 60 and 8 days ago, the older half
before a boundary B. One real ``run_workflow_worker --concurrency 4`` process serves
all phases:

- ``w2_alone``: batches of W2 (runs of ``bench.one_step``, started in one transaction; the
  clock runs from its commit to the last run's ``finished_at``), before and after the rest;
- ``prune_alone``: ``durable.prune()`` in a subprocess deletes the older half (finished
  before B): runs per second, and rows per second (the runs and every row that went with
  them: steps, values, stream items, messages, events);
- ``with_prune``: the same subprocess deletes the newer half (``older_than`` 7 days) while
  W2 batches run one after the other; a batch counts when its last run finished before the
  prune did.
- ``EXPLAIN (ANALYZE, BUFFERS)`` of the statements one batch of the prune makes (rolled back).

The target (issue 19): W2 with the prune at least 80% of W2 alone (the medians of batches).

    python -m bench.prune_load --dsn postgresql://postgres@127.0.0.1:5432/prune_load [--quick]

``make bench-prune`` runs it; ``make bench`` runs it as an extra. Progress goes to stderr;
the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.w5 import (
    ROOT,
    drop_database,
    ensure_database,
    environment,
    log,
    setup_django,
    sql,
    start_worker,
    stop_worker,
)

CHUNK = 50_000
TARGET = 0.8
TERMINAL = ["completed", "failed", "cancelled"]
# What a run leaves behind, and is deleted with it (events go by their own age).
CHILD_TABLES = ("durable_step", "durable_value", "durable_stream", "durable_message")

RUN_COLUMNS = (
    "id, workflow_name, status, queue, priority, input, result, error, idempotency_key, "
    "attempt, lease_token, claimed_by, lease_expires_at, recoveries, available_at, wake_at, "
    "waiting_for, deadline_at, created_at, started_at, finished_at, updated_at, owner_id, "
    "wake_on, cancel_reason, cancel_requested_at, depth, parent_id, parent_close, "
    "parent_position"
)
# Run i (1..N) was created at t0 + i steps; its id is a UUID version 7 of that time.
CREATED = "(%(t0)s::timestamptz + i * %(step)s * interval '1 second')"
RUN_ID = (
    f"(lpad(to_hex((extract(epoch FROM {CREATED}) * 1000)::bigint), 12, '0') || '7' || "
    "substr(md5(i::text), 1, 3) || '8' || substr(md5(i::text), 4, 15))::uuid"
)
SERIES = "FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i"
LOAD = (
    f"INSERT INTO durable_run ({RUN_COLUMNS}) SELECT {RUN_ID}, 'bench.one_step', "
    "CASE WHEN mod(i, 50) = 0 THEN 'failed' ELSE 'completed' END, 'default', 0, "
    "'{\"args\": [], \"kwargs\": {}}'::jsonb, '1'::jsonb, NULL, NULL, 1, 1, NULL, NULL, 0, "
    f"{CREATED}, NULL, '', NULL, {CREATED}, {CREATED} + interval '5 ms', "
    f"{CREATED} + interval '8 ms', {CREATED} + interval '8 ms', NULL, NULL, '', NULL, 0, NULL, "
    f"'cancel', NULL {SERIES}",
    "INSERT INTO durable_step (run_id, position, kind, name, status, result, error, attempts, "
    f"executions, duration_ms, recorded_at) SELECT {RUN_ID}, p, 'step', 's' || p, "
    f"'completed', '1'::jsonb, NULL, 1, 1, 0.02, {CREATED} + interval '6 ms' {SERIES}, "
    "generate_series(0, 2) AS p",
    "INSERT INTO durable_value (run_id, key, value, position, created_at) "
    f"SELECT {RUN_ID}, 'progress', '{{\"done\": true}}'::jsonb, 3, {CREATED} {SERIES}",
    'INSERT INTO durable_stream (run_id, key, "offset", value, closes, position, created_at) '
    f"SELECT {RUN_ID}, 'log', 0, '\"done\"'::jsonb, true, 4, {CREATED} {SERIES}",
    "INSERT INTO durable_message (run_id, topic, data, idempotency_key, created_at, "
    f"consumed_at, consumed_position) SELECT {RUN_ID}, 'approve', '{{\"ok\": true}}'::jsonb, "
    f"NULL, {CREATED}, {CREATED} + interval '1 ms', 1 {SERIES}",
    "INSERT INTO durable_event (name, data, source, type, idempotency_key, created_at, run_id) "
    f"SELECT 'order.paid', '{{}}'::jsonb, '', '', NULL, {CREATED}, {RUN_ID} {SERIES} "
    "WHERE mod(i, 10) = 0",
)
COLUMNS = re.compile(r"INSERT INTO (\w+) \(([^)]*)\)")


def check_columns() -> None:
    """Fail if a table has a required column the bulk load does not fill."""
    for statement in LOAD:
        table, listed = COLUMNS.match(statement).groups()  # type: ignore[union-attr]
        names = {name.strip().strip('"') for name in listed.split(",")}
        required = sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'",
            [table],
        )
        missing = [name for (name,) in required if name not in names and name != "id"]
        if missing:
            raise RuntimeError(f"the bulk load does not fill {table}'s {missing}: update it")


def bulk_load(rows: int) -> tuple[float, datetime]:
    """Load ``rows`` finished runs and theirs; return the seconds taken and the boundary B."""
    from django.db import transaction

    check_columns()
    started = time.perf_counter()
    [(now,)] = sql("SELECT now()")
    t0 = now - timedelta(days=60)
    step = 52 * 86400 / rows
    for first in range(1, rows + 1, CHUNK):
        params = {"t0": t0, "step": step, "first": first, "last": min(rows, first + CHUNK - 1)}
        with transaction.atomic():
            sql("SET LOCAL synchronous_commit = off")
            for statement in LOAD:
                sql(statement, params)
        log(f"  loaded {params['last']:,} runs")
    for table in ("durable_run", "durable_event", *CHILD_TABLES):
        sql(f"VACUUM ANALYZE {table}")
    # Halfway between run N/2's end and run N/2 + 1's: the older half finished before it.
    boundary = t0 + timedelta(seconds=(rows // 2 + 0.5) * step)
    return time.perf_counter() - started, boundary


def doomed(before: datetime) -> dict[str, int]:
    """Count the finished runs that ended before ``before`` and the rows that go with them."""
    runs = "SELECT id FROM durable_run WHERE status = ANY(%s) AND finished_at < %s"
    counts = {"runs": sql(f"SELECT count(*) FROM ({runs}) AS r", [TERMINAL, before])[0][0]}
    for table in CHILD_TABLES:
        counts[table] = sql(
            f"SELECT count(*) FROM {table} WHERE run_id IN ({runs})", [TERMINAL, before]
        )[0][0]
    counts["durable_event"] = sql(
        "SELECT count(*) FROM durable_event WHERE created_at < %s", [before]
    )[0][0]
    return counts


# --- W2 ------------------------------------------------------------------------------------


def w2_batch(runs: int) -> dict[str, float]:
    """Start ``runs`` runs of bench.one_step in one transaction; time commit -> last end."""
    from django.db import transaction

    import django_durable as durable

    [(began,)] = sql("SELECT clock_timestamp()")
    with transaction.atomic():
        for _ in range(runs):
            durable.start("bench.one_step")
    committed = time.time()
    query = (
        "SELECT count(*), max(finished_at) FROM durable_run "
        "WHERE created_at >= %s AND status = ANY(%s)"
    )
    deadline = time.monotonic() + max(120.0, runs / 5)
    while True:
        [(done, last)] = sql(query, [began, TERMINAL])
        if done >= runs:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {runs} W2 runs finished")
        time.sleep(0.05)
    [(bad,)] = sql(
        "SELECT count(*) FROM durable_run WHERE created_at >= %s AND status <> 'completed'",
        [began],
    )
    if bad:
        raise RuntimeError(f"{bad} W2 runs did not complete")
    seconds = last.timestamp() - committed
    return {"runs": runs, "committed": committed, "last": last.timestamp(), "seconds": seconds}


def rates(batches: list[dict[str, float]]) -> dict[str, float] | None:
    """The median, min and max runs per second of W2 batches."""
    if not batches:
        return None
    values = sorted(batch["runs"] / batch["seconds"] for batch in batches)
    return {
        "n": len(values),
        "median": round(statistics.median(values), 1),
        "min": round(values[0], 1),
        "max": round(values[-1], 1),
    }


# --- the prune, in a process of its own ----------------------------------------------------


def prune_process(
    dsn: str, *, before: datetime | None, batch_size: int, pause: float | None
) -> subprocess.Popen[str]:
    """Start ``--prune-child``; return once it is about to call ``durable.prune()``."""
    argv = [sys.executable, "-m", "bench.prune_load", "--dsn", dsn, "--prune-child"]
    argv += ["--batch-size", str(batch_size)]
    if pause is not None:  # else prune()'s default: twice as long as each batch took
        argv += ["--pause", str(pause)]
    if before is not None:
        argv += ["--before", before.isoformat()]
    env = {**environment(dsn), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "pruning":
        proc.wait(30)
        raise RuntimeError("the prune process did not start")
    return proc


def prune_result(proc: subprocess.Popen[str], counts: dict[str, int]) -> dict[str, Any]:
    """Wait for the prune process; return its figures with the rows it deleted."""
    out, _ = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"the prune process exited {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    if result["runs"] != counts["runs"]:
        raise RuntimeError(f"the prune deleted {result['runs']} runs, not {counts['runs']}")
    rows = sum(counts.values())
    seconds = result["ended"] - result["began"]
    return {
        **result,
        "seconds": round(seconds, 3),
        "rows": rows,
        "rows_by_table": counts,
        "runs_per_s": round(result["runs"] / seconds, 1),
        "rows_per_s": round(rows / seconds, 1),
    }


def prune_child(args: argparse.Namespace) -> None:
    """``--prune-child``: call ``durable.prune()`` once and print its figures."""
    os.environ.update(environment(args.dsn))
    import django

    django.setup()
    import django_durable as durable

    if args.before:
        [(older_than,)] = sql("SELECT extract(epoch FROM now() - %s::timestamptz)", [args.before])
        older_than = float(older_than)
    else:
        older_than = 7 * 86400.0
    print("pruning", flush=True)
    began = time.time()
    pruned = durable.prune(older_than=older_than, batch_size=args.batch_size, pause=args.pause)
    ended = time.time()
    result = {"runs": pruned.runs, "events": pruned.events, "began": began, "ended": ended}
    print(json.dumps(result), flush=True)


def explain_batch(before: datetime, batch_size: int) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) the statements of one batch of the prune; roll it back."""
    from django.conf import settings
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext, override_settings

    import django_durable as durable

    [(first,)] = sql(
        "SELECT finished_at FROM durable_run WHERE status = ANY(%s) ORDER BY finished_at, id "
        "OFFSET %s LIMIT 1",
        [TERMINAL, batch_size],
    )
    cutoff = min(first, before)
    plans = []
    with transaction.atomic():
        [(older_than,)] = sql("SELECT extract(epoch FROM now() - %s::timestamptz)", [cutoff])
        # Statements the library prepares bypass Django's query log: not prepared here.
        unprepared = {**settings.DJANGO_DURABLE, "PREPARE_STATEMENTS": False}
        with (
            override_settings(DJANGO_DURABLE=unprepared),
            transaction.atomic(),
            CaptureQueriesContext(connection) as captured,
        ):
            durable.prune(older_than=float(older_than), batch_size=batch_size)
            transaction.set_rollback(True)
        for query in captured.captured_queries:
            statement = query["sql"]
            if not statement.startswith(("SELECT", "DELETE", "UPDATE")):
                continue
            plan = "\n".join(row[0] for row in sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}"))
            executed = [line for line in plan.splitlines() if line.startswith("Execution Time")]
            plans.append(
                {
                    "sql": " ".join(statement.split())[:400],
                    "plan": plan,
                    "seq_scan": "Seq Scan" in plan,
                    "execution_ms": float(executed[0].split()[2]) if executed else None,
                }
            )
        transaction.set_rollback(True)
    return plans


# --- the phases ----------------------------------------------------------------------------


def alone(batches: int, runs: int, label: str) -> list[dict[str, float]]:
    log(f"prune_load: W2 alone ({label}), {batches} batches of {runs} runs")
    return [w2_batch(runs) for _ in range(batches)]


def with_prune(args: argparse.Namespace) -> tuple[list[dict[str, float]], dict[str, Any], int]:
    """Run W2 batches while the prune deletes the newer half; return both sides' figures."""
    [(cutoff,)] = sql("SELECT now() - interval '7 days'")
    counts = doomed(cutoff)
    log(f"prune_load: W2 with the prune of {counts['runs']:,} runs")
    proc = prune_process(args.dsn, before=None, batch_size=args.batch_size, pause=args.pause)
    batches = []
    while proc.poll() is None:
        batches.append(w2_batch(args.w2_runs))
    pruned = prune_result(proc, counts)
    inside = [batch for batch in batches if batch["last"] <= pruned["ended"]]
    return inside, pruned, len(batches)


def target(alone_rate: dict[str, float], with_rate: dict[str, float] | None) -> dict[str, Any]:
    name = f"W2 with the prune running at least {TARGET:.0%} of W2 alone"
    if with_rate is None:
        return {
            "name": name,
            "holds": None,
            "detail": "no W2 batch ended before the prune did: load more runs (--rows)",
        }
    ratio = with_rate["median"] / alone_rate["median"]
    return {
        "name": name,
        "holds": ratio >= TARGET,
        "ratio": round(ratio, 3),
        "detail": (
            f"{with_rate['median']} runs/s with the prune ({with_rate['n']} batches) vs "
            f"{alone_rate['median']} alone ({alone_rate['n']} batches): {ratio:.0%}"
        ),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    env = setup_django(args.dsn)
    log(f"prune_load: loading {args.rows:,} finished runs with 3 steps, a value, ...")
    load_s, boundary = bulk_load(args.rows)
    worker = start_worker(env, 4)
    try:
        time.sleep(1.0)  # settle: the worker's first maintenance rounds, its listener
        w2_runs, w2_batches = args.w2_runs, args.w2_batches
        alone(1, w2_runs, "warm-up")
        before = alone(w2_batches, w2_runs, "before")
        plans = explain_batch(boundary, args.batch_size)
        counts = doomed(boundary)
        log(f"prune_load: the prune alone of {counts['runs']:,} runs")
        pruned_alone = prune_result(
            prune_process(args.dsn, before=boundary, batch_size=args.batch_size, pause=args.pause),
            counts,
        )
        log(json.dumps(pruned_alone))
        for table in ("durable_run", "durable_event", *CHILD_TABLES):
            sql(f"VACUUM ANALYZE {table}")
        inside, pruned_with, ran = with_prune(args)
        log(json.dumps(pruned_with))
        after = alone(w2_batches, w2_runs, "after")
    finally:
        stop_worker(worker)
    alone_rate = rates(before + after)
    assert alone_rate is not None
    with_rate = rates(inside)
    return {
        "workload": "prune",
        "system": "django-durable",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": args.rows,
        "batch_size": args.batch_size,
        "pause": "twice the batch" if args.pause is None else args.pause,
        "load_s": round(load_s, 1),
        "w2_runs_per_s": {
            "alone": alone_rate["median"],
            "alone_before": rates(before)["median"],  # type: ignore[index]
            "alone_after": rates(after)["median"],  # type: ignore[index]
            "with_prune": with_rate["median"] if with_rate else None,
        },
        "w2_batches_with_prune": {"counted": len(inside), "ran": ran},
        "prune_runs_per_s": {
            "alone": pruned_alone["runs_per_s"],
            "with_w2": pruned_with["runs_per_s"],
        },
        "prune_rows_per_s": {
            "alone": pruned_alone["rows_per_s"],
            "with_w2": pruned_with["rows_per_s"],
        },
        "prune_seconds": {"alone": pruned_alone["seconds"], "with_w2": pruned_with["seconds"]},
        "target": target(alone_rate, with_rate),
        "phases": {
            "w2_alone": alone_rate,
            "w2_with_prune": with_rate,
            "prune_alone": pruned_alone,
            "prune_with_w2": pruned_with,
            "plans": plans,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="a database of its own (created if missing)")
    parser.add_argument("--quick", action="store_true", help="20,000 runs, smaller W2 batches")
    parser.add_argument("--rows", type=int, help="finished runs to load (default 1,000,000)")
    parser.add_argument("--w2-runs", type=int, help="runs per W2 batch (default 500)")
    parser.add_argument("--w2-batches", type=int, help="W2 batches alone, before and after")
    parser.add_argument("--batch-size", type=int, default=500, help="prune's batch_size=")
    parser.add_argument(
        "--pause", type=float, help="prune's pause= (seconds; default: prune()'s own)"
    )
    parser.add_argument("--keep", action="store_true", help="keep a database this created")
    parser.add_argument("--prune-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--before", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prune_child:
        prune_child(args)
        return
    args.rows = args.rows or (20_000 if args.quick else 1_000_000)
    args.w2_runs = args.w2_runs or (100 if args.quick else 500)
    args.w2_batches = args.w2_batches or (2 if args.quick else 3)
    created = ensure_database(args.dsn)
    try:
        document = measure(args)
        from django.db import connections

        connections.close_all()
    finally:
        if created and not args.keep:
            drop_database(args.dsn)
    plans = document["phases"]["plans"]
    for plan in plans:
        log(f"-- {plan['execution_ms']} ms{', Seq Scan' * plan['seq_scan']}: {plan['sql']}")
        log(plan["plan"])
    log(json.dumps(document["target"]))
    print(json.dumps(document, default=str))


if __name__ == "__main__":
    sys.exit(main())
