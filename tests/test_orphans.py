"""The processes the tests start die with the test process (tests/orphans.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.conftest import ROOT, wait_for

# A stand-in for a test process: it starts a long-lived child the way the fixtures do,
# says its pid, and waits to be killed.
PARENT = """
import subprocess, sys, time
from tests.orphans import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         preexec_fn=die_with_parent())
print(child.pid, flush=True)
time.sleep(120)
"""


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")  # a zombie is gone too
    except FileNotFoundError:
        return True


def test_a_child_dies_with_a_test_process_killed_by_sigkill():
    with subprocess.Popen(
        [sys.executable, "-c", PARENT],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        kill_and_watch(parent, child)


def kill_and_watch(parent: subprocess.Popen[bytes], child: int) -> None:
    try:
        assert not gone(child)
        parent.kill()  # no teardown runs
        parent.wait(10)
        wait_for(lambda: gone(child), 10, "the child to die with its parent")
    finally:
        if not gone(child):
            os.kill(child, signal.SIGKILL)
