"""The admin dashboard and run list with 1,000,000 runs on PostgreSQL: how long pages take.

One database of its own: 1,000,000 runs bulk-loaded (``INSERT ... SELECT generate_series``,
the real schema, then ``VACUUM ANALYZE``), created over the last 7 days across 8 workflows
and 4 queues: 90% completed, 3% failed, 1% cancelled, 5% waiting (for a timer or an event),
1% pending (a third of them not due yet), 200 running on 4 live workers; and 500 stopped
workers. Then:

- each page (the dashboard ``/admin/django_durable/run/dashboard/``; the run list: as it
  opens, filtered by status, searched by a workflow's name) rendered as a superuser
  through Django's test ``Client`` (the whole request: middleware, session, template),
  ``--renders`` times after a warm-up: median, p95, and the number of queries one page
  makes; the workflows of the runs are registered, as on a site that runs them;
- ``EXPLAIN (ANALYZE, BUFFERS)`` of every query the page made on the durable tables, and
  how many rows of ``durable_run`` each sequential scan in them read.

The targets (issues 15 and 19): each page under 200 ms (p95), and no query that reads more
of ``durable_run`` as the table grows. A sequential scan under a ``LIMIT`` (the run list
counts at most 10,001 runs) stops once it has its rows: harmless when the rows it wants are
many, a whole-table read when they are few. So a scan is judged by the rows it read
(returned, plus removed by its filter, in every loop): more than ``SCAN_BUDGET`` (twice the
count's bound) is a miss, whatever the time. The searches for one run's id and for a rare
workflow's name are the pages where a bounded scan would turn into a whole-table one.

    python -m bench.dashboard --dsn postgresql://postgres@127.0.0.1:5432/bench_dashboard

``make bench-admin`` runs it. Progress goes to stderr; results go to
bench/results/dashboard.json and dashboard.md; the last stdout line is the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.w5 import drop_database, ensure_database, log, sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LIST = "/admin/django_durable/run/"
# What each page is, and its address.
PAGES = {
    "dashboard": ("The dashboard", "/admin/django_durable/run/dashboard/"),
    "runs": ("The run list as it opens", LIST),
    "runs_failed": ("The run list, failed runs only", f"{LIST}?status__exact=failed"),
    "runs_search": ("The run list, searched by a workflow's name", f"{LIST}?q=billing"),
    "runs_search_rare": (
        "The run list, searched by a rare workflow's name (1 run in 16)",
        f"{LIST}?q=crm",
    ),
    # The id of one run of the load, whole, as an operator pastes it (see searched_id).
    "runs_search_id": ("The run list, searched by a run's id", f"{LIST}?q={{run_id}}"),
}
TARGET_MS = 200.0
# The rows of durable_run one sequential scan may read: twice the run list's count bound
# (EstimatedPaginator.EXACT_UP_TO + 1), the most a bounded count of a common filter reads.
SCAN_BUDGET = 2 * 10_001
CHUNK = 100_000
WORKERS = 4

RUN_COLUMNS = (
    "id, workflow_name, status, queue, priority, input, result, error, idempotency_key, "
    "attempt, lease_token, claimed_by, lease_expires_at, recoveries, available_at, wake_at, "
    "waiting_for, deadline_at, created_at, started_at, finished_at, updated_at, owner_id, "
    "wake_on, cancel_reason, cancel_requested_at, depth, parent_id, parent_close, "
    "parent_position"
)
# Weighted: the first workflows run more often. Each has its queue at the same index.
WORKFLOWS = (
    ["orders.checkout"] * 5
    + ["mail.send_welcome"] * 4
    + ["billing.invoice", "billing.invoice", "shipping.label", "shipping.label"]
    + ["approvals.manager_sign_off", "reports.nightly", "crm.sync_contact"]
)
QUEUES = ["default"] * 5 + ["mail"] * 4 + ["default"] * 4 + ["default", "reports", "crm"]
# Run i: created i steps before the load began; its status from a permutation of i.
ROWS = f"""
WITH base AS (
  SELECT i, %(t0)s::timestamptz - i * %(step)s * interval '1 second' AS c,
         1 + mod((i * 2654435761) >> 8, 16)::int AS k,
         CASE WHEN mod(i, 5000) = 0 THEN 'running'
              WHEN mod(i * 7919, 1000) < 900 THEN 'completed'
              WHEN mod(i * 7919, 1000) < 930 THEN 'failed'
              WHEN mod(i * 7919, 1000) < 940 THEN 'cancelled'
              WHEN mod(i * 7919, 1000) < 990 THEN 'waiting'
              ELSE 'pending' END AS s
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
), timed AS (
  SELECT *, s IN ('completed', 'failed', 'cancelled') AS ended,
         s = 'waiting' AND mod(i, 2) = 0 AS sleeps
  FROM base
)
INSERT INTO durable_run ({RUN_COLUMNS})
SELECT (lpad(to_hex((extract(epoch FROM c) * 1000)::bigint), 12, '0') || '7'
         || substr(md5(i::text), 1, 3) || '8' || substr(md5(i::text), 4, 15))::uuid,
       (%(workflows)s::text[])[k], s, (%(queues)s::text[])[k], 0,
       '{{"args": [], "kwargs": {{}}}}'::jsonb,
       CASE WHEN s = 'completed' THEN '1'::jsonb END,
       CASE WHEN s = 'failed' THEN jsonb_build_object('type', 'ValueError', 'message',
            'card declined for order ' || i || E'\\nretry with another card',
            'traceback', repeat('Traceback line ', 40)) END,
       NULL, 1 + mod(i, 3) * (s = 'failed')::int, (s <> 'pending')::int,
       CASE WHEN s = 'running' THEN 'bench-host:' || (100 + mod(i, {WORKERS})) || ':w' END,
       CASE WHEN s = 'running' THEN %(t0)s::timestamptz + interval '1 hour' END,
       0,
       CASE WHEN s = 'pending' AND mod(i, 3) = 0 THEN %(t0)s::timestamptz + interval '1 hour'
            ELSE c END,
       CASE WHEN sleeps THEN %(t0)s::timestamptz + mod(i, 86400) * interval '1 second' END,
       CASE WHEN sleeps THEN 'sleep' WHEN s = 'waiting' THEN 'event approval:' || i ELSE '' END,
       NULL, c,
       CASE WHEN s <> 'pending' THEN c + interval '5 ms' END,
       CASE WHEN ended THEN c + mod(i, 60) * interval '1 second' + interval '8 ms' END,
       CASE WHEN ended THEN c + mod(i, 60) * interval '1 second' + interval '8 ms'
            ELSE c + interval '2 seconds' END,
       NULL,
       CASE WHEN s = 'waiting' AND NOT sleeps THEN 'e:approval:' || i END,
       '', NULL, 0, NULL, 'cancel', NULL
