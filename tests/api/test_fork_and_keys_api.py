"""``POST runs/{id}/fork/``, and runs named by the caller's own idempotency key
(``runs/-/...?key=K``, ``GET runs/?key=K``)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

import django_durable as durable
from django_durable.models import Run, RunStatus, Step
from django_durable.testing import run_until_finished
from tests.testapp import fork_workflows as fw
from tests.testapp import workflows as wf

from .test_api import BASE, client_for, make_user, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def forker():
    """A support user: sees every run, may fork them."""
    return make_user("fern", "django_durable.view_run", "django_durable.fork_run")


@pytest.fixture
def failed_run(forker) -> durable.RunHandle:
    fw.BUG["on"] = True
    try:
        handle = fw.fork_orders.using(owner=forker).start("o-1")
        run_until_finished(handle)
    finally:
        fw.BUG["on"] = False
    assert handle.status == RunStatus.FAILED
    return handle


def fork(api: APIClient, run_id: str, body: object, query: str = ""):
    return api.post(f"{BASE}/runs/{run_id}/fork/{query}", body, format="json")


# --- forking ------------------------------------------------------------------------------


def test_a_fork_is_201_with_the_new_run_and_its_origin(forker, failed_run):
    api = client_for(forker)
    position = failed_run.error["position"]
    response = fork(api, failed_run.id, {"from_step": position})
    assert response.status_code == 201, response.json()
    page = response.json()
    assert page["forked_from"] == failed_run.id and page["status"] == "pending"
    assert page["steps_count"] == position
    assert page["values"]["progress"]["done"] == 4  # the copied progress
    run_until_finished(page["id"])
    detail = api.get(f"{BASE}/runs/{page['id']}/").json()
    assert detail["status"] == "completed" and detail["forked_from"] == failed_run.id
    assert api.get(f"{BASE}/runs/{failed_run.id}/").json()["forked_from"] is None
    listed = api.get(f"{BASE}/runs/", {"forked_from": failed_run.id}).json()["results"]
    assert [run["id"] for run in listed] == [page["id"]]
    assert api.get(f"{BASE}/runs/", {"forked_from": "nope"}).status_code == 400


def test_the_same_idempotency_key_answers_200_with_the_same_fork(forker, failed_run):
    api = client_for(forker)
    first = fork(api, failed_run.id, {"from_step": 4, "idempotency_key": "fix-1"})
    again = fork(api, failed_run.id, {"from_step": 4, "idempotency_key": "fix-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Run.objects.get(pk=first.json()["id"]).idempotency_key == f"api:{forker.pk}:fix-1"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "required"),
        ({"from_step": "4"}, "valid integer"),
        ({"from_step": 1.5}, "valid integer"),
        ({"from_step": True}, "valid integer"),
        ({"from_step": None}, "null"),
        ({"from_step": -1}, "greater than or equal to 0"),
        ({"from_step": 2**40}, "less than or equal to"),
        ({"from_step": 99}, "recorded 13 operations"),
    ],
)
def test_a_bad_from_step_is_400_invalid_from_step(forker, failed_run, body, words):
    response = fork(client_for(forker), failed_run.id, body)
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid_from_step"
    assert words in response.json()["detail"]
    assert Run.objects.count() == 1


def test_other_bad_requests_are_400_and_nothing_is_made(forker, failed_run):
    api = client_for(forker)
    bad_key = fork(api, failed_run.id, {"from_step": 1, "idempotency_key": 5})
    assert bad_key.status_code == 400 and list(bad_key.json()) == ["idempotency_key"]
    not_json = api.generic(
        "POST", f"{BASE}/runs/{failed_run.id}/fork/", "{nope", content_type="application/json"
    )
    assert not_json.status_code == 400
    assert Run.objects.count() == 1


def test_a_run_that_has_not_finished_is_409_not_forkable(forker):
    handle = wf.add.using(owner=forker).start(1, 2)
    response = fork(client_for(forker), handle.id, {"from_step": 0})
    assert response.status_code == 409
    assert response.json()["code"] == "not_forkable"
    assert "only a completed, failed or cancelled run" in response.json()["detail"]


def test_forking_needs_fork_run_even_for_the_owner_and_says_so(failed_run):
    owner_without = make_user("olive")
    Run.objects.filter(pk=failed_run.id).update(owner=owner_without)
    response = fork(client_for(owner_without), failed_run.id, {"from_step": 0})
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "django_durable.fork_run" in response.json()["detail"]
    assert Run.objects.count() == 1


def test_an_unknown_or_invisible_run_is_404(forker, failed_run):
    api = client_for(forker)
    assert fork(api, "00000000-0000-0000-0000-000000000000", {"from_step": 0}).status_code == 404
    assert fork(api, "nope", {"from_step": 0}).status_code == 404
    stranger = client_for(make_user("sam", "django_durable.fork_run"))  # cannot see it
    assert fork(stranger, failed_run.id, {"from_step": 0}).status_code == 404


def test_a_run_access_token_cannot_fork(failed_run):
    token = durable.create_token(failed_run.id)
    api = APIClient()
    response = api.post(
        f"{BASE}/runs/{failed_run.id}/fork/",
        {"from_step": 0},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 401 and response.json()["code"] == "token_not_accepted"


# --- runs named by the caller's own key ---------------------------------------------------


def test_every_run_endpoint_takes_dash_and_the_callers_own_key():
    ada = make_user("ada")
    api = client_for(ada)
    started = start(api, idempotency_key="order-42").json()
    query = "?key=order-42"
    page = api.get(f"{BASE}/runs/-/{query}")
    assert page.status_code == 200 and page.json()["id"] == started["id"]
    sent = api.post(f"{BASE}/runs/-/messages/{query}", {"message": "hi"}, format="json")
    assert sent.status_code == 202
    assert api.get(f"{BASE}/runs/-/streams/log/{query}").status_code == 200
    assert api.get(f"{BASE}/runs/-/values/nothing/{query}").status_code == 404  # no such value
    listed = api.get(f"{BASE}/runs/", {"key": "order-42"}).json()["results"]
    assert [run["id"] for run in listed] == [started["id"]]
    cancelled = api.post(f"{BASE}/runs/-/cancel/{query}", {}, format="json")
    assert cancelled.status_code == 202 and cancelled.json()["id"] == started["id"]
    # The same key, from another user, is another user's: it does not reach ada's run.
    bob = client_for(make_user("bob"))
    assert bob.get(f"{BASE}/runs/-/{query}").status_code == 404
    assert bob.get(f"{BASE}/runs/", {"key": "order-42"}).json()["results"] == []


def test_fork_by_key(forker):
    api = client_for(forker)
    started = start(api, workflow="tests.http_fails", idempotency_key="fails").json()
    run_until_finished(started["id"])
    response = api.post(f"{BASE}/runs/-/fork/?key=fails", {"from_step": 0}, format="json")
    assert response.status_code == 201 and response.json()["forked_from"] == started["id"]


def test_a_key_elsewhere_than_the_callers_own_is_404_and_a_missing_one_400():
    ada = make_user("ada")
    api = client_for(ada)
    wf.add.using(idempotency_key="order-9", owner=ada).start(1, 1)  # a key set in Python
    assert api.get(f"{BASE}/runs/-/?key=order-9").status_code == 404  # not an HTTP key of hers
    missing = api.get(f"{BASE}/runs/-/")
    assert missing.status_code == 400 and "?key=" in missing.json()["detail"]
    assert api.get(f"{BASE}/runs/-/?key=a%00b").status_code == 400
    # With a run access token, the run is named by its id.
    handle = wf.add.start(1, 1)
    token = durable.create_token(handle.id)
    tokened = APIClient().get(f"{BASE}/runs/-/?key=x", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert tokened.status_code == 400 and "token" in tokened.json()["detail"]
    assert Step.objects.count() == 0
