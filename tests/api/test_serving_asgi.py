"""Server-Sent Events served for real under ASGI: uvicorn, and gunicorn with uvicorn workers.

Each test starts its server as a subprocess on the test database, drives a real run in the
test process (``run_ready``) or in a worker process, and talks to the server over sockets
as a browser would. Measured here, and quoted in docs/howto/securing-the-api.md: 20 open
streams leave a plain GET fast, every stream gets every item, hanging up frees the server's
connection and its database connection, a stream ends by itself after API_STREAM_SECONDS
and a reconnect with ``Last-Event-ID`` resumes it, and under ASGI only ``CONN_MAX_AGE = 0``
closes the database connections requests opened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from django_durable import read_stream, send
from django_durable.testing import run_ready
from tests.conftest import ON_POSTGRES, ROOT, wait_for
from tests.servers import ASGI_APP, Frame, Server, Servers, get, gunicorn, uvicorn
from tests.testapp import workflows as wf

pytestmark = pytest.mark.slow

postgres_only = pytest.mark.skipif(
    not ON_POSTGRES, reason="counts the server's connections in PostgreSQL's pg_stat_activity"
)

OPEN_STREAMS = 20
GUNICORN_WORKERS = 2
ASGI_SERVERS: dict[str, Callable[[int], list[str]]] = {
    "uvicorn": uvicorn,
    "gunicorn-uvicorn-worker": lambda port: gunicorn(
        port, "-k", "uvicorn_worker.UvicornWorker", "-w", str(GUNICORN_WORKERS), app=ASGI_APP
    ),
}


@pytest.fixture
def servers(transactional_db: Any, tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    yield started
    started.stop_all()


def stream_path(handle: Any, key: str, token: str) -> str:
    return f"/durable/runs/{handle.id}/streams/{key}/?token={token}"


def items(frames: list[Frame]) -> list[tuple[int, Any]]:
    return [(int(str(f.id)), json.loads(f.data)) for f in frames if f.event == "message"]


def threads_back(server: Server, idle: int) -> bool:
    """Return whether the server is back to about its ``idle`` threads. Each open stream
    keeps one; a few stay in each process once it has served streams (its LISTEN thread on
    PostgreSQL, executors): 3 in uvicorn's after any number of long polls and streams."""
    return server.threads() <= idle + 3 * GUNICORN_WORKERS


@pytest.mark.parametrize("kind", ASGI_SERVERS)
def test_twenty_open_streams_leave_the_server_free_and_each_gets_every_item(servers, kind):
    server = servers.start(kind, ASGI_SERVERS[kind])
    handle = wf.http_receives.start("serving")
    run_ready()  # up to its wait for the approval; its log is open and empty
    token = handle.create_token()
    idle = server.threads()
    path = stream_path(handle, "log", token)
    streams = [servers.stream(server, path) for _ in range(OPEN_STREAMS)]
    assert {stream.next_frame().retry for stream in streams} == {1000}  # POLL_INTERVAL, in ms
    wait_for(lambda: server.client_sockets() == OPEN_STREAMS, timeout=5, message="20 sockets")
    # Django gives each request a thread for its sync code; a stream keeps its one, idle.
    threads = server.threads()
    assert threads >= idle + OPEN_STREAMS

    answer = get(server.port, f"/durable/runs/{handle.id}/", token=token)
    print(
        f"{kind}: {OPEN_STREAMS} open streams, {threads} threads (idle: {idle}), "
        f"a plain GET in {answer.seconds * 1000:.0f} ms"
    )
    assert (answer.status, answer.json()["status"]) == (200, "waiting")
    assert answer.seconds < 1.0

    send(handle.id, "ok", "approval")
    run_ready()  # writes three lines and closes the log
    expected = [(line, {"line": line, "label": "serving"}) for line in range(3)]
    for stream in streams:
        assert items(stream.until("close")) == expected
        stream.close()
    wait_for(lambda: server.client_sockets() == 0, timeout=5, message="the server to hang up")
    wait_for(lambda: threads_back(server, idle), timeout=5, message="the streams' threads")


@postgres_only
@pytest.mark.parametrize("kind", ASGI_SERVERS)
def test_streams_give_back_their_database_connections_when_they_end(servers, kind):
    server = servers.start(kind, ASGI_SERVERS[kind])
    idle = server.threads()
    ending = wf.http_receives.start("ending")  # its log is closed by the run
    staying = wf.stream_then_wait.start(1)  # its stream stays open: the clients hang up
    run_ready()
    ended = servers.stream(server, stream_path(ending, "log", ending.create_token()))
    token = staying.create_token()
    cut = [servers.stream(server, stream_path(staying, "out", token)) for _ in range(19)]
    for stream in cut:
        assert items(stream.until("message")) == [(0, 0)]
    # Each follower has just read the database; quiet for a second, it closes its connection.
    busy = server.backends()["others"]
    assert busy > 0
    wait_for(lambda: server.backends()["others"] == 0, timeout=5, message="quiet followers")
    print(f"{kind}: database connections of 20 streams: {busy} while busy, 0 once quiet")

    for stream in cut[:10]:
        stream.close()
    wait_for(lambda: server.client_sockets() == 10, timeout=5, message="10 hang-ups")
    send(ending.id, "ok", "approval")
    run_ready()
    assert len(items(ended.until("close"))) == 3
    for stream in [ended, *cut[10:]]:
        stream.close()
    wait_for(lambda: server.client_sockets() == 0, timeout=5, message="the rest")
    wait_for(lambda: threads_back(server, idle), timeout=5, message="the streams' threads")
    assert server.backends()["others"] == 0
    # What stays is one LISTEN connection per server process, by design.
    assert 1 <= server.backends()["listening"] <= GUNICORN_WORKERS


