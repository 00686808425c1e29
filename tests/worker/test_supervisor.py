"""``run_workflow_worker --processes N``: a supervisor of real worker processes.

The supervisor is started as users start it, and its children are found by their parent
pid. Every test kills what is left of them at teardown (they run in process groups of their
own, so killing the supervisor alone would leave them running).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from django_durable.management.commands import run_workflow_worker as command_module
from django_durable.models import Run, RunStatus, Step, WorkerProcess
from django_durable.worker import supervisor as supervisor_module
from django_durable.worker.supervisor import Supervisor, child_command
from tests.conftest import ROOT, WorkerProcesses, wait_for
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

FAST = ("--lease", "1", "--poll-interval", "0.1")


def processes(test):
    """Mark a test that starts real processes on the test database."""
    return pytest.mark.slow(pytest.mark.django_db(transaction=True)(test))


# --- processes ---------------------------------------------------------------------------------


def state(pid: int) -> str | None:
    """Return the process's state letter (R, S, Z...), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    return state(pid) not in (None, "Z")  # an orphan nobody reaps stays a zombie


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def kill(pid: int) -> None:
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


class Supervised:
    """Supervisors started through ``WorkerProcesses``, with their children."""

    def __init__(self, procs: WorkerProcesses) -> None:
        self.procs = procs
        self.children_seen: set[int] = set()

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return self.procs.start("--processes", "2", *args)

    def children(self, supervisor: subprocess.Popen[bytes], count: int = 2) -> list[int]:
        """Wait until ``count`` children of ``supervisor`` registered as workers."""

        def registered() -> list[int]:
            pids = children_of(supervisor.pid)
            self.children_seen.update(pids)
            rows = WorkerProcess.objects.filter(pid__in=pids, stopped_at=None)
            return pids if rows.count() == count == len(pids) else []

        return wait_for(registered, 30, f"{count} workers up\n{self.procs.logs()}")

    def logs(self) -> str:
        return self.procs.logs()

    def stop_all(self) -> None:
        for proc in self.procs.procs:
            self.children_seen.update(children_of(proc.pid))
        for pid in self.children_seen:
            kill(pid)
        self.procs.stop_all()
        wait_for(lambda: not any(alive(pid) for pid in self.children_seen), 10, "children gone")


@pytest.fixture
def supervised(worker_processes: WorkerProcesses) -> Iterator[Supervised]:
    procs = Supervised(worker_processes)
    yield procs
    procs.stop_all()  # before worker_processes' teardown and the database's


def exit_code(proc: subprocess.Popen[bytes], timeout: float, logs: str = "") -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{proc.pid} did not exit within {timeout}s\n{logs}") from None


def finished() -> bool:
    return not Run.objects.exclude(status=RunStatus.COMPLETED).exists()


@processes
def test_two_worker_processes_share_a_batch(supervised):
    handles = [wf.counted.start(3, pause=0.05) for _ in range(40)]
    supervisor = supervised.start("--concurrency", "2", *FAST)
    children = supervised.children(supervisor)
    wait_for(finished, 60, f"every run completed\n{supervised.logs()}")
    assert [h.result(timeout=1) for h in handles] == [3] * 40
    by_pid = Counter(Execution.objects.values_list("pid", flat=True))
    print(f"\n[supervisor] step executions per worker process: {dict(by_pid)}")
    assert set(by_pid) == set(children)  # both children worked, and only they did
    assert supervisor.pid not in by_pid
    assert sum(by_pid.values()) == Step.objects.count() == 120
    assert set(WorkerProcess.objects.values_list("pid", flat=True)) == set(children)
    supervised.procs.signal(supervisor, signal.SIGTERM)
    assert exit_code(supervisor, 20, supervised.logs()) == 0
    assert not WorkerProcess.objects.filter(stopped_at=None).exists()
    logs = supervised.logs()
    for number in (1, 2):
        assert f"[worker {number}] " in logs
        assert f"Supervisor: worker {number} (pid " in logs


@processes
def test_a_child_killed_is_started_again_and_no_run_is_lost(supervised):
    handles = [wf.counted.start(4, pause=0.3) for _ in range(6)]
    supervisor = supervised.start("--concurrency", "3", *FAST)
    first, second = supervised.children(supervisor)
    busy = wait_for(
        lambda: (
            Run.objects.filter(status=RunStatus.RUNNING, claimed_by__contains=f":{first}:")
            .values_list("claimed_by", flat=True)
            .first()
        ),
        30,
        "the first child executing a run",
    )
    os.kill(first, signal.SIGKILL)
    replacement = wait_for(
        lambda: [pid for pid in children_of(supervisor.pid) if pid not in (first, second)],
        30,
        f"a new child\n{supervised.logs()}",
    )
    supervised.children_seen.update(replacement)
    wait_for(finished, 60, f"every run completed\n{supervised.logs()}")
    assert [h.result(timeout=1) for h in handles] == [sum(range(4))] * 6
    assert Step.objects.count() == 24  # every step recorded once
    # Only the steps interrupted by the kill ran twice: at most one per thread of the child.
    assert Execution.objects.count() <= 24 + 3
    logs = supervised.logs()
    assert f"(pid {first}) was killed by SIGKILL" in logs, logs
    assert "starting it again in 1s" in logs
    assert supervisor.poll() is None
    print(f"\n[supervisor] killed {first} holding {busy}; started {replacement}")
    supervised.procs.signal(supervisor, signal.SIGTERM)
    assert exit_code(supervisor, 20, logs) == 0


