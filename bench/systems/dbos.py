"""DBOS Transact: W1 to W4, by two paths.

- ``--variant queue`` (W1, W2): the like-for-like path, "enqueue, a worker executes". A
  worker process launches DBOS with a queue (``DBOS.register_queue(worker_concurrency=N)``,
  default polling); the client enqueues every run in one transaction with
  ``DBOSClient.enqueue_in_transaction``. The clock runs from that commit to the last
  workflow's ``updated_at``.
- ``--variant direct`` (W1 to W4): one process launches DBOS and starts each workflow with
  ``DBOS.start_workflow``, which runs it at once in that process, with no concurrency limit
  (one thread per workflow). The clock runs from the first start (each start commits on
  its own) to the last workflow's ``updated_at``. W3 and W4 use this path, as DBOS's
  documentation does: the process that sends and reads is the one executing the workflow.
"""

from __future__ import annotations

import signal
import threading
import time
from types import SimpleNamespace

from bench import workloads
from bench.systems import base

SUPPORTED = {
    "W1": "queue: a worker process, worker_concurrency N; direct: DBOS.start_workflow",
    "W2": "queue: a worker process, worker_concurrency 4; direct: DBOS.start_workflow",
    "W3": "DBOS.recv() in a workflow, DBOS.send() and get_result() in the same process",
    "W4": "DBOS.write_stream() in a workflow, DBOS.read_stream() in the same process",
}
UNSUPPORTED: dict[str, str] = {}
VARIANTS = ("queue", "direct")
QUEUE = "bench"


def define():
    """Register the workloads' workflows (before DBOS.launch)."""
    from dbos import DBOS

    @DBOS.step(name="bench.noop")
    def noop(index: int) -> int:
        return index

    @DBOS.workflow(name="bench.ten_steps")
    def ten_steps(steps: int = 10) -> int:
        return sum(noop(i) for i in range(steps))

    @DBOS.workflow(name="bench.one_step")
    def one_step() -> int:
        return noop(1)

    @DBOS.workflow(name="bench.wait_message")
    def wait_message() -> object:
        return DBOS.recv("go", timeout_seconds=60)

    @DBOS.workflow(name="bench.stream_writer")
    def stream_writer(items: int = 1000) -> int:
        for index in range(items):
            DBOS.write_stream("out", index)
        DBOS.close_stream("out")
        return items

    return SimpleNamespace(
        ten_steps=ten_steps,
        one_step=one_step,
        wait_message=wait_message,
        stream_writer=stream_writer,
    )


def launch(dsn: str):
    from dbos import DBOS

    DBOS(config={"name": "bench", "system_database_url": dsn, "log_level": "WARNING"})
    workflows = define()
    DBOS.launch()
    return workflows


def serve(dsn: str, concurrency: int) -> None:
    """A worker process: execute the queue's workflows until SIGTERM."""
    from dbos import DBOS

    launch(dsn)
    DBOS.register_queue(QUEUE, worker_concurrency=concurrency)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    DBOS.destroy()


def finished(dsn: str) -> tuple[int, int]:
    """How many workflows succeeded, and how many ended otherwise."""
    row = base.query_value(
        dsn,
        "SELECT ARRAY[count(*) FILTER (WHERE status = 'SUCCESS'),"
        " count(*) FILTER (WHERE status IN"
        " ('ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'))]"
        " FROM dbos.workflow_status",
    )
    return row[0], row[1]


def wait_finished(dsn: str, runs: int, processes: list) -> float:
    """Wait for ``runs`` workflows to succeed; return the last one's end (epoch seconds)."""

    def done() -> bool:
        base.check_alive(processes)
        succeeded, failed = finished(dsn)
        if failed:
            raise RuntimeError(f"{failed} workflows did not succeed")
        return succeeded >= runs

    base.wait_until(done, timeout=1800, what="the workflows to finish")
    return base.query_value(dsn, "SELECT max(updated_at) FROM dbos.workflow_status") / 1000


