"""What the benchmarks ran on: CPU, memory, PostgreSQL and its settings, package versions."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "django-durable-workflows",  # the distribution; django_durable in Python
    "Django",
    "psycopg",
    "dbos",
    "absurd-sdk",
    "absurdctl",
    "SQLAlchemy",
    "procrastinate",
    "django-tasks",
    "django-tasks-db",
)
PG_SETTINGS = (
    "synchronous_commit",
    "fsync",
    "wal_sync_method",
    "commit_delay",
    "shared_buffers",
    "max_connections",
    "wal_level",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True)
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def describe(dsn: str) -> dict:
    """Describe the machine, the database server and the packages."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in PG_SETTINGS}
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": version,
        "postgresql_settings": settings,
        "packages": {name: _version(name) for name in PACKAGES},
        "git_commit": _git_commit(),
        "load_average_at_start": os.getloadavg(),
    }
