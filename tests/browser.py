"""What the browser tests share: Debian's Chromium, the example project on a database of
its own, served by uvicorn with a real worker, and screenshots under ``build/screenshots/``.

Used by ``tests/test_shop_page.py`` (a shopper's pages) and ``tests/test_admin_pages.py``
(the admin as a support desk).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import ON_POSTGRES, ROOT
from tests.example_db import copied_example
from tests.orphans import die_with_parent

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "build" / "screenshots"
LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")
BACKEND = "postgres" if ON_POSTGRES else "sqlite"


def require_browser() -> None:
    """Skip without Chromium, saying why; fail instead when DURABLE_REQUIRE_BROWSER=1 (CI)."""
    if CHROMIUM.exists():
        return
    reason = f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("DURABLE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"DURABLE_REQUIRE_BROWSER=1 but {reason}.")
    pytest.skip(reason)


def example_environment(template: str, tmp_path: Path, scratch: str) -> Iterator[dict[str, str]]:
    """Yield the environment of the example project on a fresh copy of the session's
    migrated database: a temporary SQLite file, or with ``DURABLE_TEST_DB=postgres`` the
    database ``scratch``."""
    require_browser()
    yield from copied_example(template, tmp_path / f"{scratch}.sqlite3", scratch)


class Processes:
    """The server and the worker, each logging to a file; all stopped at teardown."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent(),
            )
        self.procs.append(proc)
        return proc

    def worker(self) -> subprocess.Popen[bytes]:
        """Start ``run_workflow_worker``, polling often so that pages follow runs quickly."""
        return self.start("worker", "manage.py", "run_workflow_worker", "--poll-interval", "0.2")

    def serve(self) -> str:
        """Start uvicorn on a free port; return its address once it listens."""
        proc = self.start(
            "uvicorn",
            *("-m", "uvicorn", "example_project.asgi:application"),
            *("--host", "127.0.0.1", "--port", "0", "--lifespan", "off"),
            *("--timeout-graceful-shutdown", "1"),
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log("uvicorn"))
            if found:
                return found.group(1)
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"uvicorn did not start:\n{self.logs()}")

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {p.stem}\n{self.log(p.stem)}" for p in self.log_dir.glob("*.log"))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@contextmanager
def served(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Processes]]:
    """Yield the address of the example project, served by uvicorn, with a worker."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    procs = Processes(env, log_dir)
    try:
        procs.worker()
        yield procs.serve(), procs
    finally:
        procs.stop_all()
        print(procs.logs())  # shown when the test fails


@contextmanager
def browser() -> Iterator[Browser]:
    """Yield headless Chromium (Debian's), closed afterwards."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Page, prefix: str, name: str, *, full_page: bool = True) -> Path:
    """Save the page as ``build/screenshots/<prefix>-<database>-<name>.png``: the whole
    page, or what the window shows (``full_page=False``, the size the docs use)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{prefix}-{BACKEND}-{name}.png"
    page.screenshot(path=path, full_page=full_page)
    return path
