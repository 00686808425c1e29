"""Schemathesis against the live schema: what ``GET schema/`` says is what the API does.

The schema is read from the API itself, served by Django's WSGI application in this
process, and every operation in it is sent generated requests, valid and invalid (the
coverage phase's boundary values, then the fuzzing phase's examples), twice: as a staff
user with every django_durable permission, and with a per-run access token. Each answer
must be no 5xx, a documented status with a documented content type, and a body (and
headers) that match the schema. The budget is fixed and the generation derandomized, so a
run sends the same requests every time, on SQLite and PostgreSQL alike.

The schema is loaded when the module is collected (``@schema.parametrize()``):
Schemathesis' ``from_fixture`` loader sets ``Item._nodeid``, which pytest 9.2 no longer has.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.wsgi import get_wsgi_application
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import django_durable as durable
from django_durable.testing import run_ready
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Examples per operation in the fuzzing phase (the coverage phase sends a fixed set): the
# whole fuzz, both ways, takes well under a minute per database.
MAX_EXAMPLES = 50
PASSWORD = "fuzz-password"


# Stand-ins for the test's own runs, swapped for their ids before each request: the
# schema is read when the tests are collected, before any run exists.
RUNS = {
    "completed": "00000000-0000-4000-8000-00000000000c",
    "waiting": "00000000-0000-4000-8000-00000000000a",
    "failed": "00000000-0000-4000-8000-00000000000f",
}
# Half the run ids, keys and workflow names come from these lists, so that the fuzz gets
# past 404 and 400 to the answers of real runs.
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 14,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "with-security-parameters": False,
        },
        # Chains of calls (the stateful phase) are left out: the budget goes to single requests.
        "phases": {"stateful": {"enabled": False}},
        "dictionaries": {
            "runs": {"values": sorted(RUNS.values())},
            "keys": {"values": ["progress", "log"]},
            "workflows": {"values": ["tests.http_receives", "tests.http_fails"]},
            "sources": {"values": ["shop"]},
        },
        "parameters": {
            "path.run_id": {"dictionary": "runs", "probability": 0.5},
            "path.key": {"dictionary": "keys", "probability": 0.5},
            "body.workflow": {"dictionary": "workflows", "probability": 0.5},
            "path.source": {"dictionary": "sources", "probability": 0.5},
        },
    }
)
schema = schemathesis.openapi.from_wsgi(
    "/durable/schema/?format=json", get_wsgi_application(), config=CONFIG
)


@pytest.fixture
def staff(settings):
    # HTTP Basic checks the password on every request: a fast hash keeps the fuzz fast.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = get_user_model().objects.create_user("fuzz", password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="django_durable"))
    return user


@pytest.fixture
def runs(staff, settings) -> dict[str, str]:
    """A completed run (values, a closed stream), a waiting one and a failed one, by stand-in."""
    # Long polls and streams of unfinished runs end at once: the fuzz waits for nothing.
    settings.DJANGO_DURABLE = {
        **settings.DJANGO_DURABLE,
        "API_MAX_WAIT": 0.1,
        "API_STREAM_SECONDS": 0.1,
    }
    completed = wf.http_receives.using(owner=staff).start("done")
    waiting = wf.http_receives.using(owner=staff).start("waiting")
    failed = wf.http_fails.using(owner=staff).start()
    run_ready()
    durable.send(completed.id, {"approved": True}, "approval")
    run_ready()
    handles = {"completed": completed, "waiting": waiting, "failed": failed}
    return {RUNS[name]: handle.id for name, handle in handles.items()}


@pytest.fixture
def tokens(runs) -> dict[str, str]:
    """A token with every ability for each run."""
    return {run_id: durable.create_token(run_id) for run_id in runs.values()}


def aimed(run_id: str) -> str:
    """Return one of the stand-ins for a well-formed run id (others stay as they are).

    The coverage phase sends its boundary values (the largest offset, the longest key) with
    one run id: aimed at a real run, they reach the code behind the run's lookup.
    """
    try:
        number = uuid.UUID(run_id).int
    except ValueError:
        return run_id
    return sorted(RUNS.values())[number % len(RUNS)]


def call(case: Any, runs: dict[str, str], authorization: Callable[[str | None], str]) -> None:
    """Send the case as one of ``runs`` would be, and check the answer against the schema.

    ``authorization`` gives the ``Authorization`` header for the run the request is about.
    """
    run_id = case.path_parameters.get("run_id") if case.path_parameters else None
    if run_id is not None and run_id not in runs and case.meta.phase.name == "coverage":
        run_id = aimed(run_id)
    if run_id in runs:
        case.path_parameters["run_id"] = run_id = runs[run_id]
    headers = {"Authorization": authorization(run_id)}
    case.call_and_validate(headers=headers, checks=CHECKS)


# The runs are made once per operation and shared by its examples, on purpose.
shared_runs = hypothesis.settings(
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)


@schema.parametrize()
@shared_runs
def test_as_staff_every_answer_is_what_the_schema_says(case, staff, runs):
    basic = base64.b64encode(f"{staff.username}:{PASSWORD}".encode()).decode()
    call(case, runs, lambda run_id: f"Basic {basic}")


@schema.parametrize()
@shared_runs
def test_with_a_run_token_every_answer_is_what_the_schema_says(case, runs, tokens):
    # The token of the run in the path, or of the completed run for the other requests.
    default = tokens[runs[RUNS["completed"]]]
    call(case, runs, lambda run_id: f"Bearer {tokens.get(run_id or '', default)}")
