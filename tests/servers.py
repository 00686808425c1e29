"""Real servers for the serving tests: uvicorn and gunicorn as subprocesses on the test
database, a reader of Server-Sent Events as ``EventSource`` reads them, and counters of what
a server holds open (its client sockets, its PostgreSQL connections).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from django.db import connection

from tests.conftest import ROOT, wait_for
from tests.orphans import die_with_parent

ASGI_APP = "tests.asgi:application"
# gunicorn calls a factory given with parentheses: no wsgi.py needed for the tests.
WSGI_APP = "django.core.wsgi:get_wsgi_application()"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def uvicorn(port: int) -> list[str]:
    return [
        *("-m", "uvicorn", ASGI_APP, "--host", "127.0.0.1", "--port", str(port)),
        *("--lifespan", "off", "--timeout-graceful-shutdown", "1", "--no-access-log"),
    ]


def gunicorn(port: int, *args: str, app: str = WSGI_APP) -> list[str]:
    return [
        *("-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}"),
        # No control socket: its default path is shared by every gunicorn of the machine.
        *("--graceful-timeout", "1", "--no-control-socket", *args),
    ]


class Server:
    """A server subprocess on the test database, named in PostgreSQL by ``PGAPPNAME``.

    It runs in a session of its own, so that ``stop()`` ends its workers with it.
    """

    def __init__(self, name: str, command: list[str], port: int, log_dir: Path, **env: str):
        self.name = name
        self.port = port
        self.log_path = log_dir / f"{name}.log"
        environ = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DURABLE_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "PYTHONPATH": str(ROOT),
            "PGAPPNAME": name,
            **env,
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *command],
                cwd=ROOT,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )

    def wait_until_serving(self) -> Server:
        """Return once a request answers (every worker imported Django by then)."""

        def answers() -> bool:
            assert self.proc.poll() is None, self.log()
            try:
                return get(self.port, "/durable/csrf/", timeout=2).status == 200
            except OSError:
                return False

        wait_for(answers, timeout=30, message=f"{self.name} to answer")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM the server; SIGKILL what is left of its session after 5 seconds."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # gone, workers and all
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)

    def client_sockets(self) -> int:
        """Return how many client connections the server has not closed.

        Those ESTABLISHED, and those in CLOSE_WAIT: the client hung up, the server has not
        noticed yet.
        """
        local = f"0100007F:{self.port:04X}"
        rows = [row.split() for row in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        return sum(1 for row in rows if row[1] == local and row[3] in ("01", "08"))

    def threads(self) -> int:
        """Return the threads of the server's processes (its master and workers)."""
        count = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError):
                session = int(stat.read_text().rsplit(")", 1)[1].split()[3])
                if session == self.proc.pid:
                    count += len(list((stat.parent / "task").iterdir()))
        return count

    def backends(self) -> dict[str, int]:
        """Return the server's PostgreSQL connections: LISTENing ones, and the others."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT query LIKE 'LISTEN %%', count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s GROUP BY 1",
                [self.name],
            )
            found = dict(cursor.fetchall())
        return {"listening": found.get(True, 0), "others": found.get(False, 0)}


@dataclasses.dataclass
class Answer:
    status: int
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


def get(port: int, path: str, *, token: str = "", timeout: float = 10) -> Answer:
    """GET ``path`` on a connection of its own, closed after the answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return Answer(response.status, body, time.monotonic() - started)


@dataclasses.dataclass
class Frame:
    """One Server-Sent Events frame, its fields as EventSource reads them."""

    id: str | None = None
    event: str = ""  # "message" for data without an event name, as EventSource dispatches it
    data: str = ""
    retry: int | None = None
    comment: str = ""


class EventStream:
    """A ``text/event-stream`` response read frame by frame; ``close()`` hangs up."""

    def __init__(self, port: int, path: str, *, last_event_id: str = "", timeout: float = 10):
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path, headers=headers)
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.getheader("Content-Type") == "text/event-stream"

    def frames(self) -> Iterator[Frame]:
        """Yield the frames until the server ends the response."""
        frame, seen = Frame(), False
        while line := self.response.readline():
            text = line.decode().rstrip("\r\n")
            if not text:
                if seen:
                    if frame.data and not frame.event:
                        frame.event = "message"
                    yield frame
                frame, seen = Frame(), False
                continue
            seen = True
            name, _, value = text.partition(":")
            value = value.removeprefix(" ")
            if not name:
                frame.comment = value
            elif name == "data":
                frame.data = f"{frame.data}\n{value}" if frame.data else value
            elif name == "retry":
                frame.retry = int(value)
            elif name in ("id", "event"):
                setattr(frame, name, value)

    def next_frame(self) -> Frame:
        """Return the next frame (the first one is the ``retry:`` hint)."""
        return next(self.frames())

    def until(self, event: str) -> list[Frame]:
        """Return the frames up to and including the first ``event`` frame."""
        frames = []
        for frame in self.frames():
            frames.append(frame)
            if frame.event == event:
                return frames
        raise AssertionError(f"the stream ended without {event!r}: {frames}")

    def close(self) -> None:
        self.conn.close()


class Servers:
    """The servers a test starts, each on a free port, and the streams it reads from them:
    all stopped and closed at its teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Server] = []
        self.streams: list[EventStream] = []

    def start(
        self,
        name: str,
        command: Callable[[int], list[str]],
        *,
        settings: dict[str, Any] | None = None,
        **env: str,
    ) -> Server:
        """Start ``command(port)`` as ``name`` (unique on the PostgreSQL server) and wait.

        It runs with the default POLL_INTERVAL (1 s), as a deployment would, where the tests
        use 0.1 s: an open stream reads the database once per POLL_INTERVAL even when quiet.
        ``settings`` are more DJANGO_DURABLE settings.
        """
        settings = {"POLL_INTERVAL": 1.0, **(settings or {})}
        env["DURABLE_TEST_SETTINGS"] = json.dumps(settings)
        port = free_port()
        server = Server(f"{name}-{os.getpid()}", command(port), port, self.log_dir, **env)
        self.started.append(server)
        return server.wait_until_serving()

    def stream(self, server: Server, path: str, *, last_event_id: str = "") -> EventStream:
        """Open ``path`` as EventSource would; the stream is closed at teardown at the latest."""
        stream = EventStream(server.port, path, last_event_id=last_event_id)
        self.streams.append(stream)
        return stream

    def stop_all(self) -> None:
        for stream in self.streams:
            stream.close()
        for server in self.started:
            server.stop()
