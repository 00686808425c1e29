"""Workers behind PgBouncer in transaction pooling mode, the way most Django sites run.

The tests start Debian's ``pgbouncer`` on a free port in front of the test server and
point worker processes at it (``PGPORT``). Transaction pooling hands a server connection
to a client for one transaction at a time, so:

- session state would leak between clients: django-durable keeps none (its advisory locks
  and ``set_config`` are transaction-scoped);
- prepared statements do not survive a transaction before PgBouncer 1.21 (Debian 12 has
  1.18): the workers run with ``PREPARE_STATEMENTS = False``;
- ``LISTEN`` is accepted but nothing arrives: the worker's listener finds that out with a
  probe, says so once and polls, unless ``LISTEN_DATABASE`` names a direct connection.

CI installs pgbouncer and sets ``DURABLE_REQUIRE_PGBOUNCER=1``, so a missing binary fails
there instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from django.db import connection

import django_durable as durable
from django_durable.models import Run, RunStatus, WorkerProcess
from tests.conftest import wait_for
from tests.orphans import die_with_parent
from tests.reliability.conftest import ON_POSTGRES, WorkerPool
from tests.reliability.test_chaos import (
    CONCURRENCY,
    WORKERS,
    check,
    start_runs,
)
from tests.servers import free_port
from tests.testapp import workflows as wf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not ON_POSTGRES, reason="PgBouncer pools PostgreSQL connections"),
]

SERVER_PORT = os.environ.get("PGPORT", "5432")
UNHEARD = "do not reach the LISTEN connection"


@dataclass
class Bouncer:
    port: int
    log: Path

    def transactions(self, database: str) -> int:
        """Return how many transactions PgBouncer has passed on to ``database``."""
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=pgbouncer", autocommit=True
        ) as admin:
            for row in admin.execute("SHOW STATS").fetchall():
                if row[0] == database:
                    return int(row[1])
        return 0


@pytest.fixture(scope="module")
def pgbouncer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bouncer]:
    binary = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None
    )
    if binary is None:
        if os.environ.get("DURABLE_REQUIRE_PGBOUNCER") == "1":
            pytest.fail("pgbouncer is required (DURABLE_REQUIRE_PGBOUNCER=1) but not installed")
        pytest.skip("SKIPPED: pgbouncer is not installed (apt-get install pgbouncer)")
    folder = tmp_path_factory.mktemp("pgbouncer")
    port = free_port()
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={SERVER_PORT} user=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\nadmin_users = postgres\n"
        "pool_mode = transaction\ndefault_pool_size = 20\nmax_client_conn = 500\n"
        "logfile =\npidfile =\n"
    )
    os.chmod(folder, 0o755)
    os.chmod(ini, 0o644)
    # PgBouncer refuses to run as root; it drops to another user when told to.
    command = [binary, *(["-u", "postgres"] if os.geteuid() == 0 else []), str(ini)]
    log = folder / "pgbouncer.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent()
        )
    bouncer = Bouncer(port=port, log=log)

    def answers() -> bool:
        try:
            bouncer.transactions("pgbouncer")
        except psycopg.OperationalError:
            assert proc.poll() is None, log.read_text()
            return False
        return True

    wait_for(answers, timeout=20, message="pgbouncer did not start")
    yield bouncer
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


def behind(bouncer: Bouncer, *, direct: bool) -> tuple[dict[str, object], dict[str, str]]:
    """Settings and environment of worker processes that connect through ``bouncer``."""
    settings: dict[str, object] = {"PREPARE_STATEMENTS": False}
    env = {"PGPORT": str(bouncer.port)}
    if direct:
        settings["LISTEN_DATABASE"] = "direct"
        env["DURABLE_TEST_DIRECT_PGPORT"] = SERVER_PORT
    return settings, env


def test_kill_9_chaos_through_pgbouncer(worker_pool, pgbouncer):
    """The chaos test's workload and checks, every worker query through the pooler."""
    runs, steps = 200, 5
    database = str(connection.settings_dict["NAME"])
    before = pgbouncer.transactions(database)
    start_runs(runs, steps, 0.05)
    settings, env = behind(pgbouncer, direct=True)
    pool: WorkerPool = worker_pool(
        WORKERS,
        "--concurrency",
        str(CONCURRENCY),
        "--lease",
        "2",
        settings={**settings, "MAX_RECOVERIES": 1_000_000},
        env=env,
    )
    started = time.monotonic()
    pool.start()
    kills = pool.chaos(
        until=lambda: not Run.objects.active().exists(),
        interval=2.0,  # a worker lives 8 s: time to start through the pooler and work
        timeout=300,
    )
    seconds = time.monotonic() - started
    assert pool.stop() == [0] * WORKERS, pool.logs()
    assert kills >= 1, "no worker was killed: the run ended before the chaos began"
    check(pool, name="chaos-pgbouncer", runs=runs, steps=steps, kills=kills, seconds=seconds)
    # Each checkpoint is a transaction of a worker: they went through the pooler.
    assert pgbouncer.transactions(database) - before >= runs * steps
    assert UNHEARD not in pool.logs()


def test_a_worker_behind_pgbouncer_is_woken_through_its_direct_listen_connection(
    worker_processes, pgbouncer
):
    """A worker that polls only once a minute takes a new run at once: notified."""
    settings, env = behind(pgbouncer, direct=True)
    env["DURABLE_TEST_SETTINGS"] = json.dumps(settings)
    proc = worker_processes.start("--poll-interval", "600", extra_env=env)
    wait_for(
        lambda: WorkerProcess.objects.filter(pid=proc.pid).exists() and _listening(),
        timeout=30,
        message="the worker's listener never connected",
    )
    time.sleep(1)  # its first look for work finds none; the next poll is minutes away
    handle = wf.add.start(2, 3)
    # Without a notification the worker would not look again for ten minutes.
    assert handle.result(timeout=60) == 5, worker_processes.logs()
    assert UNHEARD not in worker_processes.logs()


def _listening() -> bool:
    """Whether a session outside PgBouncer LISTENs on the test database (the worker's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN %%' AND pid <> pg_backend_pid()"
        )
        return bool(cursor.fetchone()[0])


def test_without_a_direct_connection_the_worker_says_so_once_and_polls(worker_processes, pgbouncer):
    settings, env = behind(pgbouncer, direct=False)
    env["DURABLE_TEST_SETTINGS"] = json.dumps(settings)
    worker_processes.start("--concurrency", "2", extra_env=env)
    handles = [wf.add.start(i, i) for i in range(10)]
    assert [h.result(timeout=60) for h in handles] == [2 * i for i in range(10)]
    wait_for(lambda: UNHEARD in worker_processes.logs(), timeout=30, message="no warning")
    assert worker_processes.logs().count(UNHEARD) == 1, worker_processes.logs()
    assert Run.objects.filter(status=RunStatus.COMPLETED).count() == 10
    assert durable.list_runs(status=RunStatus.COMPLETED, limit=100)
