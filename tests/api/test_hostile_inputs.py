"""Whatever is sent, the API answers a 4xx with a JSON error body, never a 500, and a
refused request stores nothing."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from django_durable.models import Event, Message, Run, RunValue, StreamItem
from django_durable.testing import run_ready
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/durable"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def staff():
    user = get_user_model().objects.create_user("root", is_staff=True)
    for codename in ("view_run", "operate_run", "add_event"):
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_durable", codename=codename)
        )
    api = APIClient()
    api.force_authenticate(get_user_model().objects.get(pk=user.pk))
    return api


@pytest.fixture
def run(staff):
    handle = wf.http_receives.start("x")
    run_ready()
    return handle


def counts():
    return (Run.objects.count(), Message.objects.count(), Event.objects.count())


def refused(response, status: int | tuple[int, ...] = 400) -> dict:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body.get("detail") or isinstance(body, dict)
    return body


# --- bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 500, 989])
def test_json_nested_past_the_limit_is_refused_before_anything_is_stored(staff, run, depth):
    before = counts()
    raw = f'{{"workflow": "tests.http_receives", "args": [{nested(depth)}]}}'
    answer = staff.post(f"{BASE}/runs/", raw, content_type="application/json")
    assert "nested" in refused(answer)["detail"]
    message = f'{{"message": {nested(depth)}, "topic": "approval"}}'
    answer = staff.post(f"{BASE}/runs/{run.id}/messages/", message, content_type="application/json")
    refused(answer)
    event = f'{{"name": "deep", "data": {nested(depth)}}}'
    refused(staff.post(f"{BASE}/events/", event, content_type="application/json"))
    assert counts() == before


def test_json_nested_to_the_limit_is_accepted(staff):
    raw = f'{{"workflow": "tests.http_receives", "args": [{nested(62)}]}}'
    answer = staff.post(f"{BASE}/runs/", raw, content_type="application/json")
    assert answer.status_code == 201, answer.content


@pytest.mark.parametrize(
    "field", ["args", "kwargs", "message", "event", "topic", "name", "idempotency_key"]
)
def test_a_lone_surrogate_is_a_400_not_a_database_error(staff, run, field):
    lone = '"\\ud800"'
    before = counts()
    if field in ("args", "kwargs"):
        value = f"[{lone}]" if field == "args" else f'{{"k": {lone}}}'
        raw = f'{{"workflow": "tests.http_receives", "{field}": {value}}}'
        answer = staff.post(f"{BASE}/runs/", raw, content_type="application/json")
    elif field in ("message", "topic"):
        body = {"message": lone, "topic": "approval"}
        raw = json.dumps(body).replace(json.dumps(lone), lone)
        if field == "topic":
            raw = f'{{"message": 1, "topic": {lone}}}'
        answer = staff.post(f"{BASE}/runs/{run.id}/messages/", raw, content_type="application/json")
    elif field == "idempotency_key":
        raw = f'{{"name": "e", "idempotency_key": {lone}}}'
        answer = staff.post(f"{BASE}/events/", raw, content_type="application/json")
    else:
        raw = f'{{"name": {lone}}}' if field == "name" else f'{{"name": "e", "data": {lone}}}'
        answer = staff.post(f"{BASE}/events/", raw, content_type="application/json")
    refused(answer)
    assert counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"workflow": "tests.http_receives", "delay": True}, "delay"),
        ({"workflow": "tests.http_receives", "delay": "5"}, "delay"),
        ({"workflow": 5}, "workflow"),
        ({"workflow": "tests.http_receives", "idempotency_key": 7}, "idempotency_key"),
    ],
)
def test_wrong_types_are_errors_not_coercions(staff, body, field):
    answer = staff.post(f"{BASE}/runs/", body, format="json")
    assert field in refused(answer)
    assert not Run.objects.exists()


def test_a_message_topic_must_be_a_string(staff, run):
    answer = staff.post(
        f"{BASE}/runs/{run.id}/messages/", {"message": 1, "topic": 5}, format="json"
    )
    assert "topic" in refused(answer)
    assert not Message.objects.exists()


# --- query strings and paths -------------------------------------------------------------


@pytest.mark.parametrize("param", ["status", "workflow", "queue", "parent"])
def test_nul_in_a_list_filter_is_a_400(staff, run, param):
    refused(staff.get(f"{BASE}/runs/", {param: "a\x00b"}))


@pytest.mark.parametrize("where", ["values", "streams"])
def test_nul_or_a_surrogate_in_a_key_in_the_path_is_a_400(staff, run, where):
    refused(staff.get(f"{BASE}/runs/{run.id}/{where}/a%00b/"))
    # Not UTF-8: Django decodes the path with a replacement character, a key like any other.
    odd = staff.get(f"{BASE}/runs/{run.id}/{where}/a%ED%A0%80b/")
    assert odd.status_code in (200, 404) and odd["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("value", ["²", "٣", "1" * 5000, "99999999999999999999999", "-1", "1e3"])
@pytest.mark.parametrize("param", ["after", "offset", "Last-Event-ID"])
def test_odd_numbers_are_a_400(staff, run, value, param):
    if param == "after":
        answer = staff.get(f"{BASE}/runs/{run.id}/values/progress/", {"after": value})
    elif param == "offset":
        answer = staff.get(f"{BASE}/runs/{run.id}/streams/log/", {"offset": value})
    else:
        answer = staff.get(
            f"{BASE}/runs/{run.id}/streams/log/",
            HTTP_ACCEPT="text/event-stream",
            HTTP_LAST_EVENT_ID=value,
        )
    refused(answer)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "cD0yMDI2LTAxLTAx",  # p=2026-01-01 (no time zone, no id)
        "cD1ub3QtYS1kYXRl",  # p=not-a-date
        "cj0xJnA9JTAw",  # r=1&p=%00
    ],
)
def test_a_forged_cursor_is_a_4xx(staff, run, cursor):
    refused(staff.get(f"{BASE}/runs/", {"cursor": cursor}), (400, 404))


def test_a_cursor_past_the_end_is_an_empty_page():
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user("u"))
    huge = "bz05OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ=="  # o=a huge offset: DRF caps it
    answer = api.get(f"{BASE}/runs/", {"cursor": huge})
    assert answer.status_code == 200 and answer.json()["results"] == []


@pytest.mark.parametrize("run_id", ["nope", "1234", "01a1%00", "../../etc"])
def test_a_run_id_that_is_not_a_uuid_is_the_json_404(staff, run_id):
    for path in ("", "messages/", "values/k/", "streams/k/", "cancel/", "retry/"):
        method = staff.post if path in ("messages/", "cancel/", "retry/") else staff.get
        answer = method(f"{BASE}/runs/{run_id}/{path}")
        assert refused(answer, 404)["code"] == "run_not_found"


# --- CloudEvents and events --------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("subject", 5), ("subject", ["a"]), ("subject", {"a": 1}), ("subject", "a\x00")],
)
def test_a_cloud_event_attribute_of_the_wrong_kind_is_a_400(staff, attribute, value):
    event = {"specversion": "1.0", "id": "1", "source": "s", "type": "t", attribute: value}
    raw = json.dumps(event)
    answer = staff.post(f"{BASE}/events/", raw, content_type="application/cloudevents+json")
    refused(answer)
    assert not Event.objects.exists()


@pytest.mark.parametrize("attribute", ["id", "type", "source"])
def test_nul_in_a_cloud_event_attribute_is_a_400(staff, attribute):
    event = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}
    event[attribute] = "a\x00b"
    answer = staff.post(
        f"{BASE}/events/", json.dumps(event), content_type="application/cloudevents+json"
    )
    refused(answer)
    headers = {f"HTTP_CE_{k.upper()}": v for k, v in {**event, "specversion": "1.0"}.items()}
    refused(staff.post(f"{BASE}/events/", "{}", content_type="application/json", **headers))
    assert not Event.objects.exists()


def test_the_permission_check_comes_before_cloud_event_validation():
    user = get_user_model().objects.create_user("plain")
    api = APIClient()
    api.force_authenticate(user)
    broken = {"specversion": "0.3", "subject": 5}
    answer = api.post(
        f"{BASE}/events/", json.dumps(broken), content_type="application/cloudevents+json"
    )
    assert refused(answer, 403)["code"] == "permission_denied"


def test_an_unknown_and_a_private_workflow_answer_the_same(staff):
    unknown = staff.post(f"{BASE}/runs/", {"workflow": "no.such.workflow"}, format="json")
    private = staff.post(f"{BASE}/runs/", {"workflow": "tests.add"}, format="json")
    assert unknown.status_code == private.status_code == 403
    # The same words, but for the name each asked for.
    said = unknown.json()["detail"].replace("no.such.workflow", "tests.add")
    assert {**unknown.json(), "detail": said} == private.json()
    assert not Run.objects.exists()


# --- what was stored before the limit ------------------------------------------------------


def test_a_value_nested_deeper_than_any_page_can_show_does_not_break_the_pages(staff, client):
    handle = wf.add.start(1, 2)
    deep = json.loads(nested(900))
    RunValue.objects.create(run_id=handle.id, key="deep", value=deep, position=0)
    StreamItem.objects.create(run_id=handle.id, key="deep", offset=0, value=deep, position=0)
    assert staff.get(f"{BASE}/runs/{handle.id}/").status_code == 200
    refused(staff.get(f"{BASE}/runs/{handle.id}/values/deep/"), 400)
    assert staff.get(f"{BASE}/runs/{handle.id}/streams/deep/").status_code in (200, 400)
    admin = get_user_model().objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(admin)
    assert client.get(f"/admin/django_durable/run/{handle.id}/change/").status_code == 200
