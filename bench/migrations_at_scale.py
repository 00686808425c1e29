"""Every django-durable migration on PostgreSQL with 1,000,000 runs: its time, its lock on writers.

A throwaway database: the schema of ``0001_initial`` (the oldest state anyone can have),
1,000,000 runs bulk-loaded at that state (``INSERT ... SELECT generate_series``) with two
step records each, ``VACUUM ANALYZE``; then each migration 0002 ... head is applied alone
and timed. Meanwhile a probe thread on a connection of its own writes as a worker does,
over and over: it updates a run (a claim, a lease renewal) and inserts a step record (a
checkpoint). A write that waits on a migration's lock takes as long as the lock is held, so
the longest probe write during a migration is how long it locked workers out.

Runs: 90% completed, 3% failed, 1% cancelled, 5% waiting (half of them sleeping), 1%
pending, over 8 workflows, created over the last 7 days.

    python -m bench.migrations_at_scale [--runs 1000000] [--dsn postgresql://...] [--keep]

Run by hand (not in ``make test``). Progress goes to stderr; results go to
bench/results/migrations.md and migrations.json; the database is dropped at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.w5 import drop_database, ensure_database, log, sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DSN = "postgresql://postgres@127.0.0.1:5432/durable_bench_migrations"
CHUNK = 100_000
APP = "django_durable"
WORKFLOWS = [
    "orders.checkout",
    "mail.send_welcome",
    "billing.invoice",
    "shipping.label",
    "approvals.sign_off",
    "reports.nightly",
    "crm.sync_contact",
    "orders.refund",
]

# The columns of durable_run and durable_step at 0001_initial, and no others.
RUNS = """
WITH base AS (
  SELECT i, %(t0)s::timestamptz - i * %(step)s * interval '1 second' AS c,
         1 + mod(i * 7, 8) AS k,
         CASE WHEN mod(i * 7919, 1000) < 900 THEN 'completed'
              WHEN mod(i * 7919, 1000) < 930 THEN 'failed'
              WHEN mod(i * 7919, 1000) < 940 THEN 'cancelled'
              WHEN mod(i * 7919, 1000) < 990 THEN 'waiting'
              ELSE 'pending' END AS s
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
), timed AS (
  SELECT *, s IN ('completed', 'failed', 'cancelled') AS ended,
         s = 'waiting' AND mod(i, 2) = 0 AS sleeps FROM base
)
INSERT INTO durable_run (id, workflow_name, status, queue, priority, input, result, error,
  idempotency_key, attempt, lease_token, claimed_by, lease_expires_at, recoveries,
  available_at, wake_at, waiting_for, deadline_at, created_at, started_at, finished_at,
  updated_at, owner_id)
SELECT md5(i::text)::uuid, (%(workflows)s::text[])[k], s, 'default', 0,
       jsonb_build_object('args', jsonb_build_array('order-' || i), 'kwargs', '{}'::jsonb),
       CASE WHEN s = 'completed' THEN to_jsonb('shipped order-' || i) END,
       CASE WHEN s = 'failed' THEN jsonb_build_object('type', 'ValueError', 'message',
            'card declined for order ' || i, 'traceback', repeat('Traceback line ', 40)) END,
       NULL, 1, (s <> 'pending')::int, NULL, NULL, 0, c,
       CASE WHEN sleeps THEN %(t0)s::timestamptz + mod(i, 86400) * interval '1 second' END,
       CASE WHEN sleeps THEN 'sleep' WHEN s = 'waiting' THEN 'event paid' ELSE '' END,
       NULL, c,
       CASE WHEN s <> 'pending' THEN c + interval '5 ms' END,
       CASE WHEN ended THEN c + mod(i, 60) * interval '1 second' END,
       CASE WHEN ended THEN c + mod(i, 60) * interval '1 second' ELSE c END,
       NULL
FROM timed
"""
STEPS = """
INSERT INTO durable_step (run_id, position, kind, name, status, result, error, attempts,
  duration_ms, recorded_at)
SELECT md5(i::text)::uuid, p, 'step', CASE p WHEN 0 THEN 'reserve' ELSE 'charge' END,
       'completed', to_jsonb('done ' || i), NULL, 1, 3.5, %(t0)s::timestamptz
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i, generate_series(0, 1) AS p
WHERE mod(i * 7919, 1000) < 990
"""


def setup_django(dsn: str) -> None:
    """Point Django at ``dsn``, set it up, and build every app's schema but ours at 0001."""
    os.environ.update(DJANGO_SETTINGS_MODULE="bench.settings", BENCH_DATABASE_URL=dsn)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", APP, "0001_initial", verbosity=0)
    call_command("migrate", "auth", verbosity=0)
    call_command("migrate", "contenttypes", verbosity=0)


