"""PostgreSQL restarted under load: nothing is lost, and workers come back by themselves.

While worker processes execute short runs and send/recv pairs, and threads of this process
start runs and send messages, the server is restarted (every connection is cut). Then:

- every run completes with its result, and every message is received exactly once, in
  order: clients retry what failed with the same idempotency key, as an application must;
- the same worker processes are still running and executed work after the restart: they
  reconnected by themselves (and their heartbeats too);
- each worker LISTENs again (its backend shows in ``pg_stat_activity``), and a message to
  a run waiting in a worker whose poll interval is 300 s wakes it within seconds, twice:
  only NOTIFY can explain that.

The restart command comes from ``DURABLE_PG_RESTART`` (e.g. ``pg_ctlcluster 15 main
restart``), because restarting a server that others use breaks their work: without it the
test is skipped, loudly. It must restart the server the tests connect to (PGHOST/PGPORT).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from django.db import InterfaceError, OperationalError, connection

import django_durable as durable
from django_durable.models import Message, Run, RunStatus, Step, WorkerProcess
from tests.conftest import ON_POSTGRES, WorkerProcesses, wait_for
from tests.reliability._races import HANG, Racer, report
from tests.testapp import race_workflows as rw

RESTART = os.environ.get("DURABLE_PG_RESTART", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not ON_POSTGRES, reason="restarts a PostgreSQL server"),
    pytest.mark.skipif(
        not RESTART,
        reason="SKIPPED ON PURPOSE: set DURABLE_PG_RESTART to the command that restarts the "
        "PostgreSQL server under test (e.g. 'pg_ctlcluster 15 main restart'); it is not "
        "guessed, because restarting a shared server breaks everyone's work",
    ),
]

T = TypeVar("T")
PROBE_POLL = "300"  # the probe worker's poll interval (seconds): only NOTIFY wakes it sooner
WAKE_LIMIT = 20.0  # seconds: a generous bound, far below PROBE_POLL


@dataclasses.dataclass(frozen=True)
class Load:
    runs: int  # short runs, started while the server restarts
    pair_runs: int  # runs that receive ``pairs`` messages each
    pairs: int
    restarts: int

    @property
    def messages(self) -> int:
        return self.pair_runs * self.pairs


LOAD = Load(runs=400, pair_runs=20, pairs=50, restarts=1)
LOAD_CHAOS = Load(runs=2000, pair_runs=100, pairs=50, restarts=3)


class Client:
    """Calls from this process that retry what the restart broke, counting the retries."""

    def __init__(self) -> None:
        self.retries: Counter[str] = Counter()

    def call(self, what: str, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + HANG * 5
        while True:
            try:
                return fn()
            except (OperationalError, InterfaceError):
                if time.monotonic() > deadline:
                    raise
                self.retries[what] += 1
                connection.close()  # broken: the next call connects again
                time.sleep(0.2)


def restart_server() -> None:
    subprocess.run(shlex.split(RESTART), check=True, capture_output=True, timeout=300)
    connection.close()  # this thread's connection died with the server


def server_started() -> Any:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_postmaster_start_time()")
        return cursor.fetchone()[0]


def listening(applications: set[str]) -> set[str]:
    """Return which of ``applications`` have a backend whose last statement was LISTEN."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %%'"
        )
        return {row[0] for row in cursor.fetchall()} & applications


def start_worker(processes: WorkerProcesses, name: str, *args: str) -> Any:
    return processes.start(*args, extra_env={"PGAPPNAME": name})


def progress(pair_ids: list[str]) -> int:
    """Return the short runs completed plus the messages received so far."""
    done = Run.objects.filter(workflow_name="race.short", status=RunStatus.COMPLETED).count()
    return done + Step.objects.filter(run_id__in=pair_ids, kind="recv", status="completed").count()


