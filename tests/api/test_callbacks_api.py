"""Settling callbacks over HTTP: ``POST callbacks/<token>/`` and ``callbacks/<token>/fail/``."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.cache import cache
from django.test import Client

import django_durable as durable
from django_durable.core.signing import callback_token
from django_durable.models import Callback, Run, RunStatus
from django_durable.testing import run_all
from tests.testapp import waits_workflows as ww

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _throttle_history():
    cache.clear()  # DRF keeps request times in the default cache
    yield
    cache.clear()


def post(url: str, body: bytes | str = b"", content_type: str = "application/json"):
    # No login, and CSRF checked as in production: the signature is the only credential.
    return Client(enforce_csrf_checks=True).post(url, body, content_type=content_type)


def waiting(worker) -> tuple[durable.RunHandle, str, str]:
    """Start a run that waits on a callback; return it, the callback's id and its URL."""
    handle = ww.callback.start()
    worker.run_once()
    made = durable.get_value(handle.id, "callback")
    return handle, made["id"], made["url"]


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert response.json()["detail"]


def test_the_url_completes_the_callback_without_a_login(worker):
    handle, callback_id, url = waiting(worker)
    assert url == f"/durable/callbacks/{callback_token(callback_id)}/"
    response = post(url, json.dumps({"approved": True, "by": "ada"}))
    assert response.status_code == 200, response.content
    assert response.json() == {"id": callback_id, "status": "completed"}
    assert Run.objects.get(pk=handle.id).status == RunStatus.PENDING
    run_all()
    assert handle.result(timeout=1)["value"] == {"approved": True, "by": "ada"}


def test_a_second_completion_is_a_409(worker):
    _handle, callback_id, url = waiting(worker)
    assert post(url, "1").status_code == 200
    again = post(url, "2")
    refused(again, 409, "callback_closed")
    assert "was completed before" in again.json()["detail"]
    refused(post(url + "fail/", json.dumps({"error": "x"})), 409, "callback_closed")
    assert Callback.objects.get(pk=callback_id).get_value() == 1


def test_an_empty_body_completes_with_null(worker):
    handle, _, url = waiting(worker)
    assert post(url).status_code == 200
    run_all()
    assert handle.result(timeout=1)["value"] is None


def test_the_fail_url_fails_it_with_an_error_and_details(worker):
    handle, callback_id, url = waiting(worker)
    body = {"error": "card declined", "details": {"code": 51}}
    response = post(url + "fail/", json.dumps(body))
    assert response.json() == {"id": callback_id, "status": "failed"}
    run_all()
    assert handle.result(timeout=1)["details"] == {"code": 51}


@pytest.mark.parametrize(
    "token",
    [
        "tampered",
        "not-a-token",
        "0190a000-0000-7000-8000-000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x" * 300,
    ],
)
def test_a_bad_signature_is_a_403_and_settles_nothing(worker, token):
    _, callback_id, _url = waiting(worker)
    if token == "tampered":  # the right id, a signature one character off
        good = callback_token(callback_id)
        token = good[:-1] + ("A" if good[-1] != "A" else "B")
    response = post(f"/durable/callbacks/{token}/", "1")
    refused(response, 403, "callback_signature_invalid")
    assert "signature is not valid" in response.json()["detail"]
    refused(
        post(f"/durable/callbacks/{token}/fail/", '{"error": "x"}'),
        403,
        "callback_signature_invalid",
    )
    assert Callback.objects.get(pk=callback_id).status == "pending"


def test_a_signed_id_of_no_callback_is_a_404():
    token = callback_token(str(uuid.uuid4()))
    refused(post(f"/durable/callbacks/{token}/", "1"), 404, "callback_not_found")


def test_another_sites_signature_is_refused(worker, settings):
    _, _callback_id, url = waiting(worker)
    settings.SECRET_KEY = "another-site"
    refused(post(url, "1"), 403, "callback_signature_invalid")
    # A rotated key still accepts the URLs made before, through SECRET_KEY_FALLBACKS.
    settings.SECRET_KEY_FALLBACKS = ["tests-only-not-secret"]
    assert post(url, "1").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "parse_error"),
        (b"\xff\xfe", 400, "parse_error"),
        ('"\\ud800"', 400, "parse_error"),
        ("[" * 200 + "]" * 200, 400, "parse_error"),
        ("NaN", 400, "invalid_payload"),
        ('"nul \\u0000"', 400, "invalid_payload"),
    ],
)
def test_bad_bodies_are_400s_never_500s(worker, body, status, code):
    _, callback_id, url = waiting(worker)
    refused(post(url, body), status, code)
    assert Callback.objects.get(pk=callback_id).status == "pending"


def test_values_over_the_payload_limit_are_413s(worker, settings):
    _, callback_id, url = waiting(worker)
    settings.DJANGO_DURABLE = {"MAX_PAYLOAD_BYTES": 100}
    refused(post(url, json.dumps("x" * 200)), 413, "payload_too_large")
    refused(post(url, json.dumps("x" * 70_000)), 413, "payload_too_large")  # the body itself
    assert Callback.objects.get(pk=callback_id).status == "pending"


@pytest.mark.parametrize(
    "body",
    ['"just text"', "[1]", '{"details": 1}', '{"error": 5}', '{"error": "x", "extra": 1}'],
)
def test_a_failure_needs_an_error_string(worker, body):
    _, callback_id, url = waiting(worker)
    refused(post(url + "fail/", body), 400, "parse_error")
    assert Callback.objects.get(pk=callback_id).status == "pending"


def test_an_expired_callback_is_a_409(worker):
    handle = ww.callback.start(0.1)
    worker.run_once()
    url = durable.get_value(handle.id, "callback")["url"]
    run_all()
    assert handle.result(timeout=1) == "timed out"
    response = post(url, "1")
    refused(response, 409, "callback_closed")
    assert "expired" in response.json()["detail"]


def test_other_methods_are_refused():
    token = callback_token(str(uuid.uuid4()))
    response = Client().get(f"/durable/callbacks/{token}/")
    assert response.status_code == 405


def test_the_schema_documents_the_endpoints():
    response = Client().get("/durable/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = json.loads(response.content)
    complete = schema["paths"]["/callbacks/{token}/"]["post"]
    assert {"200", "400", "403", "404", "409", "413", "429"} <= set(complete["responses"])
    assert not complete.get("security")  # no login: the signed URL is the credential
    assert "/callbacks/{token}/fail/" in schema["paths"]
