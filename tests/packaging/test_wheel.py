"""The package as users get it: built with ``python -m build``, installed into a fresh venv.

``python -m build`` makes the sdist, then the wheel from the unpacked sdist, as a release
does. Both must hold the package (its modules, templates, static files, ``py.typed`` and
migrations) and nothing else, and pass ``twine check --strict``.

The wheel is then installed with its dependencies (from PyPI, through pip's cache) into a
virtual environment made in ``tmp_path``, and a throwaway Django project written there uses
it: ``check``, ``migrate``, ``durable start`` of a workflow the project defines,
``run_workflow_worker --burst``, ``durable runs show --json``. Every command runs from the
throwaway project's directory with ``PYTHONPATH`` empty and ``-W error``, so nothing can be
imported from this checkout and no warning passes. The throwaway project uses a SQLite
file, or with ``DURABLE_TEST_DB=postgres`` a scratch PostgreSQL database of its own, never
the test database.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import django_durable
from tests.conftest import ON_POSTGRES, ROOT

pytestmark = pytest.mark.slow

DIST = "django_durable_workflows"  # the distribution's name, normalized as in file names
VERSION = django_durable.__version__
SCRATCH_DATABASE = f"durable_wheel_test_{os.getpid()}"
# What an installed package has besides its modules: each must reach the wheel.
PACKAGE_DATA = ("py.typed", "templates/", "static/", "migrations/0001_initial.py")


def package_files() -> set[str]:
    """Return the files of django_durable/ in this checkout, as paths in an archive."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "django_durable").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the sdist and the wheel of this checkout; return the folder that holds them."""
    out = tmp_path_factory.mktemp("dist")
    # setuptools writes build/ and the egg-info into the checkout: two builds at once (test
    # processes of pytest-xdist, two test runs) break each other, so one builds at a time.
    (ROOT / "build").mkdir(exist_ok=True)
    with open(ROOT / "build" / ".wheel-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], timeout=300)
    return out


def test_the_wheel_holds_the_package_and_nothing_else(dist: Path) -> None:
    with zipfile.ZipFile(dist / f"{DIST}-{VERSION}-py3-none-any.whl") as wheel:
        names = set(wheel.namelist())
    metadata = {name for name in names if name.startswith(f"{DIST}-{VERSION}.dist-info/")}
    assert names - metadata == package_files()
    for data in PACKAGE_DATA:
        assert any(name.startswith(f"django_durable/{data}") for name in names), data
    assert f"{DIST}-{VERSION}.dist-info/licenses/LICENSE" in metadata


def test_the_sdist_holds_the_package_its_metadata_and_nothing_else(dist: Path) -> None:
    top = f"{DIST}-{VERSION}/"
    with tarfile.open(dist / f"{DIST}-{VERSION}.tar.gz") as sdist:
        names = {member.name.removeprefix(top) for member in sdist if member.isfile()}
    package = {name for name in names if name.startswith("django_durable/")}
    egg_info = {name for name in names if name.startswith(f"{DIST}.egg-info/")}
    assert package == package_files()
    assert names - package - egg_info == {
        "LICENSE",
        "MANIFEST.in",
        "PKG-INFO",
        "README.md",
        "pyproject.toml",
        "setup.cfg",  # setuptools writes its egg_info tags there
    }


def test_twine_check_passes(dist: Path) -> None:
    artifacts = sorted(str(path) for path in dist.iterdir())
    assert len(artifacts) == 2, artifacts
    run([sys.executable, "-m", "twine", "check", "--strict", *artifacts])


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Make a virtual environment and install the wheel into it with its dependencies."""
    venv = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(venv)], cwd=venv, env=user_env())
    wheel = dist / f"{DIST}-{VERSION}-py3-none-any.whl"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)]
    run(pip, cwd=venv, env=user_env(), timeout=600)
    return venv


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """Write a throwaway Django project that uses django_durable; return its folder."""
    files = {
        "manage.py": MANAGE_PY,
        "mysite/__init__.py": "",
        "mysite/settings.py": SETTINGS_PY,
        "mysite/urls.py": "urlpatterns = []\n",
        "orders/__init__.py": "",
        "orders/workflows.py": WORKFLOWS_PY,
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    if not ON_POSTGRES:
        yield tmp_path
        return
    recreate_scratch_database(create=True)
    try:
        yield tmp_path
    finally:
        recreate_scratch_database(create=False)


def test_the_installed_wheel_runs_a_workflow(venv: Path, project: Path) -> None:
    def manage(*args: str) -> str:
        python = str(venv / "bin" / "python")
        return run([python, "-W", "error", "manage.py", *args], cwd=project, env=user_env())

    where = json.loads(manage("shell", "--no-imports", "-c", WHERE_FROM))
    assert Path(where["package"]).is_relative_to(venv / "lib"), where
    assert not Path(where["package"]).is_relative_to(ROOT), where
    assert where["version"] == where["distribution"] == VERSION
    assert where["database"] == ("postgresql" if ON_POSTGRES else "sqlite")
    assert all(Path(path).is_relative_to(venv / "lib") for path in where["found"]), where

    assert "no issues" in manage("check", "--fail-level", "WARNING")
    assert "Applying django_durable.0001_initial... OK" in manage("migrate", "--noinput")
    run_id = manage("durable", "start", "orders.quote", "--args", "[3]").strip()
    manage("run_workflow_worker", "--burst", "--concurrency", "1")
    shown = json.loads(manage("durable", "runs", "show", run_id, "--json"))
    assert shown["status"] == "completed", shown
    assert shown["result"] == {"cents": 750, "label": "3 x 2.50 = 7.50"}
    steps = json.loads(manage("durable", "runs", "steps", run_id, "--json"))
    assert [step["name"] for step in steps] == ["price", "label"], steps


def run(
    args: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 180
) -> str:
    """Run a command; fail with everything it printed unless it succeeds; return its stdout."""
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def user_env() -> dict[str, str]:
    """Return this process's environment with nothing that points at the checkout or its tests."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "DJANGO_", "DURABLE_", "VIRTUAL_ENV"))
    }
    env["PYTHONPATH"] = ""
    if ON_POSTGRES:
        env["THROWAWAY_PG_NAME"] = SCRATCH_DATABASE
    return env


