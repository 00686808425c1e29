"""django-durable: W1 to W4 with one `run_workflow_worker` process.

The ``keyed`` variant runs W2 under a concurrency key: the runs of ``KEYS`` customers,
started round-robin, at most one per customer at once (next to the plain queue's W2, the
cost of flow control in the claim).

The worker is started and has registered before the runs are enqueued, in one
transaction; the clock runs from that commit to the last run's ``finished_at``.
"""

from __future__ import annotations

import os
import sys
import time

from bench import workloads
from bench.systems import base

SUPPORTED = {
    "W1": "one run_workflow_worker process, --concurrency {n}",
    "W2": "one run_workflow_worker process, --concurrency {n}",
    "W3": "ctx.recv() in a run, durable.send() and RunHandle.result() from the client",
    "W4": "ctx.write_stream() in a run, durable.read_stream(follow=True) in the client",
}
UNSUPPORTED: dict[str, str] = {}
VARIANTS = ("default", "keyed")
# Customers of the keyed W2: runs are started round-robin over them.
KEYS = 100


def setup(dsn: str) -> None:
    """Configure Django for the fresh database and migrate it."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["BENCH_DATABASE_URL"] = dsn
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def start_worker(dsn: str, concurrency: int, *, settings: str = "bench.settings"):
    from django_durable.models import WorkerProcess

    proc = base.spawn(
        [sys.executable, "-m", "django", "run_workflow_worker", "--concurrency", str(concurrency)],
        env={"DJANGO_SETTINGS_MODULE": settings, "BENCH_DATABASE_URL": dsn},
    )
    base.wait_until(
        lambda: base.check_alive([proc]) and WorkerProcess.objects.filter(pid=proc.pid).exists(),
        timeout=60,
        what="the worker to register",
    )
    return proc


def throughput(
    workflow: str,
    runs: int,
    kwargs: dict,
    steps: int,
    concurrency: int,
    dsn: str,
    *,
    keys: int = 0,
):
    """Time ``runs`` runs of ``workflow``; with ``keys``, each run's ``customer`` is its
    index modulo ``keys``."""
    from django.db import transaction
    from django.db.models import Max

    import django_durable as durable
    from django_durable.models import Run

    worker = start_worker(dsn, concurrency)
    try:
        began = time.perf_counter()
        with transaction.atomic():
            for index in range(runs):
                extra = {"customer": index % keys} if keys else {}
                durable.start(workflow, kwargs={**kwargs, **extra})
        enqueue_seconds = time.perf_counter() - began
        committed = time.time()
        base.wait_until(
            lambda: base.check_alive([worker]) and Run.objects.finished().count() >= runs,
            timeout=600,
            what="the runs to finish",
        )
    finally:
        base.stop([worker])
    failed = Run.objects.exclude(status="completed").count()
    if failed:
        raise RuntimeError(f"{failed} runs did not complete")
    last = Run.objects.aggregate(last=Max("finished_at"))["last"].timestamp()
    return base.throughput(
        runs=runs, steps=steps, seconds=last - committed, enqueue_seconds=enqueue_seconds
    )


def w3(sends: int, concurrency: int, dsn: str) -> dict:
    """A run waits in recv; the time from send() to the client holding the result."""
    import django_durable as durable
    from django_durable.models import Run

    worker = start_worker(dsn, concurrency)
    samples = []
    try:
        for _ in range(sends):
            handle = durable.start("bench.wait_message")
            base.wait_until(
                lambda h=handle: Run.objects.filter(pk=h.id, status="waiting").exists(),
                timeout=30,
                what="the run to reach its recv",
            )
            time.sleep(0.02)  # the worker is idle again, listening
            began = time.perf_counter()
            durable.send(handle.id, "go", topic="go")
            handle.result(timeout=30)
            samples.append((time.perf_counter() - began) * 1000)
    finally:
        base.stop([worker])
    return base.latency(samples)


def w4(items: int, concurrency: int, dsn: str) -> dict:
    """One run writes ``items`` stream items; the client follows them as they commit."""
    import django_durable as durable
    from django_durable.models import Run

    worker = start_worker(dsn, concurrency)
    try:
        began = time.perf_counter()
        handle = durable.start("bench.stream_writer", kwargs={"items": items})
        received = sum(1 for _ in durable.read_stream(handle.id, "out", follow=True))
        read_seconds = time.perf_counter() - began
        handle.result(timeout=60)
    finally:
        base.stop([worker])
    if received != items:
        raise RuntimeError(f"the client read {received} of {items} items")
    run = Run.objects.get(pk=handle.id)
    write_seconds = (run.finished_at - run.started_at).total_seconds()
    return {
        "items": items,
        "written_per_s": items / write_seconds,
        "read_per_s": items / read_seconds,
    }


def main() -> None:
    args = base.parse_args(SUPPORTED, variants=VARIANTS)
    size = workloads.sizes(args.quick)
    setup(args.dsn)
    if args.workload == "W1":
        result = throughput(
            "bench.ten_steps",
            size.w1_runs,
            {"steps": size.w1_steps},
            size.w1_steps,
            args.concurrency,
            args.dsn,
        )
    elif args.workload == "W2" and args.variant == "keyed":
        result = throughput(
            "bench.one_step_keyed", size.w2_runs, {}, 1, args.concurrency, args.dsn, keys=KEYS
        )
    elif args.workload == "W2":
        result = throughput("bench.one_step", size.w2_runs, {}, 1, args.concurrency, args.dsn)
    elif args.workload == "W3":
        result = w3(size.w3_sends, args.concurrency, args.dsn)
    else:
        result = w4(size.w4_items, args.concurrency, args.dsn)
    base.emit(result)


if __name__ == "__main__":
    main()
