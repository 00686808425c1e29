"""procrastinate: W2 only, one worker process with ``concurrency=4``.

procrastinate runs jobs, not workflows: it has no steps, messages or streams, so it
takes part in W2 (a job is a run of one step) and nothing else. The job is an
``async def``, as procrastinate's concurrency is asyncio's (its docs advise against
concurrency with blocking sync tasks). Everything else is procrastinate's default
(LISTEN/NOTIFY on, polling every 5 s as the fallback). The jobs are deferred in one
``batch_defer`` call; the clock runs from its return to the last ``succeeded`` event.
"""

from __future__ import annotations

import time

from bench import workloads
from bench.systems import base

SUPPORTED = {"W2": "one worker process (App.run_worker), concurrency=4, an async def task"}
UNSUPPORTED = {
    "W1": "a job queue: no steps",
    "W3": "a job queue: no messages to a running job",
    "W4": "a job queue: no streams",
}


def make_app(dsn: str):
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="bench.noop")
    async def noop(index: int = 1) -> int:
        return index

    return app


def serve(dsn: str, concurrency: int) -> None:
    """A worker process: run jobs until SIGTERM."""
    make_app(dsn).run_worker(concurrency=concurrency)


def w2(dsn: str, runs: int, concurrency: int) -> dict:
    app = make_app(dsn)
    with app.open():
        app.schema_manager.apply_schema()
    worker = base.spawn(base.serve_command("bench.systems.procrastinate", dsn, concurrency))
    try:
        base.wait_until(
            lambda: (
                base.check_alive([worker])
                and base.query_value(dsn, "SELECT count(*) FROM procrastinate_workers")
            ),
            timeout=60,
            what="the procrastinate worker to register",
        )
        with app.open():
            began = time.perf_counter()
            app.tasks["bench.noop"].batch_defer(*[{"index": 1}] * runs)
            enqueue_seconds = time.perf_counter() - began
        committed = time.time()

        def done() -> bool:
            base.check_alive([worker])
            succeeded, failed = base.query_value(
                dsn,
                "SELECT ARRAY[count(*) FILTER (WHERE status = 'succeeded'),"
                " count(*) FILTER (WHERE status IN ('failed', 'aborted', 'cancelled'))]"
                " FROM procrastinate_jobs",
            )
            if failed:
                raise RuntimeError(f"{failed} jobs did not succeed")
            return succeeded >= runs

        base.wait_until(done, timeout=1800, what="the jobs to finish")
    finally:
        base.stop([worker])
    last = base.query_value(
        dsn, "SELECT extract(epoch FROM max(at)) FROM procrastinate_events WHERE type = 'succeeded'"
    )
    return base.throughput(
        runs=runs, steps=1, seconds=float(last) - committed, enqueue_seconds=enqueue_seconds
    )


def main() -> None:
    args = base.parse_args(SUPPORTED)
    if args.workload == "serve":
        serve(args.dsn, args.concurrency)
        return
    base.emit(w2(args.dsn, workloads.sizes(args.quick).w2_runs, args.concurrency))


if __name__ == "__main__":
    main()