def bulk_load(runs: int) -> float:
    """Insert ``runs`` runs and their step records at the 0001 state; return the seconds."""
    from django.db import transaction

    started = time.perf_counter()
    [(t0,)] = sql("SELECT now()")
    params: dict[str, Any] = {"t0": t0, "step": 7 * 86400 / runs, "workflows": WORKFLOWS}
    for first in range(1, runs + 1, CHUNK):
        params.update(first=first, last=min(runs, first + CHUNK - 1))
        with transaction.atomic():
            sql("SET LOCAL synchronous_commit = off")
            sql(RUNS, params)
            sql(STEPS, params)
        log(f"  loaded {params['last']:,} runs")
    sql("VACUUM ANALYZE durable_run")
    sql("VACUUM ANALYZE durable_step")
    return time.perf_counter() - started


class Probe(threading.Thread):
    """Write as a worker does, again and again, on a connection of its own; time each write."""

    def __init__(self, dsn: str, run_id: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.run_id = run_id
        self.samples: list[tuple[float, float, float]] = []  # (start, end, seconds)
        self.stop = threading.Event()

    def run(self) -> None:
        position = 1000
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                began = time.perf_counter()
                with conn.transaction():
                    conn.execute(
                        "UPDATE durable_run SET updated_at = now() WHERE id = %s", [self.run_id]
                    )
                    conn.execute(
                        "INSERT INTO durable_step (run_id, position, kind, name, status, "
                        "attempts, recorded_at) VALUES (%s, %s, 'step', 'probe', 'completed', "
                        "1, now())",
                        [self.run_id, position],
                    )
                ended = time.perf_counter()
                self.samples.append((began, ended, ended - began))
                position += 1
                time.sleep(0.05)

    def longest_within(self, start: float, end: float) -> float:
        """Return the longest write that overlapped ``[start, end]``, in seconds."""
        overlapping = [s for b, e, s in self.samples if e >= start and b <= end]
        return max(overlapping, default=0.0)


def plan() -> list[tuple[str, str]]:
    """Return the migrations of this app after 0001, in order: (app, name)."""
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connection)
    leaf = loader.graph.leaf_nodes(APP)[0]
    return [node for node in loader.graph.forwards_plan(leaf) if node[0] == APP][1:]


def migrate_one(node: tuple[str, str]) -> float:
    """Apply one migration; return the seconds it took."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    started = time.perf_counter()
    executor.migrate([node])
    return time.perf_counter() - started


def operations(node: tuple[str, str]) -> str:
    """Describe a migration's operations in a few words."""
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    migration = MigrationLoader(connection).graph.nodes[node]
    return "; ".join(op.describe() for op in migration.operations)


def write_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "migrations.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Migrations with 1,000,000 runs (PostgreSQL)",
        "",
        f"Measured {results['when']} on {results['machine']} by `python -m "
        "bench.migrations_at_scale`: the schema of `0001_initial` with "
        f"{results['runs']:,} runs and {results['steps']:,} step records "
        f"(loaded in {results['load_seconds']:.0f} s), then each migration applied alone. "
        "*Writers waited* is the longest a worker-like write (update a run, insert a step "
        "record, every 50 ms on a connection of its own) took while the migration ran: how "
        "long the migration locked workers out.",
        "",
        "| migration | seconds | writers waited (s) | operations |",
        "|---|---:|---:|---|",
    ]
    for row in results["migrations"]:
        lines.append(
            f"| {row['name']} | {row['seconds']:.2f} | {row['writers_waited']:.2f} | "
            f"{row['operations']} |"
        )
    lines += [
        "",
        f"All of them: {results['total_seconds']:.1f} s. PostgreSQL {results['server_version']}.",
        "",
        "Each migration is one transaction: an index built on `durable_run` (CREATE INDEX "
        "takes a SHARE lock) or a foreign key checked makes writes to runs wait until the "
        "commit; added columns are nullable or have a constant default, which PostgreSQL 11 "
        "and later add without rewriting the table. The index builds grow with the table.",
        "",
    ]
    (RESULTS / "migrations.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--dsn", default=DSN)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    drop_database(args.dsn)
    ensure_database(args.dsn)
    try:
        setup_django(args.dsn)
        log(f"loading {args.runs:,} runs at 0001_initial")
        load_seconds = bulk_load(args.runs)
        [(steps,)] = sql("SELECT count(*) FROM durable_step")
        probe = Probe(args.dsn, str(sql("SELECT md5('1')::uuid")[0][0]))
        probe.start()
        time.sleep(0.5)
        rows = []
        for node in plan():
            started = time.perf_counter()
            seconds = migrate_one(node)
            time.sleep(0.2)  # the probe's write that waited has finished by now
            waited = probe.longest_within(started, started + seconds)
            log(f"  {node[1]}: {seconds:.2f} s, writers waited {waited:.2f} s")
            rows.append(
                {
                    "name": node[1],
                    "seconds": round(seconds, 3),
                    "writers_waited": round(waited, 3),
                    "operations": operations(node),
                }
            )
        probe.stop.set()
        probe.join()
        [(version,)] = sql("SHOW server_version")
        results = {
            "when": datetime.now(UTC).strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} CPUs",
            "runs": args.runs,
            "steps": steps,
            "load_seconds": round(load_seconds, 1),
            "server_version": version,
            "migrations": rows,
            "total_seconds": round(sum(row["seconds"] for row in rows), 2),
        }
        write_results(results)
        print(json.dumps(results))
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(args.dsn)


if __name__ == "__main__":
    main()
