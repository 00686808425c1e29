"""What ``GET schema/`` says, for generated clients: pages, errors, limits, security.

Schemathesis checks the answers against it (``test_schema_fuzz.py``); these tests pin the
facts a client generator relies on, and the answers that were changed to match them.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

BASE = "/durable"
RUN = "/runs/{run_id}/"


def schema() -> dict:
    response = Client().get(f"{BASE}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return json.loads(response.content)


def parameter(operation: dict, name: str) -> dict:
    (found,) = [p for p in operation["parameters"] if p["name"] == name]
    return found


def test_the_runs_list_is_a_page_with_a_cursor():
    document = schema()
    listing = document["paths"]["/runs/"]["get"]
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert page == {"$ref": "#/components/schemas/PaginatedRunList"}
    paginated = document["components"]["schemas"]["PaginatedRunList"]
    assert paginated["required"] == ["next", "previous", "results"]
    assert paginated["properties"]["results"]["items"] == {"$ref": "#/components/schemas/Run"}
    assert paginated["properties"]["next"]["nullable"] is True
    assert parameter(listing, "cursor")["schema"] == {"type": "string"}
    size = parameter(listing, "page_size")["schema"]
    assert (size["minimum"], size["maximum"]) == (1, 500)


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/runs/", "get", {"200", "400", "401", "403", "406"}),
        ("/runs/", "post", {"200", "201", "400", "401", "403", "406", "413", "415", "429"}),
        (RUN, "get", {"200", "401", "403", "404", "406"}),
        (f"{RUN}messages/", "post", {"202", "400", "401", "403", "404", "406", "409", "413"}),
        (f"{RUN}cancel/", "post", {"202", "400", "401", "403", "404", "406", "409", "413"}),
        (f"{RUN}retry/", "post", {"202", "401", "403", "404", "406", "409"}),
        (
            f"{RUN}fork/",
            "post",
            {"200", "201", "400", "401", "403", "404", "406", "409", "413", "429"},
        ),
        (f"{RUN}values/{{key}}/", "get", {"200", "400", "401", "403", "404", "406"}),
        (f"{RUN}streams/{{key}}/", "get", {"200", "400", "401", "403", "404", "406"}),
        ("/events/", "post", {"202", "400", "401", "403", "406", "413", "415", "429"}),
        ("/webhooks/{source}/", "post", {"202", "400", "401", "404", "406", "413", "429"}),
        ("/csrf/", "get", {"200", "406"}),
    ],
)
def test_every_error_an_endpoint_gives_is_described(path, method, codes):
    document = schema()
    responses = document["paths"][path][method]["responses"]
    assert codes <= set(responses), sorted(codes - set(responses))
    for code, response in responses.items():
        if code >= "400":
            body = response["content"]["application/json"]["schema"]
            assert "#/components/schemas/Error" in json.dumps(body), (code, body)
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["detail", "code"]


def test_field_errors_are_described_where_a_body_is_validated():
    document = schema()
    start = document["paths"]["/runs/"]["post"]["responses"]["400"]
    assert "FieldErrors" in json.dumps(start)
    listing = document["paths"]["/runs/"]["get"]["responses"]["400"]
    assert "FieldErrors" not in json.dumps(listing)
    fields = document["components"]["schemas"]["FieldErrors"]
    assert fields["type"] == "object" and "additionalProperties" in fields


def test_a_run_id_is_a_uuid_and_tokens_are_taken_where_they_are():
    document = schema()
    takes_tokens = {RUN, f"{RUN}messages/", f"{RUN}values/{{key}}/", f"{RUN}streams/{{key}}/"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            names = {name for requirement in operation.get("security", []) for name in requirement}
            if "{run_id}" in path:
                assert parameter(operation, "run_id")["schema"]["format"] == "uuid"
            assert ("runToken" in names) == (path in takes_tokens), (method, path)
            assert ("runTokenQuery" in names) == path.endswith("streams/{key}/"), (method, path)
    schemes = document["components"]["securitySchemes"]
    assert schemes["runToken"]["scheme"] == "bearer"
    assert (schemes["runTokenQuery"]["in"], schemes["runTokenQuery"]["name"]) == ("query", "token")
    assert {"cookieAuth", "basicAuth"} <= set(schemes)
    assert "security" not in document["paths"]["/csrf/"]["get"]
    assert "security" not in document["paths"]["/webhooks/{source}/"]["post"]


def test_the_limits_are_in_the_schema(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "API_MAX_WAIT": 12.5}
    document = schema()
    value = document["paths"][f"{RUN}values/{{key}}/"]["get"]
    timeout = parameter(value, "timeout")["schema"]
    assert (timeout["type"], timeout["minimum"], timeout["maximum"]) == ("number", 0, 12.5)
    stream = document["paths"][f"{RUN}streams/{{key}}/"]["get"]
    whole = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    assert parameter(value, "after")["schema"] == whole
    assert parameter(stream, "offset")["schema"] == whole
    assert parameter(stream, "Last-Event-ID")["schema"] == whole
    assert parameter(stream, "format")["schema"]["enum"] == ["json", "sse"]
    assert set(stream["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    start = document["components"]["schemas"]["StartRun"]["properties"]
    assert (start["delay"]["minimum"], start["delay"]["maximum"]) == (0, 10 * 365 * 86400)
    assert start["workflow"]["maxLength"] == 200
    message = document["components"]["schemas"]["SendMessage"]["properties"]
    assert (message["topic"]["maxLength"], message["idempotency_key"]["maxLength"]) == (200, 255)


# --- answers made to match the schema ----------------------------------------------------


@pytest.fixture
def user_client(transactional_db):
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user("reader"))
    return api


def test_a_cursor_that_cannot_be_decoded_is_a_400_parse_error(user_client):
    # Was DRF's 404 "Invalid cursor": the docs and the schema say 400.
    answer = user_client.get(f"{BASE}/runs/", {"cursor": "-created_at"})
    assert (answer.status_code, answer.json()["code"]) == (400, "parse_error")


def test_django_errors_have_a_code_too(user_client):
    # An unknown ?format= is Django's Http404: the body now has a code like every other.
    answer = user_client.get(f"{BASE}/runs/?format=xml")
    assert answer.json() == {"detail": "Not found.", "code": "not_found"}
    refused = user_client.get(f"{BASE}/runs/", HTTP_ACCEPT="text/html")
    assert (refused.status_code, refused.json()["code"]) == (406, "not_acceptable")
