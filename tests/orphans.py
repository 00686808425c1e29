"""Processes the tests start end with the test process, even one killed by a signal.

A test process killed by SIGKILL (a CI time-out, an impatient Ctrl-\\) runs no teardown:
the workers, servers and PgBouncers it started would go on, polling a test database
nobody drops. Linux ends them when their parent dies: ``prctl(PR_SET_PDEATHSIG)``, set in
the child between fork and exec, kept across exec. (It fires when the thread that started
the child ends, so start them from the test's own thread, as every fixture here does.)
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not after the fork


def die_with_parent() -> Callable[[], None]:
    """Return a ``preexec_fn`` for ``subprocess.Popen``: SIGKILL the child when we die."""
    parent = os.getpid()

    def arrange() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return arrange
