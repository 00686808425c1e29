"""``run_workflow_worker --reload``: a real worker restarted by Django's reloader.

Each test starts the command as a user does, in a session of its own, on a settings
module written into ``tmp_path`` that adds an app of its own (``reloadapp``) to the test
project. Editing that app's ``workflows.py`` is the code change the reloader must see.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from django_durable.models import Run, Step, WorkerProcess
from tests.conftest import ROOT, wait_for
from tests.orphans import die_with_parent

pytestmark = pytest.mark.django_db(transaction=True)

WORKFLOWS = '''
import os
import time
from pathlib import Path

import django_durable as durable

VERSION = {version}


@durable.step
def hold(folder: str) -> int:
    """Say which process runs this, then wait until the test writes ``go``."""
    (Path(folder) / f"started-{{os.getpid()}}").touch()
    deadline = time.monotonic() + 60
    while not (Path(folder) / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return VERSION


@durable.step
def version() -> int:
    return VERSION


@durable.workflow(name="reload.versions")
def versions(ctx: durable.Context, folder: str) -> list[int]:
    return [hold(folder), version()]
'''


class ReloadingWorker:
    """``run_workflow_worker --reload`` on the test database, and the app it watches."""

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path
        self.workflows = tmp_path / "reloadapp" / "workflows.py"
        self.workflows.parent.mkdir()
        (self.workflows.parent / "__init__.py").write_text("")
        self.edit("1")
        (tmp_path / "reload_settings.py").write_text(
            "from tests.settings import *  # noqa: F403\n\n"
            'INSTALLED_APPS = [*INSTALLED_APPS, "reloadapp"]  # noqa: F405\n'
        )
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "reload_settings",
            "DURABLE_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
        }
        self.log_path = tmp_path / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            # A session of its own: os.killpg() is a Ctrl-C in its terminal.
            self.proc = subprocess.Popen(
                self.command("run_workflow_worker", "--reload", *args),
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        return self.proc

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "django", *args]

    def edit(self, version: str) -> None:
        """Write ``workflows.py`` with ``VERSION = version`` and a newer modification time."""
        self.workflows.write_text(WORKFLOWS.format(version=version))
        self.touch()

    def touch(self) -> None:
        # Later each time: the reloader compares modification times, not contents.
        stamp = max(time.time(), self.workflows.stat().st_mtime) + 1
        os.utime(self.workflows, (stamp, stamp))

    def edit_until(self, version: str, done: Callable[[], Any], what: str) -> Any:
        """Edit, and touch the file again every 2 s until ``done()`` returns something.

        The reloader compares each file with what it saw at its first look: an edit made
        before that look (while the process starts) goes unnoticed, as with runserver.
        """
        self.edit(version)
        start = time.monotonic()
        touched = 0
        while not (found := done()):
            waited = time.monotonic() - start
            if waited > 30:
                raise AssertionError(f"Timed out waiting for {what}:\n{self.log()}")
            if waited > 2 * (touched + 1):
                self.touch()
                touched += 1
            time.sleep(0.1)
        return found

    def logged(self, text: str) -> Callable[[], bool]:
        return lambda: text in self.log()

    def start_run(self) -> Run:
        started = subprocess.run(
            [*self.command("durable", "start", "reload.versions"), "--args", f'["{self.folder}"]'],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return Run.objects.get(id=started.stdout.strip())

    def wait_for_step(self, pid: int) -> None:
        marker = self.folder / f"started-{pid}"
        wait_for(marker.exists, message=f"the step to start in process {pid}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def reloading(tmp_path: Path) -> Iterator[ReloadingWorker]:
    worker = ReloadingWorker(tmp_path)
    yield worker
    worker.stop()


def new_worker(*exclude: str) -> WorkerProcess | None:
    return WorkerProcess.objects.filter(stopped_at=None).exclude(id__in=exclude).first()


def serving_worker(exclude: tuple[str, ...] = ()) -> WorkerProcess:
    """Wait for a worker that has started and not stopped, other than ``exclude``."""
    found = wait_for(lambda: new_worker(*exclude), timeout=30, message="a worker process")
    assert isinstance(found, WorkerProcess)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def finished(run: Run) -> Any:
    run.refresh_from_db()
    return run.status in ("completed", "failed", "cancelled")


def test_a_code_change_restarts_the_worker_and_its_run_goes_on_at_once(reloading):
    proc = reloading.start()
    first = serving_worker()
    assert first.pid != proc.pid  # the worker is the reloader's child
    run = reloading.start_run()
    reloading.wait_for_step(first.pid)

    # Edited while the run is inside a step: the worker stops claiming, lets the step
    # finish (it returns VERSION as the old code has it), hands the run back, and exits.
    reloading.edit_until(
        "2", reloading.logged(f"workflows.py changed: worker {first.id}"), "the reload"
    )
    (reloading.folder / "go").touch()
    second = serving_worker(exclude=(first.id,))
    assert second.pid not in (first.pid, proc.pid)
    first.refresh_from_db()
    assert first.stopped_at is not None  # stopped cleanly, not killed
    assert not alive(first.pid)

    # The new process replays the run on the new code: the step recorded by the old one
    # is not run again, the next one runs at once (not after the lease: no takeover).
    wait_for(lambda: finished(run), timeout=30, message=f"the run to finish\n{reloading.log()}")
    assert (run.status, run.result, run.recoveries) == ("completed", [1, 2], 0)
    assert not (reloading.folder / f"started-{second.pid}").exists()

    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in its terminal
    assert proc.wait(30) == 0, reloading.log()
    second.refresh_from_db()
    assert second.stopped_at is not None
    assert not alive(second.pid)
    assert reloading.log().count("restarts when a Python file it imported changes") == 2


def test_sigterm_to_the_first_process_drains_the_worker_and_hands_its_run_back(reloading):
    proc = reloading.start()
    worker = serving_worker()
    run = reloading.start_run()
    reloading.wait_for_step(worker.pid)

    os.kill(proc.pid, signal.SIGTERM)  # to the first process only, as a process manager does
    wait_for(
        lambda: f"Worker {worker.id} stops" in reloading.log(),
        message=f"the worker to hear of the SIGTERM\n{reloading.log()}",
    )
    (reloading.folder / "go").touch()
    assert proc.wait(30) == 0, reloading.log()

    worker.refresh_from_db()
    run.refresh_from_db()
    assert worker.stopped_at is not None
    assert not alive(worker.pid)
    # The step finished and was recorded; the run waits for the next worker, unclaimed.
    assert (run.status, run.claimed_by) == ("pending", None)
    assert list(Step.objects.filter(run=run).values_list("name", "status", "result")) == [
        ("hold", "completed", 1)
    ]


def test_a_worker_that_cannot_start_starts_again_when_the_code_is_fixed(reloading):
    proc = reloading.start()
    first = serving_worker()

    reloading.edit_until("(", reloading.logged("starts again when a file changes"), "a crash")
    assert "SyntaxError" in reloading.log()
    assert proc.poll() is None  # it waits for a fix, as runserver does
    reloading.edit_until("3", lambda: new_worker(first.id), "a new worker")
    second = serving_worker(exclude=(first.id,))
    assert second.pid != first.pid

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, reloading.log()


def test_reload_refuses_burst():
    with pytest.raises(CommandError, match="--reload restarts a worker that runs until"):
        call_command("run_workflow_worker", "--reload", "--burst")