def restart_under_load(processes: WorkerProcesses, load: Load) -> dict[str, Any]:
    client = Client()
    bulk = ("--concurrency", "4", "--lease", "2", "--poll-interval", "0.5")
    workers = {
        f"durable-restart-{n}": start_worker(processes, f"durable-restart-{n}", *bulk)
        for n in range(3)
    }
    probe_args = ("--queue", "probe", "--concurrency", "1", "--poll-interval", PROBE_POLL)
    workers["durable-restart-probe"] = start_worker(processes, "durable-restart-probe", *probe_args)
    probe = rw.pairs.using(queue="probe").start(2)
    pair_runs = [rw.pairs.start(load.pairs) for _ in range(load.pair_runs)]
    pair_ids = [handle.id for handle in pair_runs]

    def start_runs() -> list[str]:
        return [
            client.call(
                "start",
                lambda n=n: rw.short.using(idempotency_key=f"short-{n}").start(n).id,
            )
            for n in range(load.runs)
        ]

    def send_to(handles: list[durable.RunHandle]) -> dict[str, list[str]]:
        sent: dict[str, list[str]] = {handle.id: [] for handle in handles}
        for number in range(load.pairs):
            for handle in handles:
                message = f"m{number}"
                client.call(
                    "send",
                    lambda h=handle, m=message: durable.send(
                        h.id, m, topic="pair", idempotency_key=f"{h.id}:{m}"
                    ),
                )
                sent[handle.id].append(message)
        return sent

    starter = Racer("starter", start_runs)
    senders = [Racer(f"sender-{k}", lambda k=k: send_to(pair_runs[k::2])) for k in range(2)]
    total = load.runs + load.messages
    restarted_at = []
    for number in range(load.restarts):
        # Restart at even marks of the work done (a third for one restart).
        mark = total * (number + 1) / (load.restarts + 2)
        wait_for(
            lambda mark=mark: client.call("read", lambda: progress(pair_ids)) >= mark,
            HANG * 10,
            f"{mark:.0f} done\n{processes.logs()}",
        )
        restart_server()
        restarted_at.append(client.call("read", server_started))
    short_ids = starter.join(HANG * 10)
    sent: dict[str, list[str]] = {}
    for sender in senders:
        sent.update(sender.join(HANG * 10))
    # --- LISTEN is back, and NOTIFY wakes a run that polling would not reach for 300 s
    names = set(workers)
    wait_for(
        lambda: client.call("read", lambda: listening(names)) == names,
        HANG,
        f"LISTEN again\n{processes.logs()}",
    )
    wait_for(lambda: probe.refresh().status == RunStatus.WAITING, HANG, "the probe waits")
    wakes = []
    for number in range(2):
        started = time.monotonic()
        durable.send(probe.id, f"probe-{number}", topic="pair")
        wait_for(
            lambda number=number: (
                Step.objects.filter(run_id=probe.id, name="echo").count() > number
            ),
            HANG,
            f"probe {number} received\n{processes.logs()}",
        )
        wakes.append(time.monotonic() - started)
    wait_for(
        lambda: not Run.objects.active().exists(),
        HANG * 10,
        f"every run finished\n{processes.logs()}",
    )
    return check(load, processes, workers, short_ids, sent, restarted_at[0], wakes, client)


def check(
    load: Load,
    processes: WorkerProcesses,
    workers: dict[str, Any],
    short_ids: list[str],
    sent: dict[str, list[str]],
    restarted_at: Any,
    wakes: list[float],
    client: Client,
) -> dict[str, Any]:
    logs = processes.logs()
    shorts = Run.objects.filter(pk__in=short_ids)
    completed = shorts.filter(status=RunStatus.COMPLETED)
    results = {str(run.pk): run.get_result() for run in completed}
    wrong = sum(
        1
        for number, run_id in enumerate(short_ids)
        if results.get(run_id, {}).get("number") != number * 2
    )
    received = {run_id: durable.get_run(run_id).result(timeout=1) for run_id in sent}
    messages = Message.objects.filter(run_id__in=list(sent))
    # Who executed what after the restart: the "pid" step records the process.
    after = Step.objects.filter(run_id__in=short_ids, name="pid", recorded_at__gt=restarted_at)
    pids_after = {step.get_result() for step in after}
    bulk = {proc.pid for name, proc in workers.items() if not name.endswith("probe")}
    figures = {
        "restarts": load.restarts,
        "runs": len(short_ids),
        "runs_completed": completed.count(),
        "runs_lost": len(short_ids) - completed.count(),
        "wrong_results": wrong,
        "messages_sent": sum(len(m) for m in sent.values()),
        "messages_received": sum(len(m) for m in received.values()),
        "message_rows": messages.count(),
        "out_of_order": sum(1 for run_id in sent if received[run_id] != sent[run_id]),
        "send_retries": client.retries["send"],
        "start_retries": client.retries["start"],
        "workers_alive": sum(1 for proc in workers.values() if proc.poll() is None),
        "workers_working_after": len(pids_after & bulk),
        "abandoned_runs": logs.count("Abandoning run"),
        "notify_wake_s": max(wakes),
        "probe_poll_s": float(PROBE_POLL),
    }
    assert len(short_ids) == load.runs == len(set(short_ids)), figures
    assert (figures["runs_lost"], wrong) == (0, 0), figures
    assert figures["messages_sent"] == figures["messages_received"] == load.messages, figures
    assert (figures["message_rows"], figures["out_of_order"]) == (load.messages, 0), figures
    assert messages.filter(consumed_at__isnull=True).count() == 0
    assert figures["workers_alive"] == len(workers), logs
    assert pids_after == bulk, (pids_after, bulk, logs)  # every worker reconnected and worked
    seen = WorkerProcess.objects.filter(pid__in=[p.pid for p in workers.values()])
    # Heartbeats come back too (within a few heartbeat intervals of the restart).
    wait_for(
        lambda: seen.filter(last_seen_at__gt=restarted_at).count() == len(workers),
        HANG,
        f"every worker's heartbeat after the restart\n{logs}",
    )
    assert max(wakes) < WAKE_LIMIT, (wakes, logs)
    return figures


def test_postgresql_restart_under_load_loses_nothing(worker_processes):
    figures = restart_under_load(worker_processes, LOAD)
    report("database-restart", **figures)


@pytest.mark.chaos
def test_postgresql_restarted_three_times_during_2000_runs_and_5000_pairs(worker_processes):
    figures = restart_under_load(worker_processes, LOAD_CHAOS)
    report("database-restart chaos", **figures)
