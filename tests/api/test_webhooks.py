"""Signed inbound webhooks: ``POST webhooks/<source>/`` (Standard Webhooks)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from standardwebhooks import Webhook

from django_durable.models import Event
from django_durable.testing import run_ready, run_until_finished
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/durable/webhooks/shop/"
ROTATING = "/durable/webhooks/rotating/"
# tests/settings.py: "shop" has ONE; "rotating" has OLD and NEW.
ONE = "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1vbmU="
OLD = "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1vbGQ="
NEW = "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1uZXc="
BODY = json.dumps({"type": "order.paid", "data": {"order": "A-1", "amount": "19.90"}}).encode()


def signed(
    body: bytes = BODY, *, secret: str = ONE, msg_id: str = "msg_1", age: float = 0
) -> dict[str, str]:
    """Return the Standard Webhooks headers of ``body``, signed ``age`` seconds ago."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body),
    }


def post(body: bytes = BODY, headers: dict[str, str] | None = None, url: str = URL):
    # No login, and CSRF checked as in production: the signature is the only credential.
    client = Client(enforce_csrf_checks=True)
    return client.post(url, body, content_type="application/json", headers=headers or {})


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert response.json()["detail"]
    assert not Event.objects.exists()


@pytest.fixture(autouse=True)
def _throttle_history():
    cache.clear()  # DRF keeps request times in the default cache
    yield
    cache.clear()


@pytest.fixture
def durable_settings(settings):
    """Return a function that changes some DJANGO_DURABLE keys, keeping the others."""

    def change(**keys):
        settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, **keys}

    return change


# --- a good delivery -----------------------------------------------------------------------


def test_a_signed_webhook_emits_the_configured_event():
    response = post(BODY, signed(BODY, msg_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"))
    assert response.status_code == 202, response.content
    event = Event.objects.get()
    assert response.json() == {"id": event.id}
    assert event.name == "shop/order"
    assert event.data == json.loads(BODY)
    assert event.source == "webhook:shop"
    assert event.type == ""
    assert event.idempotency_key == "webhook:shop:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def test_a_redelivery_stores_nothing_new_and_answers_the_same_id():
    first = post(BODY, signed(BODY))
    again = post(BODY, signed(BODY))  # a new timestamp and signature, the same webhook-id
    other_body = json.dumps({"changed": True}).encode()
    changed = post(other_body, signed(other_body))  # same id: the first delivery wins
    assert first.status_code == again.status_code == changed.status_code == 202
    assert first.json() == again.json() == changed.json()
    assert Event.objects.get().data == json.loads(BODY)
    assert post(BODY, signed(BODY, msg_id="msg_2")).json() != first.json()
    assert Event.objects.count() == 2


def test_the_event_wakes_a_run_waiting_for_it():
    run = wf.waits_event.start("shop/order")
    run_ready()
    assert run.refresh().status == "waiting"
    response = post(BODY, signed(BODY))
    assert response.status_code == 202
    [run] = run_until_finished(run, timeout=10)
    assert run.status == "completed"
    result = run.result(timeout=0)
    assert (result["id"], result["data"]) == (response.json()["id"], json.loads(BODY))
    assert result["source"] == "webhook:shop"


def test_a_logged_in_user_without_a_csrf_token_is_not_refused():
    user = get_user_model().objects.create_user("ada", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)  # session authentication would ask this user for a CSRF token
    response = client.post(URL, BODY, content_type="application/json", headers=signed(BODY))
    assert response.status_code == 202, response.content


def test_a_long_webhook_id_is_hashed_into_the_key_never_cut():
    long_id = "msg_" + "x" * 1000
    first = post(BODY, signed(BODY, msg_id=long_id))
    assert first.status_code == 202, first.content
    key = Event.objects.get().idempotency_key
    assert key.startswith("webhook:sha256:")
    assert len(key) == len("webhook:sha256:") + 64
    assert post(BODY, signed(BODY, msg_id=long_id)).json() == first.json()
    other = post(BODY, signed(BODY, msg_id=long_id + "y"))  # differs past any cut
    assert other.json() != first.json()


# --- refused signatures ------------------------------------------------------------------------


def test_a_signature_by_another_secret_is_refused():
    refused(post(BODY, signed(BODY, secret=OLD)), 401, "webhook_signature_invalid")


def test_a_body_changed_after_signing_is_refused():
    tampered = BODY.replace(b"19.90", b"0.01")
    refused(post(tampered, signed(BODY)), 401, "webhook_signature_invalid")


def test_a_signature_for_another_webhook_id_is_refused():
    headers = {**signed(BODY, msg_id="msg_1"), "webhook-id": "msg_2"}
    refused(post(BODY, headers), 401, "webhook_signature_invalid")


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused_and_named(header):
    headers = signed(BODY)
    del headers[header]
    response = post(BODY, headers)
    refused(response, 401, "webhook_signature_missing")
    assert header in response.json()["detail"]


def test_an_empty_header_counts_as_missing():
    refused(post(BODY, {**signed(BODY), "webhook-signature": ""}), 401, "webhook_signature_missing")


def test_no_headers_at_all_is_refused():
    refused(post(BODY, {}), 401, "webhook_signature_missing")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("webhook-timestamp", "yesterday"),
        ("webhook-timestamp", "nan"),
        ("webhook-timestamp", "9" * 400),
        ("webhook-signature", "garbage"),
        ("webhook-signature", "v1,"),
        ("webhook-signature", "v1," + "A" * 1_000_000),  # a huge header
        ("webhook-signature", "v1,x " * 100_000),
        ("webhook-id", "\xff\xfe"),  # not ASCII (headers are Latin-1 on the wire)
        ("webhook-id", "\ud800"),  # cannot be encoded at all
    ],
)
def test_malformed_headers_are_refused_as_invalid(header, value):
    refused(post(BODY, {**signed(BODY), header: value}), 401, "webhook_signature_invalid")


