"""The tests of tests/multidb/, in a pytest session of their own with two databases.

pytest-django reads DJANGO_SETTINGS_MODULE once per session, and tests/multidb/ needs
``tests.settings_two_databases`` (the durable tables in a second database, "workflows").
This test runs that folder in a child pytest session with those settings, on the database
of this session (two PostgreSQL databases, or two SQLite files), and fails with its output
when any of its tests fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ON_POSTGRES, ROOT

pytestmark = pytest.mark.slow

# Variables of this session that must not leak into the child's.
OURS = ("PYTEST_", "DURABLE_TEST_DB_NAME", "DURABLE_TEST_WF_DB_NAME", "DJANGO_SETTINGS_MODULE")


def test_the_two_database_suite_passes(tmp_path: Path):
    report = tmp_path / "multidb.xml"
    env = {key: value for key, value in os.environ.items() if not key.startswith(OURS)}
    env.update(DJANGO_SETTINGS_MODULE="tests.settings_two_databases", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-q",
            "-rs",
            f"--junitxml={report}",
            "tests/multidb",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout[-20_000:] + done.stderr[-5_000:]
    assert done.returncode == 0, output
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None, output
    counts = {name: int(suite.get(name, "0")) for name in ("tests", "failures", "errors")}
    skipped = int(suite.get("skipped", "0"))
    print(f"\n[two databases] {counts['tests']} tests, {skipped} skipped")
    assert counts["tests"] >= 18 and counts["failures"] == counts["errors"] == 0, output
    # Only LISTEN/NOTIFY is skipped, and only on SQLite.
    assert skipped == (0 if ON_POSTGRES else 1), output
