"""Per-run access tokens over HTTP: what a page without a Django login can do with one run."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

import django_durable as durable
from django_durable.api.checks import check_access_policy
from django_durable.models import Message, Run
from django_durable.testing import run_ready
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/durable"


def bearer(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def test_a_token_follows_one_run_from_start_to_result(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "API_STREAM_SECONDS": 5}
    handle = wf.http_receives.start("shop")
    run_ready()  # up to its wait for the approval
    token = handle.create_token()
    api = bearer(token)
    page = api.get(f"{BASE}/runs/{handle.id}/").json()
    assert (page["status"], page["progress"]["message"]) == ("waiting", "waiting for approval")
    assert api.get(f"{BASE}/runs/{handle.id}/values/progress/").json()["value"]["done"] == 0
    body = {"message": "ok", "topic": "approval"}
    sent = api.post(f"{BASE}/runs/{handle.id}/messages/", body, format="json")
    assert sent.status_code == 202
    assert Message.objects.get(pk=sent.json()["id"]).run_id == handle.model.pk
    run_ready()
    # EventSource sends the token in the query string: the stream's items, then its end.
    sse = APIClient().get(
        f"{BASE}/runs/{handle.id}/streams/log/?token={token}", HTTP_ACCEPT="text/event-stream"
    )
    body = b"".join(sse.streaming_content).decode()
    assert sse.status_code == 200
    assert body.count("id: ") == 3 and body.endswith("event: close\ndata: {}\n\n")
    assert api.get(f"{BASE}/runs/{handle.id}/").json()["status"] == "completed"


def test_a_token_sees_no_traceback_and_no_children_unless_it_says_so():
    parent = wf.parent_fanout.start(2)
    run_ready()
    own = bearer(parent.create_token(abilities=["read"]))
    family = bearer(parent.create_token(abilities=["read"], include_children=True))
    assert own.get(f"{BASE}/runs/{parent.id}/").json()["children"] == []
    children = family.get(f"{BASE}/runs/{parent.id}/").json()["children"]
    assert len(children) == 2
    child = children[0]["id"]
    assert own.get(f"{BASE}/runs/{child}/").status_code == 404
    assert family.get(f"{BASE}/runs/{child}/").status_code == 200
    failed = wf.http_fails.start()
    run_ready()
    error = bearer(failed.create_token(abilities=["read"])).get(f"{BASE}/runs/{failed.id}/")
    assert error.json()["error"]["message"] == "secret internals"
    assert "traceback" not in error.json()["error"]


def test_a_query_string_token_is_refused_where_a_header_is_possible():
    handle = wf.add.start(1, 2)
    token = handle.create_token()
    refused = APIClient().get(f"{BASE}/runs/{handle.id}/?token={token}")
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_not_accepted"
    assert "Bearer header" in refused.json()["detail"]


def test_a_bearer_that_is_not_ours_is_left_to_the_project():
    handle = wf.add.start(1, 2)
    jwt_like = bearer("eyJhbGciOiJIUzI1NiJ9.e30.sig").get(f"{BASE}/runs/{handle.id}/")
    assert jwt_like.status_code == 403
    assert jwt_like.json()["code"] == "not_authenticated"


def test_a_token_does_not_lend_its_run_to_a_logged_in_user_of_another():
    owner = get_user_model().objects.create_user("owner")
    mine = wf.add.using(owner=owner).start(1, 2)
    theirs = wf.add.start(3, 4)
    api = bearer(theirs.create_token())
    api.force_authenticate(owner)
    # The token decides: it reaches its run, and not the user's own.
    assert api.get(f"{BASE}/runs/{theirs.id}/").status_code == 200
    assert api.get(f"{BASE}/runs/{mine.id}/").status_code == 404


def test_a_policy_receives_the_request_to_plug_in_its_own_scheme(settings):
    settings.DJANGO_DURABLE = {
        **settings.DJANGO_DURABLE,
        "API_ACCESS_POLICY": "tests.testapp.policies.ApiKeyPolicy",
    }
    handle = wf.add.start(1, 2)
    keyed = APIClient(HTTP_X_API_KEY="sesame")
    assert keyed.get(f"{BASE}/runs/{handle.id}/").status_code == 200
    assert [run["id"] for run in keyed.get(f"{BASE}/runs/").json()["results"]] == [handle.id]
    assert APIClient(HTTP_X_API_KEY="wrong").get(f"{BASE}/runs/").status_code == 403


def test_a_policy_whose_hooks_take_no_request_is_a_system_check_error(settings):
    assert check_access_policy() == []
    settings.DJANGO_DURABLE = {
        **settings.DJANGO_DURABLE,
        "API_ACCESS_POLICY": "tests.testapp.policies.OldStylePolicy",
    }
    [error] = check_access_policy()
    assert error.id == "django_durable.E003"
    assert "OldStylePolicy.can_view()" in error.msg and "request=" in error.msg


def test_revoking_ends_a_page_that_follows_the_run():
    handle = wf.add.start(1, 2)
    api = bearer(handle.create_token())
    assert api.get(f"{BASE}/runs/{handle.id}/").status_code == 200
    durable.revoke_tokens(handle.id)
    refused = api.get(f"{BASE}/runs/{handle.id}/")
    assert (refused.status_code, refused.json()["code"]) == (401, "token_revoked")
    assert Run.objects.filter(pk=handle.id).exists()
