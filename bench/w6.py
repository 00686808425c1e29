"""W6: claim latency with 1,000,000 finished runs in the table, against an empty table.

Three phases on one database: an empty table, then 1,000,000 completed runs with one
step each bulk-loaded (``INSERT ... SELECT generate_series``, the real schema, then
``VACUUM ANALYZE``), then the empty table again (``TRUNCATE``) so that the machine's
drift shows. In each phase:

- ``claim``: ``store.claims.claim_runs()`` called in this process on one freshly started pending
  run, ``--claims`` times (median, p95); and on no pending run (a worker's idle poll);
- ``end_to_end``: ``durable.start()`` with a ``run_workflow_worker --concurrency 4``
  process listening; ``started_at - created_at`` as the database stored them, and from
  the ``start()`` call's return (its commit) to ``started_at``;
- ``EXPLAIN (ANALYZE, BUFFERS)`` of the library's own claim statement (captured from
  ``claim_runs``; run in a transaction that is rolled back);
- the insert behind ``durable.start()`` and one worker maintenance round, timed.

    python -m bench.w6 --dsn postgresql://postgres@127.0.0.1:5432/bench_w6 [--quick]

Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench.w5 import (
    database_sizes,
    drop_database,
    ensure_database,
    log,
    maintenance_ms,
    setup_django,
    sql,
    start_worker,
    stop_worker,
)

CHUNK = 100_000
WORKER_ID = "bench-w6"

# One completed run per i: a time-ordered id (UUID version 7, as models.uuid7 makes)
# from its creation time, spread over the 30 days before the load.
RUN_COLUMNS = (
    "id, workflow_name, status, queue, priority, input, result, error, idempotency_key, "
    "attempt, lease_token, claimed_by, lease_expires_at, recoveries, available_at, wake_at, "
    "waiting_for, deadline_at, created_at, started_at, finished_at, updated_at, owner_id, "
    "wake_on, cancel_reason, cancel_requested_at, depth, parent_id, parent_close, "
    "parent_position"
)
CREATED = "(%(t0)s::timestamptz + i * interval '2 seconds')"
RUN_ID = (
    f"(lpad(to_hex((extract(epoch FROM {CREATED}) * 1000)::bigint), 12, '0') || '7' || "
    "substr(md5(i::text), 1, 3) || '8' || substr(md5(i::text), 4, 15))::uuid"
)
RUN_ROWS = (
    f"INSERT INTO durable_run ({RUN_COLUMNS}) SELECT {RUN_ID}, 'bench.one_step', "
    "'completed', 'default', 0, '{\"args\": [], \"kwargs\": {}}'::jsonb, '1'::jsonb, NULL, "
    f"NULL, 1, 1, NULL, NULL, 0, {CREATED}, NULL, '', NULL, {CREATED}, "
    f"{CREATED} + interval '5 ms', {CREATED} + interval '8 ms', {CREATED} + interval '8 ms', "
    "NULL, NULL, '', NULL, 0, NULL, 'cancel', NULL "
    "FROM generate_series(%(first)s, %(last)s) AS i"
)
STEP_ROWS = (
    "INSERT INTO durable_step (run_id, position, kind, name, status, result, error, attempts, "
    f"duration_ms, recorded_at) SELECT {RUN_ID}, 0, 'step', 'only', 'completed', '1'::jsonb, "
    f"NULL, 1, 0.02, {CREATED} + interval '7 ms' FROM generate_series(%(first)s, %(last)s) AS i"
)


def check_columns() -> None:
    """Fail if the schema has a required column the bulk load does not fill."""
    listed = {column.strip() for column in RUN_COLUMNS.split(",")}
    missing = [
        name
        for (name,) in sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = "
            "'durable_run' AND is_nullable = 'NO' AND column_default IS NULL"
        )
        if name not in listed
    ]
    if missing:
        raise RuntimeError(f"the bulk load does not fill durable_run's {missing}: update W6")


def bulk_load(rows: int) -> float:
    """Insert ``rows`` completed runs and their steps; return the seconds it took."""
    from django.db import transaction

    check_columns()
    started = time.perf_counter()
    [(t0,)] = sql("SELECT now() - interval '2 seconds' * %s", [rows + 60])
    for first in range(1, rows + 1, CHUNK):
        params = {"t0": t0, "first": first, "last": min(rows, first + CHUNK - 1)}
        with transaction.atomic():
            sql("SET LOCAL synchronous_commit = off")
            sql(RUN_ROWS, params)
            sql(STEP_ROWS, params)
        log(f"  loaded {params['last']:,} runs")
    sql("VACUUM ANALYZE durable_run")
    sql("VACUUM ANALYZE durable_step")
    return time.perf_counter() - started


def empty_tables() -> None:
    sql("TRUNCATE durable_run, durable_worker, durable_event CASCADE")
    sql("VACUUM ANALYZE durable_run")
    sql("VACUUM ANALYZE durable_step")


def finish(run_id: Any) -> None:
    """Mark a run this process claimed completed (a benchmark shortcut, not the API)."""
    sql(
        "UPDATE durable_run SET status = 'completed', claimed_by = NULL, "
        "lease_expires_at = NULL, finished_at = now(), updated_at = now() WHERE id = %s",
        [run_id],
    )


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 4),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 4),
        "min_ms": round(ordered[0], 4),
        "max_ms": round(ordered[-1], 4),
    }


def raw_claims(count: int, warmup: int = 5) -> dict[str, Any]:
    """Time ``claim_runs`` on one pending run, and on none, in this process."""
    import django_durable as durable
    from django_durable.store.claims import claim_runs
    from django_durable.store.records import Claim

    def claim() -> list[Claim]:
        return claim_runs(worker_id=WORKER_ID, queues=["default"], limit=1, lease_seconds=30)

    one, none, starts = [], [], []
    for index in range(count + warmup):
        started = time.perf_counter()
        durable.start("bench.one_step")
        inserted = time.perf_counter()
        claims = claim()
        claimed = time.perf_counter()
        if len(claims) != 1:
            raise RuntimeError(f"claimed {len(claims)} runs, expected 1")
        finish(claims[0].run_id)
        polled = time.perf_counter()
        if claim():
            raise RuntimeError("claimed a run when none was pending")
        if index >= warmup:
            starts.append((inserted - started) * 1000)
            one.append((claimed - inserted) * 1000)
            none.append((time.perf_counter() - polled) * 1000)
    return {"one_pending": stats(one), "none_pending": stats(none), "start": stats(starts)}


def claim_statement() -> tuple[str, dict[str, Any]]:
    """Return the SQL and parameters ``claim_runs`` executes (on one pending run)."""
    import django_durable as durable
    from django_durable.store import claims

    captured: list[tuple[str, dict[str, Any]]] = []
    original = claims.execute

    def capture(d: Any, query: str, params: dict[str, Any]) -> Any:
        captured.append((query, dict(params)))
        return original(d, query, params)

    durable.start("bench.one_step")
    claims.execute = capture  # type: ignore[assignment]
    try:
        [claim] = claims.claim_runs(
            worker_id=WORKER_ID, queues=["default"], limit=1, lease_seconds=30
        )
    finally:
        claims.execute = original  # type: ignore[assignment]
    finish(claim.run_id)
    return captured[0]


def explain(query: str, params: dict[str, Any], *, pending: bool) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) the claim, with a pending run or none; roll it back."""
    from django.db import connection, transaction

    import django_durable as durable

    with transaction.atomic():
        if pending:
            durable.start("bench.one_step")
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def end_to_end(env: dict[str, str], count: int, warmup: int = 3) -> dict[str, Any]:
    """Time ``start()`` to the worker's claim, with a worker process listening."""
    import django_durable as durable
    from django_durable.models import Run

    worker = start_worker(env, 4)
    stored, observed = [], []
    try:
        time.sleep(1.0)
        for index in range(count + warmup):
            handle = durable.start("bench.one_step")
            committed = time.time()
            handle.result(timeout=30)
            run = Run.objects.get(pk=handle.id)
            if index >= warmup:
                stored.append((run.started_at - run.created_at).total_seconds() * 1000)
                observed.append((run.started_at.timestamp() - committed) * 1000)
            time.sleep(0.02)  # the worker is idle again, listening
    finally:
        stop_worker(worker)
    return {"started_minus_created": stats(stored), "commit_to_started": stats(observed)}


