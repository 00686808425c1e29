"""Statements per step: what the worker sends PostgreSQL for W1 and W2, counted exactly.

One in-process worker (``Worker(concurrency=1)`` serving in a thread, the same code
``run_workflow_worker`` runs, stopped once every run completed) executes W1's runs (10
trivial steps each) and then W2's (one step each) on a fresh database, while every
statement sent through psycopg (Django's own and the store's prepared ones) is counted by
its text. Prints per step and per run: statements, and those that write
(``INSERT``/``UPDATE``/``DELETE``, and the claim), and the statements by kind. Counting,
not timing: the figures do not depend on the machine.

    python -m bench.statements --dsn postgresql://postgres@127.0.0.1:5432/bench_statements

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.w5 import drop_database, ensure_database

ROOT = Path(__file__).resolve().parent.parent

# A statement's kind, from the start of its text (the store's statements are hand-written).
KINDS = (
    ("INSERT INTO durable_step (run_id, position, kind, name, status, result", "checkpoint"),
    ("INSERT INTO durable_step (run_id, position, kind, name, status, attempts", "start record"),
    ("WITH cand AS", "claim"),
    ("SELECT workflow_name, flow_key", "claim: keys at their limit"),
    ("WITH changed AS (UPDATE durable_run SET claimed_by", "run outcome"),
    ("WITH outcome AS (UPDATE durable_run", "run outcome and the next claim"),
)


def kind_of(sql: str) -> str:
    text = " ".join(sql.split())
    for start, kind in KINDS:
        if text.startswith(start):
            return kind
    return "other: " + text[:60]


class Counter:
    """Counts every statement psycopg sends, by kind (all threads of this process)."""

    def __init__(self) -> None:
        self.kinds: collections.Counter[str] = collections.Counter()
        self.on = False
        execute = psycopg.Cursor.execute
        counter = self

        def counting(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            if counter.on:
                text = query if isinstance(query, str) else query.as_string(cursor)
                counter.kinds[kind_of(text)] += 1
            return execute(cursor, query, params, **kwargs)

        psycopg.Cursor.execute = counting  # type: ignore[method-assign]


def measure(counter: Counter, workflow: str, runs: int, steps: int) -> dict[str, Any]:
    from django.db import transaction

    import django_durable as durable
    from django_durable.models import Run
    from django_durable.worker.worker import Worker

    kwargs = {"steps": steps} if workflow == "bench.ten_steps" else {}
    with transaction.atomic():
        for _ in range(runs):
            durable.start(workflow, kwargs=kwargs)
    counter.kinds.clear()
    counter.on = True
    # Serving, as run_workflow_worker does (burst mode hands every claim to the loop, and
    # its thread never stores an outcome with the next claim).
    worker = Worker(concurrency=1, poll_interval=0.5)
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 600
    while Run.objects.exclude(status="completed").exists():  # counted as "other"
        if time.monotonic() > deadline or not thread.is_alive():
            worker.request_stop()
            raise RuntimeError("some runs did not complete")
        time.sleep(0.2)
    counter.on = False
    worker.request_stop()
    thread.join(60)
    total = sum(counter.kinds.values())
    # The worker's own rounds (registering, maintenance, stopping) are not per run.
    per_run_kinds = {k: v for k, v in counter.kinds.items() if not k.startswith("other")}
    path = sum(per_run_kinds.values())
    return {
        "runs": runs,
        "steps_per_run": steps,
        "statements_per_step": round(path / (runs * steps), 3),
        "statements_per_run": round(path / runs, 3),
        "statements_counted": total,
        "by_kind_per_run": {k: round(v / runs, 3) for k, v in sorted(counter.kinds.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--quick", action="store_true", help="fewer runs (same figures)")
    args = parser.parse_args()
    drop_database(args.dsn)  # the helpers of bench/w5.py: a fresh database, dropped after
    ensure_database(args.dsn)
    try:
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        os.environ["BENCH_DATABASE_URL"] = args.dsn
        sys.path.insert(0, str(ROOT))
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        counter = Counter()
        runs = 20 if args.quick else 200
        w1 = measure(counter, "bench.ten_steps", runs, 10)
        w2 = measure(counter, "bench.one_step", runs, 1)
        from django.db import connections

        connections.close_all()
    finally:
        drop_database(args.dsn)
    kinds = w1["by_kind_per_run"]
    result = {
        # Every statement on a run's path, spread over its 10 steps (claim and outcome too).
        "W1.statements_per_step": w1["statements_per_step"],
        "W1.checkpoints_per_step": round(kinds.get("checkpoint", 0) / 10, 3),
        "W1.start_records_per_step": round(kinds.get("start record", 0) / 10, 3),
        "W1.statements_per_run": w1["statements_per_run"],
        "W2.statements_per_run": w2["statements_per_run"],
        "phases": {"W1": w1, "W2": w2},
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
