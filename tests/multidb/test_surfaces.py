"""The faces on the durable database: the admin (users in "default"), the HTTP API, the CLI,
and a run's owner, a user of the other database."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from rest_framework.test import APIClient

import django_durable as durable
from django_durable.models import Run, Schedule
from django_durable.testing import run_all
from tests.conftest import ROOT
from tests.multidb.conftest import env
from tests.testapp import workflows as wf

CHANGELIST = reverse("admin:django_durable_run_changelist")


@pytest.fixture
def root(client) -> User:
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return html.unescape(response.content.decode())


def test_the_admin_lists_runs_and_shows_one_with_its_owner(client, root):
    owned = wf.add.using(owner=root).start(1, 2)
    failed = wf.boom.start()
    run_all()
    listed = page(client.get(CHANGELIST))
    assert owned.id in listed and failed.id in listed
    shown = page(client.get(reverse("admin:django_durable_run_change", args=[owned.id])))
    assert "tests.add" in shown and "root" in shown  # the owner, read from "default"
    assert owned.id in page(client.get(CHANGELIST, {"q": "root"}))  # by owner's username
    assert page(client.get(reverse("admin:django_durable_dashboard")))
    durable.emit_event("shop/paid", {"order": 1})
    for model in ("event", "message", "schedule", "workerprocess"):
        assert page(client.get(reverse(f"admin:django_durable_{model}_changelist")))


def test_the_admin_cancels_and_deletes_runs_in_the_durable_database(client, root):
    pending = wf.counted.start(1)
    done = wf.add.start(1, 2)
    data = {"action": "cancel_runs", "_selected_action": [pending.id]}
    assert client.post(CHANGELIST, data).status_code == 302
    assert Run.objects.get(pk=pending.id).status == "cancelled"
    run_all()
    delete = {"action": "delete_selected", "_selected_action": [done.id], "post": "yes"}
    assert client.post(CHANGELIST, delete).status_code == 302
    assert not Run.objects.filter(pk=done.id).exists()


def test_the_admin_adds_a_schedule_in_the_durable_database(client, root):
    added = client.post(
        reverse("admin:django_durable_schedule_add"),
        {
            "name": "nightly",
            "workflow_name": "tests.tick",
            "cron": "0 3 * * *",
            "time_zone": "UTC",
            "missed_ticks": "skip",
            "args": "[]",
            "kwargs": "{}",
            "enabled": "on",
        },
    )
    assert added.status_code == 302, page(added)
    assert Schedule.objects.get(name="nightly").next_tick_at is not None


def test_the_http_api_starts_and_lists_runs_owned_by_a_user_of_default(root):
    api = APIClient()
    api.force_authenticate(root)
    started = api.post(
        "/durable/runs/", {"workflow": "tests.http_receives", "args": ["x"]}, format="json"
    )
    assert started.status_code == 201, started.json()
    run_id = started.json()["id"]
    assert Run.objects.get(pk=run_id).owner == root
    listed = api.get("/durable/runs/").json()["results"]
    assert [run["id"] for run in listed] == [run_id]
    message = {"message": "ok", "topic": "approval"}
    sent = api.post(f"/durable/runs/{run_id}/messages/", message, format="json")
    assert sent.status_code in (201, 202), sent.json()
    run_all()
    shown = api.get(f"/durable/runs/{run_id}/").json()
    assert (shown["status"], shown["result"]["message"]) == ("completed", "ok")


def test_deleting_a_user_leaves_their_runs_without_an_owner(client, root):
    ann = User.objects.create_user("ann")
    run = wf.add.using(owner=ann).start(1, 2)
    assert list(ann.durable_runs.all()) == [run.model]
    delete = reverse("admin:auth_user_delete", args=[ann.pk])
    assert "Are you sure" in page(client.get(delete))
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not User.objects.filter(pk=ann.pk).exists()
    assert Run.objects.get(pk=run.id).owner_id is None


def test_manage_py_durable_runs_list_reads_the_durable_database():
    run = wf.add.start(1, 2)
    run_all()
    done = subprocess.run(
        [sys.executable, "-m", "django", "durable", "runs", "list", "--json"],
        env={**os.environ, **env(), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [listed] = json.loads(done.stdout)
    assert (listed["id"], listed["status"]) == (run.id, "completed")
    assert durable.get_run(run.id).result(timeout=1) == 3
