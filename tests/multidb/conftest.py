"""The two-database tests: DJANGO_DURABLE["DATABASE"] = "workflows", with the router.

They need the settings of ``tests/settings_two_databases.py``, which pytest-django reads once
per session: ``tests/test_two_databases.py`` runs this folder in a pytest session of its own
with them (on the database of the main session: PostgreSQL or SQLite). In a session with
the ordinary settings, these tests are skipped, saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections

from tests.conftest import WorkerProcesses

HERE = Path(__file__).resolve().parent
SETTINGS = "tests.settings_two_databases"
TWO_DATABASES = "workflows" in settings.DATABASES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in item.path.parents:
            continue
        if not TWO_DATABASES:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"needs DJANGO_SETTINGS_MODULE={SETTINGS}: tests/test_two_databases.py "
                    "runs this folder in a pytest session of its own"
                )
            )
        else:
            item.add_marker(
                pytest.mark.django_db(databases=["default", "workflows"], transaction=True)
            )


def env() -> dict[str, str]:
    """The environment of a process on the session's two test databases."""
    return {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DURABLE_TEST_DB_NAME": str(connections["default"].settings_dict["NAME"]),
        "DURABLE_TEST_WF_DB_NAME": str(connections["workflows"].settings_dict["NAME"]),
    }


class TwoDatabaseWorkers(WorkerProcesses):
    """``run_workflow_worker`` subprocesses with the two-database settings."""

    def start(self, *args: str, extra_env: dict[str, str] | None = None) -> Any:
        return super().start(*args, extra_env={**env(), **(extra_env or {})})


@pytest.fixture
def workers(transactional_db: Any, tmp_path: Path) -> Iterator[TwoDatabaseWorkers]:
    procs = TwoDatabaseWorkers(tmp_path)
    yield procs
    procs.stop_all()