@pytest.mark.parametrize("age", [6 * 60, -6 * 60, 24 * 3600])
def test_stale_and_future_timestamps_are_refused(age):
    refused(post(BODY, signed(BODY, age=age)), 401, "webhook_timestamp_stale")


@pytest.mark.parametrize("age", [4 * 60, -4 * 60])
def test_timestamps_within_five_minutes_are_accepted(age):
    assert post(BODY, signed(BODY, age=age)).status_code == 202


def test_a_stale_timestamp_with_a_bad_signature_is_still_refused():
    refused(post(BODY, signed(BODY, secret=OLD, age=3600)), 401, "webhook_timestamp_stale")


# --- rotation ------------------------------------------------------------------------------


def test_during_a_rotation_the_old_and_the_new_secret_are_accepted():
    by_old = post(BODY, signed(BODY, secret=OLD, msg_id="msg_old"), url=ROTATING)
    by_new = post(BODY, signed(BODY, secret=NEW, msg_id="msg_new"), url=ROTATING)
    assert by_old.status_code == by_new.status_code == 202
    assert set(Event.objects.values_list("name", "source")) == {
        ("shop/rotated", "webhook:rotating")
    }
    assert Event.objects.count() == 2


def test_during_a_rotation_a_third_secret_is_refused():
    response = post(BODY, signed(BODY, secret=ONE), url=ROTATING)  # the "shop" source's
    refused(response, 401, "webhook_signature_invalid")


def test_a_header_with_several_signatures_is_accepted_if_one_matches():
    headers = signed(BODY)
    bad = Webhook(OLD).sign("msg_1", dt.datetime.now(dt.UTC), BODY)
    headers["webhook-signature"] = f"{bad} {headers['webhook-signature']}"
    assert post(BODY, headers).status_code == 202


# --- sources and bodies --------------------------------------------------------------------


@pytest.mark.parametrize("source", ["nope", "SHOP", "shop.", "%2E%2E", "x" * 300])
def test_an_unknown_source_is_a_json_404(source):
    headers = signed(BODY)
    refused(post(BODY, headers, url=f"/durable/webhooks/{source}/"), 404, "webhook_not_found")


