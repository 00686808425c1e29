"""L0: the database's commit limit, the ceiling of a design with one commit per checkpoint.

N client processes (``--concurrency``), each on its own psycopg connection in autocommit
mode, insert one small row per transaction for a fixed time. Processes, not threads, so
that Python's GIL does not cap the clients.
"""

from __future__ import annotations

import multiprocessing
import time

import psycopg

from bench import workloads
from bench.systems import base

SUPPORTED = {"L0": "psycopg, one single-row INSERT per transaction (autocommit)"}
UNSUPPORTED: dict[str, str] = {}


def client(dsn: str, start_at: float, stop_at: float) -> int:
    """Commit single-row INSERTs from ``start_at`` until ``stop_at``; return how many."""
    commits = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.cursor()
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < stop_at:
            cursor.execute("INSERT INTO l0 (payload) VALUES (%s)", ("x" * 32,), prepare=True)
            commits += 1
    return commits


def l0(dsn: str, clients: int, seconds: float) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE l0 (id bigserial PRIMARY KEY, payload text NOT NULL)")
    start_at = time.time() + 1.0  # every client is connected before the clock starts
    stop_at = start_at + seconds
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        counts = pool.starmap(client, [(dsn, start_at, stop_at)] * clients)
    commits = sum(counts)
    return {
        "clients": clients,
        "seconds": seconds,
        "commits": commits,
        "commits_per_s": commits / seconds,
    }


def main() -> None:
    args = base.parse_args(SUPPORTED)
    base.emit(l0(args.dsn, args.concurrency, workloads.sizes(args.quick).l0_seconds))


if __name__ == "__main__":
    main()