def recreate_scratch_database(*, create: bool) -> None:
    """Drop the throwaway project's PostgreSQL database, and create it afresh if asked."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(make_conninfo(dbname="postgres", **pg_params()), autocommit=True) as conn:
        name = sql.Identifier(SCRATCH_DATABASE)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def pg_params() -> dict[str, str]:
    """Return the test server's connection parameters, with the defaults of tests/settings.py."""
    return {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD", ""),
    }


MANAGE_PY = """\
    import os
    import sys

    if __name__ == "__main__":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
"""

SETTINGS_PY = """\
    import os
    from pathlib import Path

    BASE_DIR = Path(__file__).resolve().parent.parent
    SECRET_KEY = "throwaway"
    DEBUG = True
    USE_TZ = True
    ROOT_URLCONF = "mysite.urls"
    DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
    STATIC_URL = "static/"
    INSTALLED_APPS = [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "django_durable",
        "orders",
    ]
    MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ],
            },
        },
    ]
    if os.environ.get("THROWAWAY_PG_NAME"):
        DATABASES = {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": os.environ["THROWAWAY_PG_NAME"],
                "HOST": os.environ.get("PGHOST", "127.0.0.1"),
                "PORT": os.environ.get("PGPORT", "5432"),
                "USER": os.environ.get("PGUSER", "postgres"),
                "PASSWORD": os.environ.get("PGPASSWORD", ""),
            }
        }
    else:
        DATABASES = {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": BASE_DIR / "db.sqlite3",
                "OPTIONS": {
                    "transaction_mode": "IMMEDIATE",
                    "timeout": 20,
                    "init_command": "PRAGMA journal_mode=WAL;",
                },
            }
        }
"""

WORKFLOWS_PY = """\
    import django_durable as durable


    @durable.step
    def price(quantity: int) -> int:
        return quantity * 250


    def label(quantity: int, cents: int) -> str:
        return f"{quantity} x 2.50 = {cents / 100:.2f}"


    @durable.workflow(name="orders.quote")
    def quote(ctx: durable.Context, quantity: int) -> dict:
        cents = price(quantity)
        return {"cents": cents, "label": ctx.step("label", label, quantity, cents)}
"""

# Where the project finds django_durable, its templates and its static files; its database.
WHERE_FROM = """\
import json
from importlib import metadata

import django_durable
from django.contrib.staticfiles import finders
from django.db import connection
from django.template.loader import get_template

print(json.dumps({
    "package": django_durable.__file__,
    "version": django_durable.__version__,
    "distribution": metadata.version("django-durable-workflows"),
    "database": connection.vendor,
    "found": [
        str(get_template("admin/django_durable/dashboard.html").origin.name),
        finders.find("django_durable/admin/run.css"),
    ],
}))
"""