@processes
def test_sigterm_drains_every_child_and_the_run_in_flight_is_handed_back(supervised):
    handle = wf.counted.start(10, pause=0.3)
    supervisor = supervised.start(*FAST)
    children = supervised.children(supervisor)
    wait_for(lambda: Step.objects.filter(run_id=handle.id).count() >= 2, message="two steps")
    supervised.procs.signal(supervisor, signal.SIGTERM)
    assert exit_code(supervisor, 20, supervised.logs()) == 0
    assert not [pid for pid in children if alive(pid)]
    run = Run.objects.get(pk=handle.id)
    assert run.status == RunStatus.PENDING and run.claimed_by is None  # handed back, not lost
    assert WorkerProcess.objects.filter(stopped_at=None).count() == 0
    # Another worker finishes it; draining finished the step in progress: none ran twice.
    assert exit_code(supervised.procs.start("--burst", *FAST), 60) == 0
    assert handle.result(timeout=1) == sum(range(10))
    executions = Counter(Execution.objects.filter(run_id=handle.id).values_list("label", flat=True))
    assert set(executions.values()) == {1}


@processes
def test_sigterm_to_every_process_at_once_drains_as_one_sigterm_does(supervised):
    # systemd's default (KillMode=control-group) signals the supervisor and its children.
    handle = wf.counted.start(10, pause=0.3)
    supervisor = supervised.start(*FAST)
    children = supervised.children(supervisor)
    wait_for(lambda: Step.objects.filter(run_id=handle.id).count() >= 2, message="two steps")
    for pid in (supervisor.pid, *children):
        os.kill(pid, signal.SIGTERM)
    assert exit_code(supervisor, 20, supervised.logs()) == 0
    run = Run.objects.get(pk=handle.id)
    assert run.status == RunStatus.PENDING and run.claimed_by is None
    assert "stopping every worker at once" not in supervised.logs()
    executions = Counter(Execution.objects.filter(run_id=handle.id).values_list("label", flat=True))
    assert set(executions.values()) == {1}  # the step in progress finished: a drain


@processes
def test_a_second_sigterm_stops_every_child_at_once(supervised):
    handle = wf.counted.start(1, pause=30)
    supervisor = supervised.start(*FAST, "--shutdown-timeout", "60")
    supervised.children(supervisor)
    wait_for(lambda: Execution.objects.filter(run_id=handle.id).exists(), message="step started")
    supervised.procs.signal(supervisor, signal.SIGTERM)
    time.sleep(0.5)
    assert supervisor.poll() is None  # a child waits for its 30 s step
    supervised.procs.signal(supervisor, signal.SIGTERM)
    assert exit_code(supervisor, 10, supervised.logs()) == 1
    run = Run.objects.get(pk=handle.id)
    assert run.status == RunStatus.PENDING and run.claimed_by is None
    assert "stopping every worker at once" in supervised.logs()


@processes
def test_burst_children_exit_and_so_does_the_supervisor(supervised):
    handles = [wf.counted.start(2) for _ in range(10)]
    supervisor = supervised.start("--burst", *FAST)
    assert exit_code(supervisor, 60, supervised.logs()) == 0
    assert [h.result(timeout=1) for h in handles] == [1] * 10
    logs = supervised.logs()
    assert logs.count("found nothing left to run (burst mode)") == 2, logs
    assert "starting it again" not in logs
    assert WorkerProcess.objects.count() == 2


@processes
def test_children_drain_by_themselves_when_the_supervisor_is_killed(supervised):
    supervisor = supervised.start(*FAST)
    children = supervised.children(supervisor)
    os.kill(supervisor.pid, signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in children), 20, "orphans gone")
    stopped = WorkerProcess.objects.filter(pid__in=children).exclude(stopped_at=None)
    assert stopped.count() == 2  # they drained: each recorded that it stopped


@processes
def test_the_supervisor_holds_no_database_connection(supervised):
    supervisor = supervised.start(*FAST)
    supervised.children(supervisor)
    fds = Path(f"/proc/{supervisor.pid}/fd")
    targets = [os.readlink(fd) for fd in fds.iterdir()]
    assert not [t for t in targets if t.startswith("socket:")], targets  # PostgreSQL
    database = str(connection.settings_dict["NAME"])
    assert not [t for t in targets if t.startswith(database)], targets  # SQLite


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-2"])
def test_processes_must_be_a_positive_number(value):
    with pytest.raises(CommandError, match=f"--processes must be 1 or more, not {value}"):
        call_command("run_workflow_worker", "--processes", value)


