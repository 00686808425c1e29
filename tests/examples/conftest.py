"""Running the example project's scenarios (``manage.py demo NAME``) from the tests.

Each test module gets the example project on a database of its own, migrated once: a
temporary SQLite file, or with ``DURABLE_TEST_DB=postgres`` a scratch PostgreSQL database.
The scenarios run as a user runs them: ``manage.py demo NAME`` in a subprocess, with real
``run_workflow_worker`` processes; a scenario checks what its seed promises and the command
exits with status 1 when one does not hold.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ON_POSTGRES
from tests.test_example_project import _database_url, _recreate, manage


@pytest.fixture(scope="module")
def demo_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Return the environment of the example project on a fresh, migrated database."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    scratch = f"durable_{module}_{os.getpid()}"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DURABLE_EXAMPLE_SQLITE")
    }
    env["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    if ON_POSTGRES:
        _recreate(scratch, create=True)
        env["DATABASE_URL"] = _database_url(scratch)
    else:
        env["DURABLE_EXAMPLE_SQLITE"] = str(tmp_path_factory.mktemp(module) / "example.sqlite3")
    try:
        migrate = manage(env, "migrate", "--noinput")
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        yield env
    finally:
        if ON_POSTGRES:
            _recreate(scratch, create=False)


def demo(
    env: dict[str, str], *names: str, log_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py demo NAMES``; print its output (pytest shows it when a test fails)."""
    options = ["--timeout", "60"] + (["--log-dir", str(log_dir)] if log_dir else [])
    ran = manage(env, "demo", *names, *options)
    print(f"--- manage.py demo {' '.join(names)} (exit {ran.returncode})\n{ran.stdout}{ran.stderr}")
    return ran


def passed(ran: subprocess.CompletedProcess[str], name: str) -> str:
    """Return what scenario ``name`` printed, once the command says it held."""
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"   {name}: as its seed shows (" in ran.stdout, ran.stdout
    return ran.stdout