FROM timed
"""
LIVE_WORKERS = """
INSERT INTO durable_worker (id, hostname, pid, queues, workflows, concurrency, started_at,
                            last_seen_at, stopped_at)
SELECT 'bench-host:' || (100 + n) || ':w', 'bench-host', 100 + n,
       '["default", "mail", "reports", "crm"]'::jsonb, to_jsonb(%(workflows)s::text[]), 64,
       now() - interval '1 day', now(), NULL
FROM generate_series(0, %(workers)s - 1) AS n
"""
STOPPED_WORKERS = """
INSERT INTO durable_worker (id, hostname, pid, queues, workflows, concurrency, started_at,
                            last_seen_at, stopped_at)
SELECT 'old-host:' || n || ':w', 'old-host', n, '["default"]'::jsonb, '[]'::jsonb, 4,
       now() - n * interval '1 hour', now() - n * interval '1 hour' + interval '50 minutes',
       now() - n * interval '1 hour' + interval '50 minutes'
FROM generate_series(1, 500) AS n
"""


def setup_django(dsn: str) -> None:
    """Point Django at ``dsn`` with the admin installed, set it up and migrate; register
    the workflows the runs are of (the list's filters and search read the registry)."""
    os.environ.update(DJANGO_SETTINGS_MODULE="bench.admin_settings", BENCH_DATABASE_URL=dsn)
    import django
    from django.core.management import call_command

    import django_durable as durable

    django.setup()
    call_command("migrate", verbosity=0)
    for name, queue in sorted(set(zip(WORKFLOWS, QUEUES, strict=True))):
        durable.workflow(name=name, queue=None if queue == "default" else queue)(noop)


def noop(ctx: Any) -> None:
    """The bench's workflows: registered, never run."""


def check_columns() -> None:
    """Fail if the schema has a required column the bulk load does not fill."""
    listed = {column.strip() for column in RUN_COLUMNS.split(",")}
    required = sql(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'durable_run' "
        "AND is_nullable = 'NO' AND column_default IS NULL"
    )
    missing = [name for (name,) in required if name not in listed]
    if missing:
        raise RuntimeError(f"the bulk load does not fill durable_run's {missing}: update it")


def bulk_load(rows: int) -> float:
    """Insert ``rows`` runs over the last 7 days, and the workers; return the seconds taken."""
    from django.db import transaction

    check_columns()
    started = time.perf_counter()
    sql("TRUNCATE durable_run, durable_worker CASCADE")
    [(t0,)] = sql("SELECT now()")
    step = 7 * 86400 / rows
    for first in range(1, rows + 1, CHUNK):
        params = {"t0": t0, "step": step, "first": first, "last": min(rows, first + CHUNK - 1)}
        with transaction.atomic():
            sql("SET LOCAL synchronous_commit = off")
            sql(ROWS, {**params, "workflows": WORKFLOWS, "queues": QUEUES})
        log(f"  loaded {params['last']:,} runs")
    sql(LIVE_WORKERS, {"workers": WORKERS, "workflows": sorted(set(WORKFLOWS))})
    sql(STOPPED_WORKERS)
    sql("VACUUM ANALYZE durable_worker")
    return time.perf_counter() - started


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
    }


