"""The benchmark harness (bench/): its report logic, and one system module end to end.

No timing is asserted: speed is measured by `make bench`, never tested. The peers' packages
(dbos, procrastinate, django-tasks-db) are not needed here; Absurd's system module is run
when `make bench` has installed it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from bench import report
from tests.conftest import ON_POSTGRES, ROOT

SCRATCH_DATABASE = f"durable_bench_test_{os.getpid()}"


def _sample(workload: str, concurrency: int | None, system: str, rep: int, **result) -> dict:
    return {
        "rep": rep,
        "workload": workload,
        "concurrency": concurrency,
        "system": system,
        "result": result,
        "wall_seconds": 1.0,
    }


def _document(samples: list[dict]) -> dict:
    return {
        "date": "2026-01-01T00:00:00+00:00",
        "repeat": 3,
        "quick": False,
        "machine": {
            "cpu": "test",
            "cores": 2,
            "memory_gib": 1,
            "python": "3.11",
            "postgresql": "15",
            "postgresql_settings": {"synchronous_commit": "on", "shared_buffers": "128MB"},
            "packages": {"django-durable": "0.1.0"},
        },
        "samples": samples,
        "extras": {
            "W5": [
                {
                    "result": {
                        "target": {
                            "name": "worker RSS independent of the number of suspended runs",
                            "holds": True,
                            "detail": "12 bytes per suspended run",
                        }
                    },
                    "wall_seconds": 1.0,
                }
            ],
            "W6": "`bench/w6.py` does not exist yet: not run.",
        },
    }


def test_summary_medians_ratios_and_targets() -> None:
    samples = []
    for rep, (ours, dbos, l0) in enumerate([(3000, 40, 6000), (2800, 38, 5000), (3100, 39, 7000)]):
        samples += [
            _sample("L0", 1, "postgres", rep, commits_per_s=l0),
            _sample("W1", 4, "durable", rep, steps_per_s=ours, runs_per_s=ours / 10),
            _sample("W1", 4, "dbos-queue", rep, steps_per_s=dbos, runs_per_s=dbos / 10),
            _sample("W1", 1, "durable", rep, steps_per_s=1000, runs_per_s=100),
            _sample("W1", 1, "absurd", rep, steps_per_s=800, runs_per_s=80),
            _sample("W2", 4, "durable", rep, runs_per_s=900),
            _sample("W2", 4, "procrastinate", rep, runs_per_s=1000),
            _sample("W3", 4, "durable", rep, median_ms=5.0, p95_ms=7.0),
            _sample("W3", 4, "dbos-direct", rep, median_ms=6.0, p95_ms=8.0),
        ]
    samples.append(
        {"rep": 0, "workload": "W2", "concurrency": 4, "system": "django-tasks", "error": "boom"}
    )
    document = _document(samples)
    summary = report.summarise(samples)
    assert summary["W1/c4"]["durable"]["steps_per_s"] == {
        "median": 3000,
        "min": 2800,
        "max": 3100,
        "n": 3,
    }
    assert summary["W2/c4"]["django-tasks"]["errors"] == ["boom"]
    assert report.speedup(summary, "W1", "W1/c4", "W1/c4", "dbos-queue") == pytest.approx(3000 / 39)
    # Latency: the peer's median over ours, so above 1 means django-durable is faster.
    assert report.speedup(summary, "W3", "W3/c4", "W3/c4", "dbos-direct") == pytest.approx(1.2)

    checks = {check["target"]: check for check in report.targets(summary)}
    assert checks["W1 steps/s >= 10x DBOS, queue path, concurrency 4"]["holds"] is True
    assert checks["W1 steps/s >= 10x DBOS, queue path, concurrency 1"]["holds"] is None
    share = checks["W1 steps/s >= 20% of L0 (1 client), one worker process, concurrency 4"]
    assert share["value"] == pytest.approx(0.5)
    assert checks["W2 runs/s >= procrastinate at equal concurrency (4)"]["holds"] is False
    assert checks["W2 runs/s >= django-tasks-db at equal concurrency (4)"]["holds"] is None
    assert checks["W3 median latency <= DBOS's"]["holds"] is True
    absurd = checks["W1 steps/s >= 2x Absurd, one worker process, concurrency 1"]
    assert (absurd["value"], absurd["holds"], absurd["is_target"]) == (1.25, False, True)
    assert checks["W3 median latency <= Absurd's"]["holds"] is None

    document.update(
        summary=summary, targets=report.targets(summary) + report.extra_targets(document)
    )
    text = report.markdown(document)
    assert (
        "| W5: worker RSS independent of the number of suspended runs"
        " | 12 bytes per suspended run | PASS |"
    ) in text
    assert "| W6: not run | not measured | not measured |" in text
    assert "| W2 runs/s >= procrastinate at equal concurrency (4) | 0.90x | FAIL |" in text
    assert "| W1 | 1 | Absurd | one worker process (start_worker), concurrency 1," in text
    assert "W4, Absurd: n/a (no streams)" in text
    assert "W1, procrastinate: n/a (a job queue: no steps)" in text
    assert "error (1 runs)" in text
    assert "`bench/w6.py` does not exist yet" in text


@pytest.fixture
def scratch_dsn() -> Iterator[str]:
    if not ON_POSTGRES:
        pytest.skip("the benchmark systems run on PostgreSQL only")
    params = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD", ""),
    }
    name = sql.Identifier(SCRATCH_DATABASE)
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    auth = params["user"] + (f":{params['password']}" if params["password"] else "")
    yield f"postgresql://{auth}@{params['host']}:{params['port']}/{SCRATCH_DATABASE}"
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@pytest.mark.slow
@pytest.mark.parametrize("system", ["durable", "absurd"])
def test_system_module_prints_its_figures_as_json(scratch_dsn: str, system: str) -> None:
    if system == "absurd":
        pytest.importorskip("absurd_sdk", reason="Absurd is installed by `make bench`")
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.systems.{system}", "W2", "--quick", "--dsn", scratch_dsn],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["runs"] == 100
    assert result["steps"] == 1
    assert result["runs_per_s"] > 0