def test_processes_that_is_not_a_number_is_a_usage_error():
    with pytest.raises(CommandError, match="invalid int value: 'two'"):
        call_command("run_workflow_worker", "--processes", "two")


@pytest.mark.parametrize(
    "bad", [["--concurrency", "0"], ["--lease", "-1"], ["--shutdown-timeout", "-1"]]
)
@pytest.mark.django_db
def test_the_supervisor_refuses_bad_options_as_one_worker_does(bad):
    with pytest.raises(CommandError) as one:
        call_command("run_workflow_worker", *bad)
    with pytest.raises(CommandError) as supervisor:  # before any child is started
        call_command("run_workflow_worker", "--processes", "3", *bad)
    assert str(supervisor.value) == str(one.value)


def test_processes_and_reload_do_not_go_together():
    with pytest.raises(CommandError, match="without --processes"):
        call_command("run_workflow_worker", "--processes", "2", "--reload")


def options(*args: str) -> tuple[object, dict]:
    parser = command_module.Command().create_parser("manage.py", "run_workflow_worker")
    return parser, vars(parser.parse_args(args))


def test_children_get_every_option_but_processes(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest"])
    parser, given = options(
        *("--processes", "3", "-q", "a", "--queue", "b", "-c", "2", "--burst", "-v", "2"),
        *("--poll-interval", "0.5", "--lease", "12", "--shutdown-timeout", "7", "--traceback"),
    )
    command, env = child_command(parser, "run_workflow_worker", given)
    assert command == [
        *(sys.executable, "-m", "django", "run_workflow_worker", "--verbosity", "2"),
        *("--traceback", "--queue", "a", "--queue", "b", "--concurrency", "2", "--burst"),
        *("--poll-interval", "0.5", "--lease", "12.0", "--shutdown-timeout", "7.0"),
        "--skip-checks",
    ]
    assert env["DJANGO_SETTINGS_MODULE"] == "tests.settings"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert str(ROOT) in env["PYTHONPATH"].split(os.pathsep)  # from Python: this path


def test_children_start_the_way_the_supervisor_was_started(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None, raising=False)
    monkeypatch.setattr(
        sys, "argv", ["manage.py", "run_workflow_worker", "--processes", "2", "--skip-checks"]
    )
    parser, given = options("--processes", "2", "--skip-checks")
    command, env = child_command(parser, "run_workflow_worker", given)
    assert command[0] == sys.executable
    assert command[-3:] == ["manage.py", "run_workflow_worker", "--skip-checks"]
    assert "PYTHONPATH" not in env  # manage.py sets up its own


# --- the restart back-off, with processes that are not workers ---------------------------------


def supervise(code: str, caplog, *, until) -> tuple[list[str], int, float]:
    """Supervise one ``python -c code`` until ``until(caplog)``; return its output, the
    supervisor's status and the seconds it took."""
    lines: list[str] = []
    supervisor = Supervisor(
        [sys.executable, "-c", code],
        processes=1,
        shutdown_timeout=5,
        write_out=lines.append,
        write_err=lines.append,
        tick=0.05,
    )
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(supervisor.run()))
    with caplog.at_level(logging.INFO, logger="django_durable"):
        started = time.monotonic()
        thread.start()
        wait_for(lambda: until(caplog, lines), 60, "the supervisor's log")
        took = time.monotonic() - started
        supervisor.request_stop()
        thread.join(10)
    assert status, "the supervisor did not stop"
    return lines, status[0], took


def restart_delays(caplog) -> list[str]:
    return [
        r.getMessage().rsplit(" ", 1)[1] for r in caplog.records if "starting it again" in r.msg
    ]


def test_a_child_that_crashes_at_start_is_started_again_ever_more_slowly(caplog):
    code = "print('up'); raise SystemExit(3)"
    lines, _, took = supervise(code, caplog, until=lambda log, _: len(restart_delays(log)) >= 3)
    assert restart_delays(caplog) == ["1s", "2s", "4s"]
    # Three starts, the third three seconds after the first: not a tight loop.
    assert lines.count("[worker 1] up") == 3, lines
    assert took >= 3
    assert "worker 1 (pid " in caplog.text and "exited with status 3 after" in caplog.text


def test_the_back_off_starts_over_once_a_child_stayed_up(caplog, monkeypatch):
    monkeypatch.setattr(supervisor_module, "STABLE_AFTER", 0.3)
    code = "import time; time.sleep(0.4); raise SystemExit(1)"
    supervise(code, caplog, until=lambda log, _: len(restart_delays(log)) >= 3)
    assert restart_delays(caplog)[:3] == ["1s", "1s", "1s"], caplog.text


def test_a_stopped_child_is_not_started_again_and_its_status_is_the_supervisors(caplog):
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "print('serving', flush=True)\n"
        "time.sleep(60)\n"
    )
    lines, status, _ = supervise(code, caplog, until=lambda _, lines: lines)
    assert lines == ["[worker 1] serving"]
    assert status == 0
    assert "starting it again" not in caplog.text
    assert "Supervisor: worker 1 (pid" in caplog.text and "exited with status 0" in caplog.text