def client() -> Any:
    """Return a test client logged in as a superuser."""
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.filter(username="bench").first()
    user = user or User.objects.create_superuser("bench", "bench@example.com", "bench")
    browser = Client()
    browser.force_login(user)
    return browser


def keep_alive() -> None:
    """Make the live workers' heartbeat now, as theirs would (between timed renders)."""
    sql("UPDATE durable_worker SET last_seen_at = now() WHERE stopped_at IS NULL")


def render(browser: Any, url: str) -> tuple[float, int]:
    """Render a page once; return its milliseconds and its size in bytes."""
    began = time.perf_counter()
    response = browser.get(url)
    took = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}")
    return took, len(response.content)


def page_queries(browser: Any, url: str) -> list[str]:
    """Return the SQL of every query one render of the page makes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    keep_alive()
    with CaptureQueriesContext(connection) as captured:
        render(browser, url)
    return [query["sql"] for query in captured.captured_queries]


def explain(query: str) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) one query; name the indexes it uses, its time, and the
    rows of durable_run its sequential scans read."""
    plan = "\n".join(row[0] for row in sql(f"EXPLAIN (ANALYZE, BUFFERS) {query}"))
    indexes = sorted(set(re.findall(r"(?: using | Bitmap Index Scan on )(\S+)", plan)))
    executed = [line for line in plan.splitlines() if line.startswith("Execution Time")]
    [(document,)] = sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}")
    document = json.loads(document) if isinstance(document, str) else document
    scanned = seq_scan_rows(document[0]["Plan"], "durable_run")
    return {
        "sql": " ".join(query.split()),
        "plan": plan,
        "indexes": indexes,
        "seq_scan_of_durable_run": scanned is not None,
        "seq_scan_rows": scanned,
        "execution_ms": float(executed[0].split()[2]) if executed else None,
    }


def seq_scan_rows(node: dict[str, Any], table: str) -> int | None:
    """Return how many rows the sequential scans of ``table`` in a JSON plan read (rows
    returned and rows their filter removed, in every loop), or None if there are none."""
    total = None
    if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == table:
        per_loop = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        # A parallel scan's figures are per process; its loops count the processes.
        total = round(per_loop * node.get("Actual Loops", 1))
    for child in node.get("Plans", []):
        rows = seq_scan_rows(child, table)
        if rows is not None:
            total = (total or 0) + rows
    return total


def searched_id() -> str:
    """Return the id a search looks for: a run from the middle of the last hour's."""
    [(run_id,)] = sql("SELECT id FROM durable_run ORDER BY created_at DESC OFFSET 100 LIMIT 1")
    return str(run_id)