def test_a_source_removed_from_the_settings_is_404(durable_settings):
    durable_settings(WEBHOOKS={})
    refused(post(BODY, signed(BODY)), 404, "webhook_not_found")


def test_only_post_is_allowed():
    response = Client().get(URL)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "parse_error"),
        (b"", "parse_error"),  # an empty body, validly signed
        (b"\xff\xfe{}", "parse_error"),  # not UTF-8
        (b"[" * 100_000, "parse_error"),  # nested too deeply
        (b"[" * 100_000 + b"]" * 100_000, "parse_error"),
        (b'"\\ud800"', "parse_error"),  # a lone surrogate: PostgreSQL would refuse it
        (b'{"\\udfff": 1}', "parse_error"),
        (b'{"a": "\\u0000"}', "invalid_payload"),  # NUL: PostgreSQL's jsonb refuses it
        (b"NaN", "invalid_payload"),
        (b"[1e999]", "invalid_payload"),
        (b"9" * 5000, "parse_error"),  # past Python's limit on digits
    ],
)
def test_a_signed_body_that_cannot_be_stored_is_400(body, code):
    refused(post(body, signed(body)), 400, code)


@pytest.mark.parametrize(
    "body", [b"", b"\xff\xfe", b"[" * 100_000, b'"\\ud800"', b"not json", b"x" * 200_000]
)
def test_odd_unsigned_bodies_are_401(body):
    refused(post(body, {}), 401, "webhook_signature_missing")
    refused(post(body, {**signed(BODY)}), 401, "webhook_signature_invalid")


def test_a_body_over_the_limit_is_413_before_the_signature_is_checked(durable_settings):
    durable_settings(MAX_PAYLOAD_BYTES=1000)
    body = json.dumps({"padding": "x" * 100_000}).encode()  # not read to the end
    refused(post(body, {}), 413, "payload_too_large")
    refused(post(body, signed(body)), 413, "payload_too_large")


def test_data_over_max_payload_bytes_is_413(durable_settings):
    durable_settings(MAX_PAYLOAD_BYTES=1000)
    body = json.dumps({"padding": "x" * 2000}).encode()  # within the envelope, not the data
    refused(post(body, signed(body)), 413, "payload_too_large")


# --- throttling ----------------------------------------------------------------------------


def test_the_durable_webhook_throttle_scope_limits_requests(settings):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"durable_webhook": "3/min"}}
    answers = [post(BODY, signed(BODY, msg_id=f"msg_{n}")).status_code for n in range(3)]
    assert answers == [202, 202, 202]
    throttled = post(BODY, signed(BODY, msg_id="msg_3"))
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "throttled"
    assert "Retry-After" in throttled.headers
    assert Event.objects.count() == 3


def test_the_throttle_counts_unsigned_requests_too(settings):
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {"durable_webhook": "2/min"}}
    assert [post(BODY, {}).status_code for _ in range(3)] == [401, 401, 429]
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "rest_framework",
    [
        {},
        {"DEFAULT_THROTTLE_RATES": {}},
        {"DEFAULT_THROTTLE_RATES": {"anon": "1/min"}},
        {"DEFAULT_THROTTLE_RATES": {"durable_webhook": None}},
    ],
)
def test_without_a_rate_for_the_scope_nothing_is_throttled(settings, rest_framework):
    settings.REST_FRAMEWORK = rest_framework
    answers = [post(BODY, signed(BODY, msg_id=f"msg_{n}")).status_code for n in range(5)]
    assert answers == [202] * 5
    assert Event.objects.count() == 5


# --- schema --------------------------------------------------------------------------------


def test_the_schema_describes_the_webhook_endpoint():
    response = Client().get("/durable/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    operation = json.loads(response.content)["paths"]["/webhooks/{source}/"]["post"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert {"202", "400", "401", "404"} <= set(operation["responses"])
    assert operation.get("security") in (None, [], [{}])
