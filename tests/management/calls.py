"""Calling ``manage.py durable`` from the tests: in process, or as a real process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from django.core.management import call_command
from django.db import connection

from django_durable.models import Run
from django_durable.testing import run_all
from tests.conftest import ROOT, wait_for


def durable_cmd(*args: str) -> str:
    """Run ``manage.py durable ARGS`` and return what it printed."""
    out = io.StringIO()
    call_command("durable", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def durable_process(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``manage.py durable ARGS`` as a process on the test database, ``stdin`` its input."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DURABLE_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", "durable", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def work_once(condition: Callable[[], Any]) -> threading.Thread:
    """Execute runs in a thread once ``condition()`` holds, as a worker elsewhere would."""

    def work() -> None:
        try:
            wait_for(condition, message="the command to act")
            run_all()
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def cancel_requested(run_id: str) -> Callable[[], bool]:
    """Return whether someone asked the run to stop: a test of ``work_once``."""
    return lambda: Run.objects.filter(pk=run_id, cancel_requested_at__isnull=False).exists()
