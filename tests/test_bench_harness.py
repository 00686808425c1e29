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


def _scaling_samples() -> list[dict]:
    """Three repetitions of L0 (4 clients), W1 and W2 with 1, 2 and 4 worker processes."""
    samples = []
    # (L0 commits/s, W1 steps/s per number of processes, W2 runs/s per number of processes)
    reps = [
        (6000, {1: 1000, 2: 1500, 4: 2900}, {1: 400, 2: 700, 4: 800}),
        (5000, {1: 1200, 2: 1600, 4: 3000}, {1: 500, 2: 600, 4: 900}),
        (7000, {1: 1100, 2: 1700, 4: 3100}, {1: 450, 2: 650, 4: 850}),
    ]
    for rep, (l0, w1, w2) in enumerate(reps):
        samples.append(_sample("L0", 4, "postgres", rep, commits_per_s=l0))
        for processes, key in {1: "durable", 2: "durable-p2", 4: "durable-p4"}.items():
            steps = w1[processes]
            samples.append(_sample("W1", 4, key, rep, steps_per_s=steps, runs_per_s=steps / 10))
            samples.append(_sample("W2", 4, key, rep, runs_per_s=w2[processes]))
    return samples


def test_scaling_ratios_targets_and_section(tmp_path) -> None:
    samples = _scaling_samples()
    document = _document(samples)
    summary = report.summarise(samples)
    figures = report.scaling(summary)
    assert figures["l0"] == 6000
    rows = {row["processes"]: row for row in figures["rows"]}
    assert sorted(rows) == [1, 2, 4]
    assert rows[1]["W1"] == {"value": 1100, "vs_one": 1.0, "vs_l0": pytest.approx(1100 / 6000)}
    assert rows[2]["W2"]["vs_one"] == pytest.approx(650 / 450)
    assert rows[4]["W1"]["vs_l0"] == pytest.approx(3000 / 6000)
    assert rows[4]["W2"]["vs_one"] == pytest.approx(850 / 450)

    checks = {check["target"]: check for check in report.targets(summary)}
    two = checks["W2 with 2 processes >= 1.5x one process (4 runs at once in all)"]
    assert (two["value"], two["holds"], two["is_target"]) == (pytest.approx(650 / 450), False, True)
    four = checks["W1 with 4 processes >= 50% of L0 (4 clients)"]
    assert (four["value"], four["holds"], four["is_target"]) == (0.5, True, True)

    document.update(
        summary=summary,
        scaling=figures,
        targets=report.targets(summary) + report.extra_targets(document),
    )
    text = report.markdown(document)
    section = text[text.index("### Scaling") : text.index("### Targets")]
    assert "in the same run: 6,000 commits/s." in section
    assert "| 1 | 4 | 1,100 | 1.00\u00d7 | 18% | 450 | 1.00\u00d7 | 8% |" in section
    assert "| 2 | 2 | 1,600 | 1.45\u00d7 | 27% | 650 | 1.44\u00d7 | 11% |" in section
    assert "| 4 | 1 | 3,000 | 2.73\u00d7 | 50% | 850 | 1.89\u00d7 | 14% |" in section
    assert (
        "| W2 with 2 processes >= 1.5x one process (4 runs at once in all)"
        " | 1.44x (650 vs 450 runs/s) | FAIL |"
    ) in text
    assert (
        "| W1 with 4 processes >= 50% of L0 (4 clients)"
        " | 50% (3,000 steps/s of 6,000 commits/s) | PASS |"
    ) in text
    # The processes variants are rows of the main table too, compared in the section only.
    assert "| W2 | 4 | django-durable, 2 processes | run_workflow_worker --processes 2" in text
    assert "650 runs/s | 600\u2013700 |  |" in text

    pytest.importorskip("matplotlib", reason="installed by `make bench`")
    report.plot_scaling(document, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").read_bytes().startswith(b"\x89PNG")


def test_scaling_not_measured() -> None:
    samples = [_sample("W1", 4, "durable", 0, steps_per_s=1000, runs_per_s=100)]
    summary = report.summarise(samples)
    figures = report.scaling(summary)
    assert figures["l0"] is None
    assert [row["processes"] for row in figures["rows"]] == [1]
    assert figures["rows"][0]["W2"] == {"value": None, "vs_one": None, "vs_l0": None}
    checks = {check["target"]: check for check in report.targets(summary)}
    assert checks["W1 with 4 processes >= 50% of L0 (4 clients)"]["holds"] is None
    document = _document(samples)
    document.update(summary=summary, targets=report.targets(summary))
    text = report.markdown(document)
    assert "in the same run: not measured." in text
    assert "| 1 | 4 | 1,000 | 1.00\u00d7 |  | not measured |  |  |" in text
    document.update(summary=report.summarise([]))
    assert "Not measured in this run (`--systems postgres,durable,durable-p2,durable-p4`)." in (
        report.markdown(document)
    )


def test_processes_variants_split_the_concurrency() -> None:
    from bench.systems import durable

    assert [durable.processes_of(v) for v in durable.VARIANTS] == [1, 1, 1, 2, 4]
    assert [durable.per_process(4, p) for p in (1, 2, 4)] == [4, 2, 1]
    with pytest.raises(SystemExit, match="does not split over 3 processes"):
        durable.per_process(4, 3)


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
@pytest.mark.parametrize(
    ("system", "variant"),
    [("durable", "default"), ("durable", "processes-2"), ("durable", "hot-key"), ("absurd", "")],
)
def test_system_module_prints_its_figures_as_json(
    scratch_dsn: str, system: str, variant: str
) -> None:
    if system == "absurd":
        pytest.importorskip("absurd_sdk", reason="Absurd is installed by `make bench`")
    chosen = ["--variant", variant] if variant else []
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            f"bench.systems.{system}",
            "W2",
            "--quick",
            "--dsn",
            scratch_dsn,
            *chosen,
        ],
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
    if system == "durable":
        # The workers that ran them: 2 processes of 2 runs at once, or 1 of 4 (the total).
        with psycopg.connect(scratch_dsn) as conn:
            workers = conn.execute("SELECT concurrency FROM durable_worker").fetchall()
        assert workers == ([(2,), (2,)] if variant == "processes-2" else [(4,)])
    if variant == "hot-key":  # its backlog stayed queued behind its held slot
        with psycopg.connect(scratch_dsn) as conn:
            [(queued,)] = conn.execute(
                "SELECT count(*) FROM durable_run WHERE workflow_name = 'bench.one_step_keyed' "
                "AND status = 'pending'"
            ).fetchall()
        assert queued == 999