def throughput_queue(dsn: str, workflow: str, runs: int, args: tuple, steps: int, concurrency: int):
    import sqlalchemy as sa
    from dbos import DBOSClient

    worker = base.spawn(base.serve_command("bench.systems.dbos", dsn, concurrency))
    try:
        base.wait_until(
            lambda: (
                base.check_alive([worker])
                and base.query_value(dsn, "SELECT to_regclass('dbos.queues') IS NOT NULL")
                and base.query_value(
                    dsn, "SELECT count(*) FROM dbos.queues WHERE name = %s", (QUEUE,)
                )
            ),
            timeout=60,
            what="the DBOS worker to register its queue",
        )
        client = DBOSClient(system_database_url=dsn)
        engine = sa.create_engine(sa.make_url(dsn).set(drivername="postgresql+psycopg"))
        options = {"queue_name": QUEUE, "workflow_name": workflow}
        began = time.perf_counter()
        with engine.begin() as conn:
            for _ in range(runs):
                client.enqueue_in_transaction(conn, options, *args)
        enqueue_seconds = time.perf_counter() - began
        committed = time.time()
        last = wait_finished(dsn, runs, [worker])
        client.destroy()
        engine.dispose()
    finally:
        base.stop([worker])
    return base.throughput(
        runs=runs, steps=steps, seconds=last - committed, enqueue_seconds=enqueue_seconds
    )


def throughput_direct(dsn: str, workflow, runs: int, args: tuple, steps: int) -> dict:
    from dbos import DBOS

    began_wall = time.time()
    began = time.perf_counter()
    handles = [DBOS.start_workflow(workflow, *args) for _ in range(runs)]
    enqueue_seconds = time.perf_counter() - began
    for handle in handles:
        handle.get_result()
    last = wait_finished(dsn, runs, [])
    return base.throughput(
        runs=runs, steps=steps, seconds=last - began_wall, enqueue_seconds=enqueue_seconds
    )


def w3(workflows, sends: int) -> dict:
    from dbos import DBOS

    samples = []
    for _ in range(sends):
        handle = DBOS.start_workflow(workflows.wait_message)
        time.sleep(0.1)  # the workflow has reached its recv
        began = time.perf_counter()
        DBOS.send(handle.workflow_id, "go", topic="go")
        handle.get_result()
        samples.append((time.perf_counter() - began) * 1000)
    return base.latency(samples)


def w4(workflows, items: int, dsn: str) -> dict:
    from dbos import DBOS

    began = time.perf_counter()
    handle = DBOS.start_workflow(workflows.stream_writer, items)
    received = sum(1 for _ in DBOS.read_stream(handle.workflow_id, "out"))
    read_seconds = time.perf_counter() - began
    handle.get_result()
    if received != items:
        raise RuntimeError(f"the client read {received} of {items} items")
    created, updated = base.query_value(
        dsn,
        "SELECT ARRAY[created_at, updated_at] FROM dbos.workflow_status WHERE workflow_uuid = %s",
        (handle.workflow_id,),
    )
    write_seconds = (updated - created) / 1000
    return {
        "items": items,
        "written_per_s": items / write_seconds,
        "read_per_s": items / read_seconds,
    }


def main() -> None:
    args = base.parse_args(SUPPORTED, variants=VARIANTS)
    size = workloads.sizes(args.quick)
    if args.workload == "serve":
        serve(args.dsn, args.concurrency)
        return
    if args.variant == "queue" and args.workload in ("W1", "W2"):
        runs = size.w1_runs if args.workload == "W1" else size.w2_runs
        runs = workloads.dbos_queue_runs(args.workload, args.concurrency, runs)
        if args.workload == "W1":
            spec = ("bench.ten_steps", (size.w1_steps,), size.w1_steps)
        else:
            spec = ("bench.one_step", (), 1)
        result = throughput_queue(args.dsn, spec[0], runs, spec[1], spec[2], args.concurrency)
        base.emit(result)
        return
    from dbos import DBOS

    workflows = launch(args.dsn)
    try:
        if args.workload == "W1":
            result = throughput_direct(
                args.dsn, workflows.ten_steps, size.w1_runs, (size.w1_steps,), size.w1_steps
            )
        elif args.workload == "W2":
            result = throughput_direct(args.dsn, workflows.one_step, size.w2_runs, (), 1)
        elif args.workload == "W3":
            result = w3(workflows, size.w3_sends)
        else:
            result = w4(workflows, size.w4_items, args.dsn)
    finally:
        DBOS.destroy()
    base.emit(result)


if __name__ == "__main__":
    main()
