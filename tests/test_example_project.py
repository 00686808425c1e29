"""The example project: ``manage.py migrate`` then ``manage.py demo``, twice, as a user would.

The demo runs in subprocesses on a database of its own, not the test database: a
temporary SQLite file, or with ``DURABLE_TEST_DB=postgres`` a scratch PostgreSQL
database, so that the example is tested on both backends.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import ON_POSTGRES, ROOT

# Per process, so that several test runs can share one server.
SCRATCH_DATABASE = f"durable_example_test_{os.getpid()}"
SUMMARY = re.compile(
    r"3 runs completed after a SIGKILL; 15 steps checkpointed; "
    r"\d+ step bod(y|ies) re-ran after the kill \(at-least-once\), 0 atomic writes duplicated"
)


def _postgres(dbname: str) -> dict[str, str]:
    """Return connection parameters of the test server (the same as tests/settings.py)."""
    return {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD", ""),
        "dbname": dbname,
    }


def _recreate(name: str, *, create: bool, template: str | None = None) -> None:
    """Drop the scratch database (closing its connections), and create it afresh (a copy of
    the database ``template``, when given)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(make_conninfo(**_postgres("postgres")), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if create:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is not None:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(statement)


def _database_url(name: str) -> str:
    params = _postgres(name)
    credentials = quote(params["user"], safe="")
    if params["password"]:
        credentials += ":" + quote(params["password"], safe="")
    return f"postgres://{credentials}@{params['host']}:{params['port']}/{name}"


def manage_environment() -> dict[str, str]:
    """Return this process's environment for the example's ``manage.py`` (not the tests')."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DURABLE_EXAMPLE_SQLITE")
    }
    # pytest-django exported the tests' settings; manage.py would keep them.
    env["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    return env


@pytest.fixture
def example_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Return the environment of ``manage.py`` on a fresh database for the example."""
    env = manage_environment()
    if not ON_POSTGRES:
        yield {**env, "DURABLE_EXAMPLE_SQLITE": str(tmp_path / "example.sqlite3")}
        return
    _recreate(SCRATCH_DATABASE, create=True)
    try:
        yield {**env, "DATABASE_URL": _database_url(SCRATCH_DATABASE)}
    finally:
        _recreate(SCRATCH_DATABASE, create=False)


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` in the repository root and return what it printed."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_demo_finishes_every_run_through_a_sigkill_twice_in_a_row(example_env, tmp_path):
    migrate = manage(example_env, "migrate", "--noinput")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    for attempt in (1, 2):  # the second demo runs on the first one's data
        logs = tmp_path / f"logs-{attempt}"
        demo = manage(example_env, "demo", "--timeout", "60", "--log-dir", str(logs))
        print(f"--- demo {attempt}\n{demo.stdout}{demo.stderr}")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert SUMMARY.search(demo.stdout), demo.stdout
        assert "0 atomic writes duplicated" in demo.stdout
        assert "3 of 3 orders shipped" in demo.stdout
        assert f"log: {logs / 'worker-1.log'}" in demo.stdout  # its workers logged there
    assert manage(example_env, "check").returncode == 0


def test_database_url_becomes_a_postgresql_database():
    from example_project.settings import postgres_from_url

    database = postgres_from_url(
        "postgresql://shop%40prod:p%3Ass@db.internal:6543/shop?sslmode=require"
    )
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["USER"], database["PASSWORD"]) == ("shop@prod", "p:ss")
    assert (database["HOST"], database["PORT"], database["NAME"]) == ("db.internal", "6543", "shop")
    assert database["OPTIONS"] == {"sslmode": "require"}
    assert (database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]) == (60, True)
    with pytest.raises(ValueError, match="postgres://"):
        postgres_from_url("mysql://root@localhost/shop")
