"""The HTTP API: starting, reading, messaging, long-polling, streaming, events, permissions."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import AsyncClient
from rest_framework.test import APIClient

import django_durable as durable
from django_durable.models import Event, Message, Run, RunStatus
from django_durable.worker import Worker
from tests.conftest import drain
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/durable"


def make_user(name: str, *perms: str):
    user = get_user_model().objects.create_user(name, password="pw")
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return get_user_model().objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def ada():
    return make_user("ada")


@pytest.fixture
def client(ada) -> APIClient:
    api = APIClient()
    api.force_authenticate(ada)
    return api


def client_for(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def start(api: APIClient, workflow: str = "tests.http_receives", **body):
    return api.post(f"{BASE}/runs/", {"workflow": workflow, **body}, format="json")


# --- access ------------------------------------------------------------------------------


def test_anonymous_requests_are_refused():
    anonymous = APIClient()
    assert anonymous.get(f"{BASE}/runs/").status_code in (401, 403)
    assert start(anonymous).status_code in (401, 403)
    assert anonymous.post(f"{BASE}/events/", {"name": "x"}, format="json").status_code in (401, 403)
    assert not Run.objects.exists()


def test_users_list_their_own_runs_and_staff_with_view_run_see_all(client, ada):
    mine = wf.add.using(owner=ada).start(1, 2)
    theirs = wf.add.using(owner=make_user("bob")).start(1, 2)
    nobody = wf.add.start(1, 2)
    listed = client.get(f"{BASE}/runs/").json()
    assert [run["id"] for run in listed["results"]] == [mine.id]
    staff = client_for(make_user("eve", "django_durable.view_run"))
    everyone = staff.get(f"{BASE}/runs/").json()["results"]
    assert {run["id"] for run in everyone} == {mine.id, theirs.id, nobody.id}


def test_a_run_others_may_not_see_is_not_found(client):
    other = wf.add.using(owner=make_user("bob")).start(1, 2)
    assert client.get(f"{BASE}/runs/{other.id}/").status_code == 404
    assert client.get(f"{BASE}/runs/{uuid.uuid4()}/").status_code == 404
    assert client.get(f"{BASE}/runs/not-a-uuid/").status_code == 404
    response = client.post(f"{BASE}/runs/{other.id}/messages/", {"message": 1}, format="json")
    assert response.status_code == 404
    assert not Message.objects.exists()


# --- starting ----------------------------------------------------------------------------


def test_start_a_workflow_that_allows_http(client, ada):
    response = start(client, args=["first"])
    assert response.status_code == 201, response.json()
    body = response.json()
    run = Run.objects.get(pk=body["id"])
    assert run.owner == ada
    assert body["workflow"] == "tests.http_receives"
    assert body["status"] == "pending"
    assert body["input"] == {"args": ["first"], "kwargs": {}}


def test_workflows_not_declared_for_http_cannot_be_started(client):
    response = start(client, workflow="tests.add", args=[1, 2])
    assert response.status_code == 403
    assert not Run.objects.exists()


def test_idempotency_keys_are_per_user(client):
    first = start(client, idempotency_key="order-1")
    again = start(client, idempotency_key="order-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = start(client_for(make_user("bob")), idempotency_key="order-1")
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"workflow": "nope"}, "unknown_workflow"),
        ({"workflow": "tests.http_receives", "args": ["a\x00b"]}, "invalid_payload"),
    ],
)
def test_bad_start_requests_are_400_with_a_code(client, body, code):
    response = client.post(f"{BASE}/runs/", body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert "tests.add" not in response.json()["detail"]  # no list of workflows for clients
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"workflow": "tests.http_receives", "args": "not a list"}, "args"),
        ({"workflow": "tests.http_receives", "delay": -1}, "delay"),
        ({"workflow": "tests.http_receives", "kwargs": [1]}, "kwargs"),
        ({}, "workflow"),
    ],
)
def test_invalid_start_fields_are_400_naming_the_field(client, body, field):
    response = client.post(f"{BASE}/runs/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not Run.objects.exists()


def test_malformed_and_deeply_nested_json_are_400_not_500(client):
    bad = client.generic("POST", f"{BASE}/runs/", "{not json", content_type="application/json")
    assert bad.status_code == 400
    deep = '{"workflow": "tests.http_receives", "args": [' + "[" * 100_000 + "]" * 100_000 + "]}"
    nested = client.generic("POST", f"{BASE}/runs/", deep, content_type="application/json")
    assert nested.status_code == 400
    assert "nested too deeply" in nested.json()["detail"]
    assert not Run.objects.exists()


def test_an_oversized_body_is_413(client, settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_PAYLOAD_BYTES": 1000}
    body = json.dumps({"workflow": "tests.http_receives", "args": ["x" * 200_000]})
    response = client.generic("POST", f"{BASE}/runs/", body, content_type="application/json")
    assert response.status_code == 413
    small_but_over = {"workflow": "tests.http_receives", "args": ["x" * 5000]}
    assert client.post(f"{BASE}/runs/", small_but_over, format="json").status_code == 413
    assert not Run.objects.exists()


# --- reading -----------------------------------------------------------------------------


def test_a_run_page_shows_progress_values_steps_and_result(client, worker):
    run_id = start(client, args=["x"]).json()["id"]
    worker.run_once()
    waiting = client.get(f"{BASE}/runs/{run_id}/").json()
    assert waiting["status"] == "waiting"
    assert waiting["waiting_for"] == "message on 'approval'"
    assert waiting["progress"]["message"] == "waiting for approval"
    durable.send(run_id, "ok", topic="approval")
    drain(worker)
    page = client.get(f"{BASE}/runs/{run_id}/").json()
    assert page["status"] == "completed"
    assert page["result"] == {"label": "x", "message": "ok"}
    assert page["progress"] == {"done": 2, "total": 2, "percent": 100.0, "message": "done"}
    assert page["values"]["progress"]["message"] == "done"
    assert [s["kind"] for s in page["steps"]][:3] == ["value", "recv", "value"]
    assert page["steps_count"] == len(page["steps"])
    listed = client.get(f"{BASE}/runs/").json()["results"]
    assert listed[0]["progress"]["percent"] == 100.0


def test_tracebacks_only_for_users_with_view_run(client, worker):
    run_id = start(client, workflow="tests.http_fails").json()["id"]
    drain(worker)
    error = client.get(f"{BASE}/runs/{run_id}/").json()["error"]
    assert error["type"] == "ValueError"
    assert "traceback" not in error
    staff = client_for(make_user("eve", "django_durable.view_run"))
    assert "secret internals" in staff.get(f"{BASE}/runs/{run_id}/").json()["error"]["traceback"]


def test_list_filters_and_cursor_pagination(client, ada):
    for _ in range(5):
        wf.add.using(owner=ada).start(1, 1)
    wf.boom.using(owner=ada).start()
    page = client.get(f"{BASE}/runs/?page_size=2&workflow=tests.add").json()
    assert len(page["results"]) == 2
    second = client.get(page["next"]).json()
    assert len(second["results"]) == 2
    assert not {r["id"] for r in page["results"]} & {r["id"] for r in second["results"]}
    assert len(client.get(f"{BASE}/runs/?status=pending,failed").json()["results"]) == 6
    assert client.get(f"{BASE}/runs/?status=completed").json()["results"] == []


# --- messages ----------------------------------------------------------------------------


def test_send_a_message_over_http_wakes_the_run(client, worker):
    run_id = start(client).json()["id"]
    worker.run_once()
    response = client.post(
        f"{BASE}/runs/{run_id}/messages/",
        {"message": {"approved": True}, "topic": "approval", "idempotency_key": "click-1"},
        format="json",
    )
    assert response.status_code == 202
    again = client.post(
        f"{BASE}/runs/{run_id}/messages/",
        {"message": {"approved": True}, "topic": "approval", "idempotency_key": "click-1"},
        format="json",
    )
    assert again.json()["id"] == response.json()["id"]
    assert Run.objects.get(pk=run_id).status == RunStatus.PENDING
    drain(worker)
    assert durable.get_run(run_id).result(timeout=1)["message"] == {"approved": True}


def test_seeing_a_run_is_not_enough_to_message_it():
    owner = make_user("ada")
    run = wf.receives.using(owner=owner).start(1)
    viewer = client_for(make_user("eve", "django_durable.view_run"))
    assert viewer.get(f"{BASE}/runs/{run.id}/").status_code == 200
    denied = viewer.post(f"{BASE}/runs/{run.id}/messages/", {"message": 1}, format="json")
    assert denied.status_code == 403
    operator = client_for(make_user("op", "django_durable.view_run", "django_durable.operate_run"))
    allowed = operator.post(f"{BASE}/runs/{run.id}/messages/", {"message": 1}, format="json")
    assert allowed.status_code == 202


def test_a_bad_message_is_400(client):
    run_id = start(client).json()["id"]
    url = f"{BASE}/runs/{run_id}/messages/"
    assert client.post(url, {}, format="json").status_code == 400
    assert client.post(url, {"message": "x", "topic": "t" * 300}, format="json").status_code == 400
    assert client.post(url, {"message": "\x00"}, format="json").status_code == 400
    assert not Message.objects.exists()


# --- values (long polling) ---------------------------------------------------------------


def test_read_a_value_and_long_poll_for_a_newer_version(client, worker):
    run_id = start(client).json()["id"]
    assert client.get(f"{BASE}/runs/{run_id}/values/progress/").status_code == 404
    worker.run_once()
    first = client.get(f"{BASE}/runs/{run_id}/values/progress/").json()
    assert first["value"]["message"] == "waiting for approval"
    durable.send(run_id, "ok", topic="approval")

    def work() -> None:
        time.sleep(0.2)
        try:
            drain(Worker())
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    try:
        started = time.monotonic()
        url = f"{BASE}/runs/{run_id}/values/progress/?timeout=10&after={first['version']}"
        newer = client.get(url).json()
        waited = time.monotonic() - started
    finally:
        thread.join()
    assert newer["version"] > first["version"]
    assert newer["value"]["done"] >= 1
    assert 0.1 < waited < 10


def test_value_long_poll_times_out_with_the_current_value(client, worker, settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "API_MAX_WAIT": 0.3}
    run_id = start(client).json()["id"]
    worker.run_once()
    current = client.get(f"{BASE}/runs/{run_id}/values/progress/").json()
    started = time.monotonic()
    # A 60 s timeout is capped at API_MAX_WAIT.
    same = client.get(
        f"{BASE}/runs/{run_id}/values/progress/?timeout=60&after={current['version']}"
    )
    assert time.monotonic() - started < 5
    assert same.json()["version"] == current["version"]
    assert client.get(f"{BASE}/runs/{run_id}/values/progress/?timeout=abc").status_code == 400
    assert client.get(f"{BASE}/runs/{run_id}/values/never/?timeout=0.2").status_code == 404


# --- streams -----------------------------------------------------------------------------


def _finished_stream_run(client, worker) -> str:
    run_id = start(client, args=["s"]).json()["id"]
    durable.send(run_id, "ok", topic="approval")
    drain(worker)
    return run_id


def test_stream_items_as_json(client, worker):
    run_id = _finished_stream_run(client, worker)
    page = client.get(f"{BASE}/runs/{run_id}/streams/log/").json()
    assert [item["offset"] for item in page["items"]] == [0, 1, 2]
    assert page["items"][1]["value"] == {"line": 1, "label": "s"}
    assert (page["next_offset"], page["closed"]) == (3, True)
    tail = client.get(f"{BASE}/runs/{run_id}/streams/log/?offset=2").json()
    assert [item["offset"] for item in tail["items"]] == [2]


def test_server_sent_events_resume_from_last_event_id(client, worker):
    run_id = _finished_stream_run(client, worker)
    response = client.get(
        f"{BASE}/runs/{run_id}/streams/log/",
        HTTP_ACCEPT="text/event-stream",
        HTTP_LAST_EVENT_ID="0",
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Content-Encoding"] == "identity"
    body = b"".join(response.streaming_content).decode()
    assert "id: 0\n" not in body  # resumed after the last event the client saw
    assert 'id: 1\ndata: {"line": 1, "label": "s"}\n\n' in body
    assert body.rstrip().endswith("event: close\ndata: {}")


def test_server_sent_events_follow_a_running_stream_under_asgi(ada):
    run = wf.streams.using(owner=ada).start(3, pause=0.1)
    thread = threading.Thread(target=_drain_in_thread)
    thread.start()

    async def read() -> tuple[int, str]:
        client = AsyncClient()
        await client.aforce_login(ada)
        response = await client.get(
            f"{BASE}/runs/{run.id}/streams/out/", headers={"Accept": "text/event-stream"}
        )
        chunks = [chunk async for chunk in response.streaming_content]
        return response.status_code, b"".join(chunks).decode()

    try:
        status_code, body = async_to_sync(read)()
    finally:
        thread.join()
    assert status_code == 200
    assert [line for line in body.splitlines() if line.startswith("id:")] == [
        "id: 0",
        "id: 1",
        "id: 2",
    ]
    assert "event: close" in body


def test_server_sent_events_end_when_the_run_ends_without_closing(client, ada, worker):
    run = wf.streams.using(owner=ada).start(1, close=False)
    drain(worker)
    response = client.get(f"{BASE}/runs/{run.id}/streams/out/", HTTP_ACCEPT="text/event-stream")
    body = b"".join(response.streaming_content).decode()
    assert "id: 0\n" in body
    assert 'event: end\ndata: {"status": "completed"}' in body


# --- events ------------------------------------------------------------------------------


def test_emitting_events_needs_the_add_event_permission(client):
    assert client.post(f"{BASE}/events/", {"name": "x"}, format="json").status_code == 403
    emitter = client_for(make_user("hook", "django_durable.add_event"))
    waiting = wf.waits_event.start("paid:order-9")
    Worker().run_once()
    response = emitter.post(
        f"{BASE}/events/", {"name": "paid:order-9", "data": {"amount": 5}}, format="json"
    )
    assert response.status_code == 202
    assert Event.objects.get(pk=response.json()["id"]).get_data() == {"amount": 5}
    assert waiting.refresh().status == RunStatus.PENDING


def test_a_structured_cloud_event_is_emitted_once(client):
    emitter = client_for(make_user("hook", "django_durable.add_event"))
    cloud_event = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "payment-service",
        "type": "payment.completed",
        "subject": "order-7",
        "datacontenttype": "application/json",
        "data": {"amount": 99.99},
    }
    body = json.dumps(cloud_event)
    first = emitter.generic(
        "POST", f"{BASE}/events/", body, content_type="application/cloudevents+json"
    )
    again = emitter.generic(
        "POST", f"{BASE}/events/", body, content_type="application/cloudevents+json"
    )
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"]
    event = Event.objects.get()
    assert event.name == "payment.completed:order-7"
    assert (event.source, event.type, event.get_data()) == (
        "payment-service",
        "payment.completed",
        {"amount": 99.99},
    )


def test_a_binary_mode_cloud_event(client):
    emitter = client_for(make_user("hook", "django_durable.add_event"))
    response = emitter.post(
        f"{BASE}/events/",
        {"amount": 1},
        format="json",
        HTTP_CE_SPECVERSION="1.0",
        HTTP_CE_ID="evt-2",
        HTTP_CE_SOURCE="shop",
        HTTP_CE_TYPE="order.created",
    )
    assert response.status_code == 202, response.json()
    assert Event.objects.get().name == "order.created"


@pytest.mark.parametrize(
    "cloud_event",
    [
        {"specversion": "0.3", "id": "1", "source": "s", "type": "t"},
        {"specversion": "1.0", "source": "s", "type": "t"},
        {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data_base64": "AA=="},
    ],
)
def test_bad_cloud_events_are_400(cloud_event):
    emitter = client_for(make_user("hook", "django_durable.add_event"))
    response = emitter.generic(
        "POST",
        f"{BASE}/events/",
        json.dumps(cloud_event),
        content_type="application/cloudevents+json",
    )
    assert response.status_code == 400
    assert not Event.objects.exists()


# --- schema ------------------------------------------------------------------------------


def test_the_openapi_schema_describes_the_endpoints(client):
    response = client.get(f"{BASE}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["servers"] == [{"url": "/durable"}]
    for path in (
        "/runs/",
        "/runs/{run_id}/",
        "/runs/{run_id}/messages/",
        "/runs/{run_id}/values/{key}/",
        "/runs/{run_id}/streams/{key}/",
        "/events/",
    ):
        assert path in schema["paths"], path


def _drain_in_thread() -> None:
    try:
        drain(Worker())
    finally:
        connection.close()


# --- review fixes -------------------------------------------------------------------------


def test_a_key_used_by_another_workflow_is_400_invalid_request(client):
    assert start(client, idempotency_key="k").status_code == 201
    other = start(client, workflow="tests.http_fails", idempotency_key="k")
    assert other.status_code == 400
    assert other.json()["code"] == "invalid_request"


def test_anonymous_starts_cannot_use_idempotency_keys(settings):
    settings.DJANGO_DURABLE = {
        **settings.DJANGO_DURABLE,
        "API_ACCESS_POLICY": "tests.testapp.policies.OpenPolicy",
    }
    anonymous = APIClient()
    assert start(anonymous).status_code == 201
    refused = start(anonymous, idempotency_key="shared")
    assert refused.status_code == 400
    assert Run.objects.count() == 1


def test_a_custom_can_view_opens_single_runs(settings):
    settings.DJANGO_DURABLE = {
        **settings.DJANGO_DURABLE,
        "API_ACCESS_POLICY": "tests.testapp.policies.AuditorPolicy",
    }
    run = wf.add.using(owner=make_user("bob")).start(1, 2)
    auditor = client_for(make_user("auditor"))
    assert auditor.get(f"{BASE}/runs/{run.id}/").status_code == 200
    assert auditor.get(f"{BASE}/runs/").json()["results"] == []  # lists use visible_runs


def test_the_value_endpoint_says_whether_the_run_is_still_going(client, worker):
    run_id = start(client).json()["id"]
    worker.run_once()
    waiting = client.get(f"{BASE}/runs/{run_id}/values/progress/").json()
    assert waiting["run_status"] == "waiting"
    durable.send(run_id, "ok", topic="approval")
    drain(worker)
    done = client.get(f"{BASE}/runs/{run_id}/values/progress/").json()
    assert done["run_status"] == "completed"


def test_cloud_event_keys_are_never_cut_and_long_fields_are_refused():
    emitter = client_for(make_user("hook", "django_durable.add_event"))

    def post(**attributes):
        event = {"specversion": "1.0", "source": "s", "type": "t", "id": "1", **attributes}
        return emitter.generic(
            "POST",
            f"{BASE}/events/",
            json.dumps(event),
            content_type="application/cloudevents+json",
        )

    assert post(source="s" * 300).status_code == 400
    first = post(id="x" * 300 + "a")
    second = post(id="x" * 300 + "b")
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]  # not cut into one key
    assert post(id="x" * 300 + "a").json()["id"] == first.json()["id"]


def test_a_binary_cloud_event_without_a_body_has_null_data():
    emitter = client_for(make_user("hook", "django_durable.add_event"))
    response = emitter.post(
        f"{BASE}/events/",
        HTTP_CE_SPECVERSION="1.0",
        HTTP_CE_ID="e",
        HTTP_CE_SOURCE="s",
        HTTP_CE_TYPE="ping",
    )
    assert response.status_code == 202, response.json()
    assert Event.objects.get().get_data() is None