def phase(env: dict[str, str], args: argparse.Namespace, label: str) -> dict[str, Any]:
    log(f"W6 {label}: {sql('SELECT count(*) FROM durable_run')[0][0]:,} runs")
    query, params = claim_statement()
    result: dict[str, Any] = {
        "runs_in_table": sql("SELECT count(*) FROM durable_run")[0][0],
        "db_mb": database_sizes(),
        "claim": raw_claims(args.claims),
        "end_to_end": end_to_end(env, args.e2e),
        "maintenance_ms": maintenance_ms(),
        "explain_claim_one_pending": explain(query, params, pending=True),
        "explain_claim_none_pending": explain(query, params, pending=False),
        "claim_sql": " ".join(query.split()),
    }
    log(json.dumps({k: v for k, v in result.items() if not k.startswith(("explain", "claim_"))}))
    return result


def ratio(loaded: dict[str, Any], empties: list[dict[str, Any]], *path: str) -> float:
    def pick(p: dict[str, Any]) -> float:
        value: Any = p
        for part in path:
            value = value[part]
        return float(value)

    baseline = statistics.mean(pick(p) for p in empties)
    return round(pick(loaded) / baseline, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="a database of its own (created if missing)")
    parser.add_argument("--quick", action="store_true", help="50,000 rows, fewer samples")
    parser.add_argument("--rows", type=int, help="finished runs to load (default 1,000,000)")
    parser.add_argument("--claims", type=int, help="raw claims per phase (default 200)")
    parser.add_argument("--e2e", type=int, help="end-to-end starts per phase (default 100)")
    parser.add_argument("--keep", action="store_true", help="keep a database this created")
    args = parser.parse_args()
    args.rows = args.rows or (50_000 if args.quick else 1_000_000)
    args.claims = args.claims or (30 if args.quick else 200)
    args.e2e = args.e2e or (10 if args.quick else 100)
    created = ensure_database(args.dsn)
    try:
        env = setup_django(args.dsn)
        empty_tables()
        before = phase(env, args, "empty")
        log(f"W6: loading {args.rows:,} completed runs with one step each")
        load_s = bulk_load(args.rows)
        loaded = phase(env, args, f"{args.rows:,} finished runs")
        empty_tables()
        after = phase(env, args, "empty again")
        from django.db import connections

        connections.close_all()
    finally:
        if created and not args.keep:
            drop_database(args.dsn)
    empties = [before, after]
    claim_ratio = ratio(loaded, empties, "claim", "one_pending", "median_ms")
    e2e_ratio = ratio(loaded, empties, "end_to_end", "started_minus_created", "median_ms")
    # A claim that holds no key's lock reads durable_run_ready_plain; one that holds some,
    # durable_run_ready: either is a partial index of ready runs only.
    found = re.findall(r"using (durable_run_ready\w*)", loaded["explain_claim_one_pending"])
    uses_index = bool(found)
    document = {
        "workload": "W6",
        "system": "django-durable",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": args.rows,
        "load_s": round(load_s, 1),
        "claim_median_ms": {
            "empty": before["claim"]["one_pending"]["median_ms"],
            "loaded": loaded["claim"]["one_pending"]["median_ms"],
            "empty_again": after["claim"]["one_pending"]["median_ms"],
        },
        "claim_p95_ms": {
            "empty": before["claim"]["one_pending"]["p95_ms"],
            "loaded": loaded["claim"]["one_pending"]["p95_ms"],
            "empty_again": after["claim"]["one_pending"]["p95_ms"],
        },
        "e2e_median_ms": {
            "empty": before["end_to_end"]["started_minus_created"]["median_ms"],
            "loaded": loaded["end_to_end"]["started_minus_created"]["median_ms"],
            "empty_again": after["end_to_end"]["started_minus_created"]["median_ms"],
        },
        "ratios": {
            "claim_median": claim_ratio,
            "claim_p95": ratio(loaded, empties, "claim", "one_pending", "p95_ms"),
            "idle_poll_median": ratio(loaded, empties, "claim", "none_pending", "median_ms"),
            "e2e_median": e2e_ratio,
            "start_median": ratio(loaded, empties, "claim", "start", "median_ms"),
        },
        "target": {
            "name": f"claim latency with {args.rows:,} finished runs within 2x of an empty table",
            "holds": claim_ratio <= 2 and e2e_ratio <= 2 and uses_index,
            "detail": (
                f"claim_runs median {claim_ratio}x, start-to-claim median {e2e_ratio}x the "
                "empty table's (mean of before and after); the plan "
                + (
                    f"uses the partial index {found[0]}"
                    if uses_index
                    else "does NOT use a partial index of ready runs"
                )
            ),
        },
        "phases": {"empty": before, "loaded": loaded, "empty_again": after},
    }
    print(json.dumps(document, default=str))


if __name__ == "__main__":
    sys.exit(main())
