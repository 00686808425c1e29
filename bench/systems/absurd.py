"""Absurd: W1 to W3 with one worker process (``Absurd.start_worker``).

The schema is installed by Absurd's own CLI (``absurdctl init``, the SQL its package
carries), the queue by the SDK's ``create_queue``. The worker process polls the queue
every 0.25 s when idle (``start_worker``'s default; Absurd has no LISTEN/NOTIFY) and runs
``concurrency`` tasks at once, in threads that share its one connection. Every run is
spawned in one transaction on the client's connection; the clock runs from that commit to
the last run's ``completed_at``. In W3 a task waits in ``ctx.await_event()``; the client
emits the event (``emit_event``) and waits for the result with ``await_task_result``, which
polls with a backoff (50 ms, doubling, up to 1 s). The emit falls at a random point of the
worker's poll interval, as a real event would. The JSON also gives the time from the
emit to the run's ``completed_at`` (``completed_median_ms``), which no poll of the client's
adds to.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import workloads
from bench.systems import base

SUPPORTED = {
    "W1": "one worker process (start_worker), concurrency {n}, default 0.25 s poll;"
    " runs spawned in one transaction",
    "W2": "one worker process (start_worker), concurrency {n}, default 0.25 s poll;"
    " runs spawned in one transaction",
    "W3": "ctx.await_event() in a task, emit_event() and await_task_result() (polls from"
    " 50 ms, doubling) from the client; one worker process, concurrency {n}, default 0.25 s"
    " poll",
}
UNSUPPORTED = {"W4": "no streams"}
QUEUE = "bench"
# start_worker's default poll interval, which the worker keeps.
POLL_SECONDS = 0.25
# The worker's connection says who it is, so the client can see it arrive.
WORKER_APP = "bench-absurd-worker"


def make_app(conn_or_url):
    """An Absurd client on the benchmark's queue, with the workloads' tasks registered."""
    from absurd_sdk import Absurd

    app = Absurd(conn_or_url, queue_name=QUEUE)

    @app.register_task("bench.ten_steps")
    def ten_steps(params, ctx) -> int:
        return sum(ctx.step("noop", lambda i=i: i) for i in range(params["steps"]))

    @app.register_task("bench.one_step")
    def one_step(params, ctx) -> int:
        return ctx.step("noop", lambda: 1)

    @app.register_task("bench.wait_event")
    def wait_event(params, ctx) -> object:
        return ctx.await_event(params["event"])

    return app


def install(dsn: str) -> None:
    """Install Absurd's schema with its CLI, then create the queue."""
    absurdctl = Path(sys.executable).parent / "absurdctl"
    subprocess.run(
        [str(absurdctl), "init", "--database", dsn],
        check=True,
        stdout=sys.stderr,
    )
    app = make_app(dsn)
    app.create_queue()
    app.close()


def serve(dsn: str, concurrency: int) -> None:
    """A worker process: run the queue's tasks until SIGTERM."""
    from psycopg.conninfo import make_conninfo

    app = make_app(make_conninfo(dsn, application_name=WORKER_APP))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: app.stop_worker())
    app.start_worker(concurrency=concurrency)
    app.close()


def start_worker(dsn: str, concurrency: int):
    worker = base.spawn(base.serve_command("bench.systems.absurd", dsn, concurrency))
    base.wait_until(
        lambda: (
            base.check_alive([worker])
            and base.query_value(
                dsn,
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                (WORKER_APP,),
            )
        ),
        timeout=60,
        what="the Absurd worker to connect",
    )
    return worker


def wait_finished(dsn: str, runs: int, worker) -> float:
    """Wait for ``runs`` tasks to complete; return the last one's end (epoch seconds)."""

    def done() -> bool:
        base.check_alive([worker])
        completed, failed = base.query_value(
            dsn,
            "SELECT ARRAY[count(*) FILTER (WHERE state = 'completed'),"
            " count(*) FILTER (WHERE state IN ('failed', 'cancelled'))]"
            f" FROM absurd.r_{QUEUE}",
        )
        if failed:
            raise RuntimeError(f"{failed} task runs did not complete")
        return completed >= runs

    base.wait_until(done, timeout=1800, what="the tasks to finish")
    last = base.query_value(
        dsn, f"SELECT extract(epoch FROM max(completed_at)) FROM absurd.r_{QUEUE}"
    )
    return float(last)


def throughput(dsn: str, task: str, runs: int, params: dict, steps: int, concurrency: int):
    import psycopg

    worker = start_worker(dsn, concurrency)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            client = make_app(conn)
            began = time.perf_counter()
            with conn.transaction():
                for _ in range(runs):
                    client.spawn(task, params)
            enqueue_seconds = time.perf_counter() - began
            committed = time.time()
        last = wait_finished(dsn, runs, worker)
    finally:
        base.stop([worker])
    return base.throughput(
        runs=runs, steps=steps, seconds=last - committed, enqueue_seconds=enqueue_seconds
    )


def w3(sends: int, concurrency: int, dsn: str) -> dict:
    """A task waits in await_event; the time from emit_event() to the client holding the
    result (and, apart, to the run's completed_at)."""
    worker = start_worker(dsn, concurrency)
    client = make_app(dsn)
    samples, completed = [], []
    phase = random.Random(0)
    try:
        for index in range(sends):
            event = f"go:{index}"
            task_id = client.spawn("bench.wait_event", {"event": event})["task_id"]
            base.wait_until(
                lambda t=task_id: base.query_value(
                    dsn, f"SELECT state = 'sleeping' FROM absurd.t_{QUEUE} WHERE task_id = %s", (t,)
                ),
                timeout=30,
                what="the task to reach its await_event",
            )
            # The worker is idle again, and polls: emit at a random point of its poll
            # interval, not always at the same distance from the suspension.
            time.sleep(0.02 + phase.uniform(0, POLL_SECONDS))
            began_wall = time.time()
            began = time.perf_counter()
            client.emit_event(event, "go")
            snapshot = client.await_task_result(task_id, timeout=30)
            samples.append((time.perf_counter() - began) * 1000)
            if snapshot.state != "completed":
                raise RuntimeError(f"task {task_id} ended {snapshot.state}")
            end = base.query_value(
                dsn,
                f"SELECT extract(epoch FROM completed_at) FROM absurd.r_{QUEUE} WHERE task_id = %s",
                (task_id,),
            )
            completed.append((float(end) - began_wall) * 1000)
    finally:
        client.close()
        base.stop([worker])
    at_completion = base.latency(completed)
    return {
        **base.latency(samples),
        "completed_median_ms": at_completion["median_ms"],
        "completed_p95_ms": at_completion["p95_ms"],
    }


def main() -> None:
    args = base.parse_args(SUPPORTED)
    size = workloads.sizes(args.quick)
    if args.workload == "serve":
        serve(args.dsn, args.concurrency)
        return
    install(args.dsn)
    if args.workload == "W1":
        result = throughput(
            args.dsn,
            "bench.ten_steps",
            size.w1_runs,
            {"steps": size.w1_steps},
            size.w1_steps,
            args.concurrency,
        )
    elif args.workload == "W2":
        result = throughput(args.dsn, "bench.one_step", size.w2_runs, {}, 1, args.concurrency)
    else:
        result = w3(size.w3_sends, args.concurrency, args.dsn)
    base.emit(result)


if __name__ == "__main__":
    main()
