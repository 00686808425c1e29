"""django-tasks-db (the database backend of django-tasks): W2 only, four `db_worker` processes.

django-tasks runs tasks, not workflows: no steps, messages or streams, so it takes part in
W2 only. Its ``db_worker`` runs one task at a time (no threads, no concurrency option), so
"four at once" is four ``db_worker`` processes, with their defaults (polling every second
when idle, a random start-up delay of up to a second). The Django project has the same
database settings as django-durable's (persistent connections). The tasks are enqueued in
one transaction; the clock runs from its commit to the last task's ``finished_at``.
"""

from __future__ import annotations

import os
import sys
import time

from bench import workloads
from bench.systems import base

SUPPORTED = {"W2": "four db_worker processes (one task at a time each), default options"}
UNSUPPORTED = {
    "W1": "a task queue: no steps",
    "W3": "a task queue: no messages to a running task",
    "W4": "a task queue: no streams",
}
SETTINGS = "bench.systems.django_tasks_project.settings"
WORKER_NAME = "db_worker"


def setup(dsn: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["BENCH_DATABASE_URL"] = dsn
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def w2(dsn: str, runs: int, processes: int) -> dict:
    from django.db import transaction
    from django.db.models import Max
    from django_tasks_db.models import DBTaskResult

    from bench.systems.django_tasks_project.tasks import noop

    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "BENCH_DATABASE_URL": dsn,
        "BENCH_APPLICATION_NAME": WORKER_NAME,
    }
    workers = [
        base.spawn([sys.executable, "-m", "django", "db_worker", "-v", "0"], env=env)
        for _ in range(processes)
    ]
    try:
        base.wait_until(
            lambda: (
                base.check_alive(workers)
                and base.query_value(
                    dsn,
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    (WORKER_NAME,),
                )
                >= processes
            ),
            timeout=60,
            what="the db_worker processes to connect",
        )
        began = time.perf_counter()
        with transaction.atomic():
            for _ in range(runs):
                noop.enqueue(1)
        enqueue_seconds = time.perf_counter() - began
        committed = time.time()

        def done() -> bool:
            base.check_alive(workers)
            if DBTaskResult.objects.filter(status="FAILED").exists():
                raise RuntimeError("a task failed")
            return DBTaskResult.objects.filter(status="SUCCESSFUL").count() >= runs

        base.wait_until(done, timeout=1800, what="the tasks to finish")
    finally:
        base.stop(workers)
    last = DBTaskResult.objects.aggregate(last=Max("finished_at"))["last"].timestamp()
    return base.throughput(
        runs=runs, steps=1, seconds=last - committed, enqueue_seconds=enqueue_seconds
    )


def main() -> None:
    args = base.parse_args(SUPPORTED)
    setup(args.dsn)
    base.emit(w2(args.dsn, workloads.sizes(args.quick).w2_runs, args.concurrency))


if __name__ == "__main__":
    main()
