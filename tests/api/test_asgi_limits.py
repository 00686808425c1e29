"""Oversized bodies under ASGI, through uvicorn: refused before Django reads them."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.orphans import die_with_parent
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024

pytestmark = pytest.mark.slow


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    log = (tmp_path_factory.mktemp("uvicorn") / "uvicorn.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.asgi:application", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(),
    )

    def answers() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return proc.poll() is not None

    wait_for(answers, timeout=20, message="uvicorn")
    assert proc.poll() is None, Path(log.name).read_text()
    yield port, proc
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def request(port: int, head: str, body_chunks: Iterator[bytes]) -> tuple[int, bytes, int]:
    """Send a request, streaming its body until the server answers; return status, body, sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head.encode())
        conn.setblocking(False)
        answer = b""
        for chunk in body_chunks:
            with contextlib.suppress(BlockingIOError):
                answer += conn.recv(65536)
            if answer:
                break
            try:
                conn.sendall(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        conn.settimeout(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # to the end: the answers close the connection
            try:
                more = conn.recv(65536)
            except (ConnectionResetError, OSError):
                break
            if not more:
                break
            answer += more
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2], sent


def test_a_100_mb_body_with_its_length_is_refused_unread(server):
    port, proc = server
    before = rss_kb(proc.pid)
    head = (
        "POST /durable/runs/ HTTP/1.1\r\nHost: testserver\r\n"
        f"Content-Type: application/json\r\nContent-Length: {100 * MB}\r\n\r\n"
    )
    status, body, sent = request(port, head, (b"x" * 65536 for _ in range(1600)))
    assert status == 413
    assert b'"payload_too_large"' in body
    assert sent < 10 * MB  # answered at once, not after the upload
    assert rss_kb(proc.pid) - before < 50 * 1024


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server):
    port, proc = server
    before = rss_kb(proc.pid)
    head = (
        "POST /durable/events/ HTTP/1.1\r\nHost: testserver\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )

    def chunks() -> Iterator[bytes]:
        for _ in range(1600):  # 100 MB if nobody stops it
            yield b"10000\r\n" + b"x" * 65536 + b"\r\n"

    status, body, sent = request(port, head, chunks())
    assert status == 413
    assert b'"payload_too_large"' in body
    assert sent < 10 * MB
    assert rss_kb(proc.pid) - before < 50 * 1024


def test_a_body_within_the_limit_reaches_django(server):
    port, _ = server
    payload = b'{"name": "x"}'
    head = (
        "POST /durable/events/ HTTP/1.1\r\nHost: testserver\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    status, body, _ = request(port, head, iter([payload]))
    # Anonymous: the access policy refuses it, in the API's JSON, so Django saw it.
    assert status == 403, body
    assert b'"not_authenticated"' in body
