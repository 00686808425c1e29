"""The example project on a database of its own, migrated once per test session.

``manage.py migrate`` of the example project takes 5 s on a quiet machine and up to 40 s
while the suite loads it; the example's test modules and browser tests each want a fresh,
migrated database. The first to ask migrates a template, under a file lock that the
session's xdist workers share; every caller then gets a copy of it: a file copy on SQLite,
``CREATE DATABASE ... TEMPLATE`` on PostgreSQL. ``tests/test_example_project.py`` still runs
``migrate`` itself, as a user does.

The PostgreSQL template is dropped when the session ends (``drop_template()``, called by
``pytest_sessionfinish`` in the controlling process).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ON_POSTGRES
from tests.test_example_project import _database_url, _recreate, manage, manage_environment

TEMPLATE_FILE = "example-template.sqlite3"


def session_dir(basetemp: Path) -> Path:
    """Return the folder the whole session shares: an xdist worker's base is inside it."""
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


def template_name(shared: Path) -> str:
    """Return the name of the session's PostgreSQL template (its folder is unique to it)."""
    return "durable_example_tpl_" + hashlib.sha1(str(shared).encode()).hexdigest()[:12]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _migrate(env: dict[str, str]) -> None:
    migrate = manage(env, "migrate", "--noinput")
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr


def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Return the session's migrated template: a file on SQLite, a database's name on
    PostgreSQL; the first caller of the session makes it."""
    shared = session_dir(tmp_path_factory.getbasetemp())
    with _locked(shared / "example-template.lock"):
        if ON_POSTGRES:
            name = template_name(shared)
            ready = shared / f"{name}.ready"
            if not ready.exists():
                _recreate(name, create=True)
                _migrate({**manage_environment(), "DATABASE_URL": _database_url(name)})
                ready.touch()
            return name
        path = shared / TEMPLATE_FILE
        if not path.exists():
            building = shared / f"building-{TEMPLATE_FILE}"
            building.unlink(missing_ok=True)
            _migrate({**manage_environment(), "DURABLE_EXAMPLE_SQLITE": str(building)})
            building.rename(path)
        return str(path)


def copied_example(template: str, sqlite_path: Path, scratch: str) -> Iterator[dict[str, str]]:
    """Yield the example's environment on a fresh copy of ``template``: the file
    ``sqlite_path`` on SQLite, the database ``scratch`` on PostgreSQL (dropped afterwards)."""
    env = manage_environment()
    if not ON_POSTGRES:
        shutil.copyfile(template, sqlite_path)
        yield {**env, "DURABLE_EXAMPLE_SQLITE": str(sqlite_path)}
        return
    _recreate(scratch, create=True, template=template)
    try:
        yield {**env, "DATABASE_URL": _database_url(scratch)}
    finally:
        _recreate(scratch, create=False)


def drop_template(basetemp: Path) -> None:
    """Drop the session's PostgreSQL template, if it made one (the controlling process)."""
    name = template_name(basetemp)
    if ON_POSTGRES and (basetemp / f"{name}.ready").exists():
        _recreate(name, create=False)