def phase(browser: Any, renders: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Time each page (see ``page``)."""
    results = {}
    run_id = searched_id()
    for name, (_, address) in PAGES.items():
        url = address.format(run_id=run_id)
        log(f"  {name}: {url}")
        results[name] = page(browser, url, renders, warmup)
    return results


def page(browser: Any, url: str, renders: int, warmup: int) -> dict[str, Any]:
    """Render a page once (its templates loaded), once more with an empty cache (timed
    apart), ``warmup`` times more, then ``renders`` times timed; explain its queries."""
    from django.core.cache import cache

    render(browser, url)
    cache.clear()  # the dashboard keeps the counts of whole past hours (core.hour_counts)
    keep_alive()
    cold, _ = render(browser, url)
    for _ in range(warmup):
        keep_alive()
        render(browser, url)
    samples, size = [], 0
    for _ in range(renders):
        keep_alive()
        took, size = render(browser, url)
        samples.append(took)
    queries = page_queries(browser, url)
    return {
        "cold_ms": round(cold, 2),
        "page": stats(samples),
        "page_bytes": size,
        "queries_per_page": len(queries),
        # The paginator's own EXPLAIN (an estimated count) is not explained again.
        "plans": [
            explain(query)
            for query in queries
            if "durable_" in query and not query.startswith("EXPLAIN")
        ],
    }


def rewrite_last_day() -> int:
    """Write the last day's runs once more, as claims and ends do, and leave them so.

    Their table pages are no longer all-visible until a VACUUM, so the index-only scans
    fetch these rows from the table: the page as it is between two autovacuums.
    """
    [(count,)] = sql(
        "WITH touched AS (UPDATE durable_run SET updated_at = updated_at "
        "WHERE created_at >= now() - interval '1 day' RETURNING 1) SELECT count(*) FROM touched"
    )
    sql("ANALYZE durable_run")
    return int(count)


def target(rows: int, phases: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Return whether every page's p95 is under TARGET_MS in every phase, with no Seq Scan."""
    details, holds = [], True
    for name, pages in phases.items():
        for page_name, result in pages.items():
            times = result["page"]
            scans = [p["seq_scan_rows"] for p in result["plans"] if p["seq_scan_of_durable_run"]]
            over = [read for read in scans if read > SCAN_BUDGET]
            holds = holds and times["p95_ms"] < TARGET_MS and not over
            details.append(
                f"{page_name} {name}: median {times['median_ms']} ms, p95 {times['p95_ms']} ms"
                + (f", a Seq Scan of durable_run read {max(scans):,} rows" if scans else "")
                + (" (over the budget)" if over else "")
            )
    return {
        "name": (
            f"the admin dashboard and run list under {TARGET_MS:.0f} ms (p95) with {rows:,} runs, "
            f"no sequential scan reading more than {SCAN_BUDGET:,} rows of durable_run"
        ),
        "holds": holds,
        "detail": "; ".join(details),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the page on the freshly vacuumed table, then with the last day rewritten."""
    # The phases decide when the table is vacuumed, not autovacuum.
    sql("ALTER TABLE durable_run SET (autovacuum_enabled = false)")
    sql("VACUUM ANALYZE durable_run")
    browser = client()
    log("dashboard: rendering, the table freshly vacuumed")
    vacuumed = phase(browser, args.renders, args.warmup)
    log("dashboard: rendering, the last day's runs rewritten and not vacuumed")
    rows_rewritten = rewrite_last_day()
    rewritten = phase(browser, args.renders, 1)
    phases = {"vacuumed": vacuumed, "rewritten": rewritten}
    return {
        "workload": "dashboard",
        "system": "django-durable",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": args.rows,
        "rows_rewritten": rows_rewritten,
        "target": target(args.rows, phases),
        "page_median_ms": figure(phases, "median_ms"),
        "page_p95_ms": figure(phases, "p95_ms"),
        "queries_per_page": {name: result["queries_per_page"] for name, result in vacuumed.items()},
        "phases": phases,
    }


def figure(phases: dict[str, dict[str, dict[str, Any]]], key: str) -> dict[str, Any]:
    """Return one timing of each page in each phase: ``{page: {phase: ms}}``."""
    return {
        name: {phase: pages[name]["page"][key] for phase, pages in phases.items()} for name in PAGES
    }


PHASES = {
    "vacuumed": "The table freshly vacuumed (every page all-visible: index-only scans)",
    "rewritten": "The last day's runs written once more and not vacuumed yet (heap fetches)",
}


def markdown(document: dict[str, Any]) -> str:
    verdict = "holds" if document["target"]["holds"] else "MISSED"
    lines = [
        f"# The admin dashboard and run list with {document['rows']:,} runs ({document['date']})",
        "",
        f"Target: {document['target']['name']}: **{verdict}** ({document['target']['detail']}).",
        f"Bulk load: {document['load_s']} s. Written by `make bench-admin` (bench/dashboard.py).",
        "",
        "| page | address | phase | median | p95 | first, cache empty | queries |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, pages in document["phases"].items():
        for page_name, result in pages.items():
            title, url = PAGES[page_name]
            lines.append(
                f"| {title} | `{url}` | {name} | {result['page']['median_ms']} ms "
                f"| {result['page']['p95_ms']} ms | {result.get('cold_ms', '?')} ms "
                f"| {result['queries_per_page']} |"
            )
    for name, pages in document["phases"].items():
        lines += ["", f"## {PHASES[name]}"]
        for page_name, result in pages.items():
            lines += section(PAGES[page_name][0], result)
    return "\n".join(lines) + "\n"


def section(title: str, result: dict[str, Any]) -> list[str]:
    """The figures and plans of one page in one phase."""
    page = result["page"]
    lines = [
        "",
        f"### {title}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| page, median | {page['median_ms']} ms |",
        f"| page, p95 | {page['p95_ms']} ms |",
        f"| page, min / max | {page['min_ms']} / {page['max_ms']} ms |",
        f"| renders | {page['n']} |",
        f"| queries per page | {result['queries_per_page']} "
        f"({len(result['plans'])} on the durable tables) |",
        f"| page size | {result['page_bytes']:,} bytes |",
        "",
        "The plans (EXPLAIN ANALYZE, BUFFERS):",
    ]
    for plan in result["plans"]:
        indexes = ", ".join(plan["indexes"]) or "none"
        lines += ["", f"Indexes: {indexes}; {plan['execution_ms']} ms.", ""]
        lines += ["```sql", plan["sql"], "```", "", "```", plan["plan"], "```"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="a database of its own (created if missing)")
    parser.add_argument("--quick", action="store_true", help="20,000 runs, 5 renders")
    parser.add_argument("--rows", type=int, help="runs to load (default 1,000,000)")
    parser.add_argument("--renders", type=int, help="timed renders (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed renders first")
    parser.add_argument("--reuse", action="store_true", help="keep the rows already loaded")
    parser.add_argument("--keep", action="store_true", help="keep a database this created")
    args = parser.parse_args()
    args.rows = args.rows or (20_000 if args.quick else 1_000_000)
    args.renders = args.renders or (5 if args.quick else 50)
    created = ensure_database(args.dsn)
    try:
        setup_django(args.dsn)
        loaded = args.reuse and sql("SELECT count(*) FROM durable_run")[0][0] == args.rows
        if loaded:
            load_s = 0.0
        else:
            log(f"dashboard: loading {args.rows:,} runs")
            load_s = bulk_load(args.rows)
        document = {**measure(args), "load_s": round(load_s, 1)}
        from django.db import connections

        connections.close_all()
    finally:
        if created and not args.keep:
            drop_database(args.dsn)
    RESULTS.mkdir(parents=True, exist_ok=True)
    # A --quick run's figures mean nothing: kept aside, ignored by git.
    suffix = "-quick.tmp" if args.quick else ""
    (RESULTS / f"dashboard.json{suffix}").write_text(json.dumps(document, indent=1) + "\n")
    (RESULTS / f"dashboard.md{suffix}").write_text(markdown(document))
    log(markdown(document))
    print(json.dumps({k: v for k, v in document.items() if k != "phases"}))


if __name__ == "__main__":
    sys.exit(main())
