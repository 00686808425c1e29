"""Server-Sent Events under WSGI, measured: gunicorn's sync workers and its gthread workers.

Under WSGI an open stream is a sync generator that holds what serves it for its whole life:
a sync worker is a whole process, a gthread worker's thread is one of ``--threads``. These
tests measure what that costs a plain GET, for docs/howto/securing-the-api.md.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_durable.testing import run_ready
from tests.conftest import wait_for
from tests.servers import Answer, EventStream, Servers, get, gunicorn
from tests.testapp import workflows as wf

pytestmark = pytest.mark.slow


@pytest.fixture
def servers(transactional_db: Any, tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    yield started
    started.stop_all()


class QuietRun:
    """A run whose stream has one item and stays open, read with a token of its own."""

    def __init__(self) -> None:
        handle = wf.stream_then_wait.start(1)
        run_ready()
        self.token = handle.create_token()
        self.page = f"/durable/runs/{handle.id}/"
        self.stream = f"/durable/runs/{handle.id}/streams/out/?token={self.token}"

    def get(self, port: int) -> Answer:
        """GET the run's page (waiting up to 30 s for the server)."""
        answer = get(port, self.page, token=self.token, timeout=30)
        assert answer.status == 200, answer.body
        return answer

    def get_later(self, port: int) -> tuple[threading.Thread, list[Answer]]:
        """GET the run's page in a thread of its own."""
        answers: list[Answer] = []
        thread = threading.Thread(target=lambda: answers.append(self.get(port)))
        thread.start()
        return thread, answers


def read_to_the_end(stream: EventStream) -> str:
    """Read until the server ends the response; return its last event, or how it broke."""
    last = ""
    try:
        for frame in stream.frames():
            last = frame.event or last
    except (http.client.HTTPException, OSError) as cut:
        return type(cut).__name__
    return last


def sync_workers(port: int) -> list[str]:
    # One worker, killed by the master after 2 s inside one request (by default: 30 s).
    return gunicorn(port, "-w", "1", "--timeout", "2")


def gthread_workers(port: int) -> list[str]:
    return gunicorn(port, "-k", "gthread", "-w", "1", "--threads", "4")


def test_a_sync_worker_is_held_by_a_stream_until_gunicorn_kills_it(servers):
    server = servers.start("gunicorn-sync", sync_workers, settings={"API_STREAM_SECONDS": 10})
    run = QuietRun()
    assert run.get(server.port).seconds < 1.0

    stream = servers.stream(server, run.stream)
    assert stream.until("message")[-1].id == "0"
    opened = time.monotonic()
    waiting, answers = run.get_later(server.port)
    ending = read_to_the_end(stream)
    lasted = time.monotonic() - opened
    waiting.join()
    print(f"sync: the stream cut after {lasted:.1f} s, a GET waited {answers[0].seconds:.1f} s")
    assert ending not in ("close", "end")  # cut: not the run's end, not API_STREAM_SECONDS
    assert 1.5 <= lasted < 10
    assert answers[0].seconds >= 1.5  # it waited for the worker to die and another to boot
    assert "WORKER TIMEOUT" in server.log()


def test_gthread_serves_as_many_streams_as_threads_and_holds_them_after_a_hang_up(servers):
    server = servers.start("gunicorn-gthread", gthread_workers, settings={"API_STREAM_SECONDS": 2})
    run = QuietRun()

    streams = [servers.stream(server, run.stream) for _ in range(3)]
    for stream in streams:
        assert stream.until("message")[-1].id == "0"
    with_three = run.get(server.port)
    assert with_three.seconds < 1.0  # the fourth thread answers

    streams.append(servers.stream(server, run.stream))
    assert streams[-1].until("message")[-1].id == "0"
    with_four = run.get(server.port)
    print(
        f"gthread, 4 threads: a GET beside 3 streams {with_three.seconds * 1000:.0f} ms, "
        f"beside 4 {with_four.seconds:.1f} s"
    )
    assert with_four.seconds >= 1.0  # until API_STREAM_SECONDS ended the first stream
    for stream in streams:
        stream.close()
    wait_for(lambda: server.client_sockets() == 0, timeout=5, message="the streams' ends")

    # Clients that hang up at once: a thread notices only when it next writes (an item, the
    # keep-alive comment after 15 s), here when API_STREAM_SECONDS ends the stream.
    for _ in range(4):
        stream = servers.stream(server, run.stream)
        assert stream.until("message")[-1].id == "0"
        stream.close()
    assert server.client_sockets() == 4  # in CLOSE_WAIT: no thread has noticed
    after_hang_ups = run.get(server.port)
    print(f"gthread: a GET after 4 hang-ups {after_hang_ups.seconds:.1f} s")
    assert after_hang_ups.seconds >= 1.0
