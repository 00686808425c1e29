"""``manage.py demo``: naming the scenarios, running one, refusing unknown names."""

from __future__ import annotations

import pytest

from tests.examples.conftest import demo, passed
from tests.test_example_project import manage

pytestmark = pytest.mark.slow


def test_list_names_every_scenario_with_its_seed(demo_env):
    listed = manage(demo_env, "demo", "--list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any("worker-killed" in line and "django-durable's own" in line for line in lines)
    assert [line.split(".")[0].strip() for line in lines] == [
        str(n) for n in range(1, len(lines) + 1)
    ]


def test_an_unknown_name_is_refused_with_the_known_ones(demo_env):
    ran = manage(demo_env, "demo", "no-such-scenario")
    assert ran.returncode == 1
    assert "No scenario named 'no-such-scenario'. Known: " in ran.stderr
    assert "worker-killed" in ran.stderr


def test_one_scenario_runs_by_its_name(demo_env, tmp_path):
    out = passed(demo(demo_env, "worker-killed", log_dir=tmp_path), "worker-killed")
    assert "1 of 1 scenarios as their seeds show" in out
    assert "0 atomic writes duplicated" in out
