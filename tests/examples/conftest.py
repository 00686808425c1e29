"""Running the example project's scenarios (``manage.py demo NAME``) from the tests.

Each test module gets the example project on a database of its own, a copy of the session's
migrated one (``tests.example_db``): a temporary SQLite file, or with
``DURABLE_TEST_DB=postgres`` a scratch PostgreSQL database.
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

from tests.example_db import copied_example
from tests.test_example_project import manage


@pytest.fixture(scope="module")
def demo_env(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    example_template: str,
) -> Iterator[dict[str, str]]:
    """Return the environment of the example project on a fresh, migrated database."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    sqlite_path = tmp_path_factory.mktemp(module) / "example.sqlite3"
    yield from copied_example(example_template, sqlite_path, f"durable_{module}_{os.getpid()}")


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