def follow_like_a_browser(
    servers: Servers, server: Server, path: str
) -> list[tuple[float, list[Frame]]]:
    """Follow ``path`` as EventSource does, until its ``close`` event: when the server ends
    a response, connect again with the last id received as ``Last-Event-ID``.

    Return how long each connection lasted, and its frames.
    """
    connections: list[tuple[float, list[Frame]]] = []
    last_id = ""
    while len(connections) < 10:
        stream = servers.stream(server, path, last_event_id=last_id)
        opened = time.monotonic()
        frames = list(stream.frames())  # until the server ends the response
        connections.append((time.monotonic() - opened, frames))
        stream.close()
        if frames[-1].event == "close":
            return connections
        last_id = next((f.id for f in reversed(frames) if f.id is not None), last_id)
        time.sleep(0.5)  # EventSource waits `retry` ms; longer here: the run writes meanwhile
    raise AssertionError(f"no close after {len(connections)} connections")


def test_a_stream_ends_after_api_stream_seconds_and_a_browser_resumes_it(servers, worker_processes):
    server = servers.start("uvicorn", uvicorn, settings={"API_STREAM_SECONDS": 2})
    handle = wf.streams.start(20, pause=0.25)  # an item every 0.25 s or more, then its close
    worker_processes.start()
    wait_for(lambda: list(read_stream(handle.id, "out")), message="the first item")
    path = stream_path(handle, "out", handle.create_token(["stream"]))

    connections = follow_like_a_browser(servers, server, path)
    print(f"{len(connections)} connections: " + ", ".join(f"{s:.2f} s" for s, _ in connections))
    assert len(connections) >= 2
    for lasted, frames in connections[:-1]:  # cut by the server, each with the hint first
        assert 1.9 <= lasted < 3, lasted
        assert frames[0].retry == 1000
        assert not [f for f in frames if f.event in ("close", "end")]
    received = [item for _, frames in connections for item in items(frames)]
    assert received == [(index, {"index": index}) for index in range(20)]


class LongPolls:
    """``count`` concurrent GETs of ``path``, each in a thread of its own."""

    def __init__(self, server: Server, path: str, token: str, count: int) -> None:
        self.answers: list[int] = []
        self.threads = [
            threading.Thread(
                target=lambda: self.answers.append(get(server.port, path, token=token).status)
            )
            for _ in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def statuses(self) -> list[int]:
        """Return their statuses, once all answered."""
        for thread in self.threads:
            thread.join()
        return self.answers


@postgres_only
@pytest.mark.parametrize("conn_max_age", [0, 60])
def test_under_asgi_only_conn_max_age_0_closes_what_requests_opened(servers, conn_max_age):
    server = servers.start("uvicorn", uvicorn, DURABLE_TEST_CONN_MAX_AGE=str(conn_max_age))
    idle = server.threads()
    handle = wf.stream_then_wait.start(1)
    run_ready()
    token = handle.create_token()
    # Ten long polls of a value the run never writes, then ten streams left within a second.
    polls = LongPolls(server, f"/durable/runs/{handle.id}/values/never/?timeout=2", token, 10)
    # Unlike a quiet stream, a waiting long poll holds its connection.
    wait_for(lambda: server.backends()["others"] == 10, timeout=2, message="10 waiting polls")
    assert polls.statuses() == [404] * 10
    after_polls = server.backends()["others"]
    for _ in range(10):
        stream = servers.stream(server, stream_path(handle, "out", token))
        assert items(stream.until("message")) == [(0, 0)]
        stream.close()
    wait_for(lambda: server.client_sockets() == 0, timeout=5, message="the server to hang up")
    print(f"CONN_MAX_AGE={conn_max_age}: {after_polls} connections open after 10 long polls")
    if conn_max_age:
        # Each request ran in a thread of its own, gone now: its connection stays open until
        # the garbage collector happens to free it (all ten, as a rule).
        assert after_polls > 0
    else:
        wait_for(lambda: threads_back(server, idle), timeout=5, message="the requests' threads")
        wait_for(lambda: server.backends()["others"] == 0, timeout=5, message="closing")


def example_databases(entry_point: str) -> str:
    """Return the example project's DATABASES on PostgreSQL, once ``entry_point`` ran."""
    env = {**os.environ, "DATABASE_URL": "postgres://shop@db.internal/shop"}
    env["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    env.pop("DURABLE_EXAMPLE_SERVER", None)
    script = f"{entry_point}; from django.conf import settings as s; print(s.DATABASES)"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_example_project_closes_connections_under_asgi_and_keeps_them_in_workers():
    served = example_databases("import example_project.asgi")  # what uvicorn imports
    assert "'CONN_MAX_AGE': 0," in served
    worker = example_databases("import django; django.setup()")  # as manage.py does
    assert "'CONN_MAX_AGE': 60," in worker
