"""django-durable: W1 to W4 with one `run_workflow_worker` process.

The ``keyed`` variant runs W2 under a concurrency key: the runs of ``KEYS`` customers,
started round-robin, at most one per customer at once (next to the plain queue's W2, the
cost of flow control in the claim).

The ``hot-key`` variant runs the plain W2 beside a hot key: ``HOT_BACKLOG`` runs of one
customer queued behind its one slot, which a run of a worker that never comes back holds
under a lease of an hour (a tenant that queued thousands of jobs; the cost of passing them).

The ``processes-P`` variants run the worker as ``run_workflow_worker --processes P
--concurrency N/P``: ``--concurrency`` is per process, so the total stays ``--concurrency``
(N runs at once) and only the number of processes changes.

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
    "W4": "ctx.write_stream() in a run (batched: ctx.write_stream_many(), 100 items a call),"
    " durable.read_stream(follow=True) in the client",
}
UNSUPPORTED: dict[str, str] = {}
VARIANTS = ("default", "keyed", "hot-key", "processes-2", "processes-4")
# Customers of the keyed W2: runs are started round-robin over them.
KEYS = 100
# The runs queued behind the hot key's one slot (the hot-key variant); --quick: a tenth.
HOT_BACKLOG = 10_000


def queue_hot_key(runs: int) -> None:
    """Queue ``runs`` runs of one customer, and hold the customer's one slot with the
    first of them: running, under a lease of an hour, by a worker that is not there."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    import django_durable as durable
    from django_durable.models import Run, RunStatus

    with transaction.atomic():
        handles = [
            durable.start("bench.one_step_keyed", kwargs={"customer": -1}) for _ in range(runs)
        ]
    now = timezone.now()
    Run.objects.filter(pk=handles[0].id).update(
        status=RunStatus.RUNNING,
        claimed_by="bench:gone",
        lease_token=1,
        lease_expires_at=now + timedelta(hours=1),
        started_at=now,
    )


def setup(dsn: str) -> None:
    """Configure Django for the fresh database and migrate it."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["BENCH_DATABASE_URL"] = dsn
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def processes_of(variant: str) -> int:
    """The number of worker processes a variant runs (``processes-P``: P; else 1)."""
    name, _, count = variant.partition("-")
    return int(count) if name == "processes" else 1


def per_process(concurrency: int, processes: int) -> int:
    """Each process's ``--concurrency`` for ``concurrency`` runs at once in all."""
    if concurrency % processes:
        raise SystemExit(f"--concurrency {concurrency} does not split over {processes} processes")
    return concurrency // processes


def start_worker(
    dsn: str, concurrency: int, *, processes: int = 1, settings: str = "bench.settings"
):
    """Start ``run_workflow_worker`` (under a supervisor with ``processes`` > 1) and wait
    until each of its worker processes has registered; ``concurrency`` is the total."""
    from django_durable.models import WorkerProcess

    argv = [sys.executable, "-m", "django", "run_workflow_worker"]
    if processes > 1:
        argv += ["--processes", str(processes)]
    argv += ["--concurrency", str(per_process(concurrency, processes))]
    proc = base.spawn(argv, env={"DJANGO_SETTINGS_MODULE": settings, "BENCH_DATABASE_URL": dsn})
    if processes == 1:
        workers = WorkerProcess.objects.filter(pid=proc.pid)
    else:  # the supervisor's children: the only workers of this fresh database
        workers = WorkerProcess.objects.alive()
    base.wait_until(
        lambda: base.check_alive([proc]) and workers.count() >= processes,
        timeout=60,
        what=f"{processes} worker process(es) to register",
    )
    return proc


def check_no_restart(processes: int) -> None:
    """Fail if a worker process died during the measurement (its supervisor starts another,
    which registers a row of its own): the figure would not be that of ``processes``."""
    from django_durable.models import WorkerProcess

    registered = WorkerProcess.objects.count()
    if registered != processes:
        raise RuntimeError(f"{registered} worker processes registered, not {processes}")


def throughput(
    workflow: str,
    runs: int,
    kwargs: dict,
    steps: int,
    concurrency: int,
    dsn: str,
    *,
    keys: int = 0,
    processes: int = 1,
    hot_backlog: int = 0,
):
    """Time ``runs`` runs of ``workflow`` on ``processes`` worker processes, ``concurrency``
    runs at once in all; with ``keys``, each run's ``customer`` is its index modulo ``keys``;
    with ``hot_backlog``, beside that many runs queued behind a full key."""
    from django.db import transaction
    from django.db.models import Max

    import django_durable as durable
    from django_durable.models import Run

    if hot_backlog:
        queue_hot_key(hot_backlog)
    measured = Run.objects.filter(workflow_name=workflow)
    worker = start_worker(dsn, concurrency, processes=processes)
    try:
        began = time.perf_counter()
        with transaction.atomic():
            for index in range(runs):
                extra = {"customer": index % keys} if keys else {}
                durable.start(workflow, kwargs={**kwargs, **extra})
        enqueue_seconds = time.perf_counter() - began
        committed = time.time()
        base.wait_until(
            lambda: base.check_alive([worker]) and measured.finished().count() >= runs,
            timeout=600,
            what="the runs to finish",
        )
    finally:
        base.stop([worker])
    check_no_restart(processes)
    failed = measured.exclude(status="completed").count()
    if failed:
        raise RuntimeError(f"{failed} runs did not complete")
    if hot_backlog and Run.objects.filter(workflow_name="bench.one_step_keyed").finished().exists():
        raise RuntimeError("a run of the hot key ran: its slot was not held")
    last = measured.aggregate(last=Max("finished_at"))["last"].timestamp()
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


# Items per ctx.write_stream_many() call in W4's batched run.
W4_BATCH = 100


def w4(items: int, concurrency: int, dsn: str) -> dict:
    """One run writes ``items`` stream items, one commit each; the client follows them as
    they commit. Then a second run writes as many in batches of ``W4_BATCH`` (one commit
    per batch, ``ctx.write_stream_many``), followed the same way."""
    worker = start_worker(dsn, concurrency)
    try:
        single = follow_stream("bench.stream_writer", {"items": items}, items)
        batched = follow_stream(
            "bench.stream_writer_batched", {"items": items, "batch": W4_BATCH}, items
        )
    finally:
        base.stop([worker])
    return {
        "items": items,
        "written_per_s": single["written_per_s"],
        "read_per_s": single["read_per_s"],
        "batch": W4_BATCH,
        "batched_written_per_s": batched["written_per_s"],
        "batched_read_per_s": batched["read_per_s"],
    }


def follow_stream(workflow: str, kwargs: dict, items: int) -> dict:
    """Start ``workflow``, read its stream ``out`` as it grows; return items/s written
    (the run's start to its end) and read (the start to the last item read)."""
    import django_durable as durable
    from django_durable.models import Run

    began = time.perf_counter()
    handle = durable.start(workflow, kwargs=kwargs)
    received = sum(1 for _ in durable.read_stream(handle.id, "out", follow=True))
    read_seconds = time.perf_counter() - began
    handle.result(timeout=60)
    if received != items:
        raise RuntimeError(f"{workflow}: the client read {received} of {items} items")
    run = Run.objects.get(pk=handle.id)
    write_seconds = (run.finished_at - run.started_at).total_seconds()
    return {"written_per_s": items / write_seconds, "read_per_s": items / read_seconds}


def main() -> None:
    args = base.parse_args(SUPPORTED, variants=VARIANTS)
    size = workloads.sizes(args.quick)
    processes = processes_of(args.variant)
    if processes > 1 and args.workload not in ("W1", "W2"):
        raise SystemExit(f"--variant {args.variant}: W1 and W2 only")
    setup(args.dsn)
    if args.workload == "W1":
        result = throughput(
            "bench.ten_steps",
            size.w1_runs,
            {"steps": size.w1_steps},
            size.w1_steps,
            args.concurrency,
            args.dsn,
            processes=processes,
        )
    elif args.workload == "W2" and args.variant == "keyed":
        result = throughput(
            "bench.one_step_keyed", size.w2_runs, {}, 1, args.concurrency, args.dsn, keys=KEYS
        )
    elif args.workload == "W2" and args.variant == "hot-key":
        backlog = HOT_BACKLOG // 10 if args.quick else HOT_BACKLOG
        result = throughput(
            "bench.one_step", size.w2_runs, {}, 1, args.concurrency, args.dsn, hot_backlog=backlog
        )
    elif args.workload == "W2":
        result = throughput(
            "bench.one_step", size.w2_runs, {}, 1, args.concurrency, args.dsn, processes=processes
        )
    elif args.workload == "W3":
        result = w3(size.w3_sends, args.concurrency, args.dsn)
    else:
        result = w4(size.w4_items, args.concurrency, args.dsn)
    base.emit(result)


if __name__ == "__main__":
    main()
