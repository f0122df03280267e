"""The API's documentation and schema: Swagger UI (/api/v1/docs/) and Redoc (/api/v1/redoc/) load
every script and stylesheet from this service (drf-spectacular-sidecar's files, served by
WhiteNoise), so they render with no network; the schema validates, gives approve and deny their own
inputs, and documents each operation's problem+json errors by status; a choice the API refuses, in a
body or a query string, is answered with the values it takes."""

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from compliance.api.errors import PROBLEM_CONTENT_TYPE
from compliance.models import AuditEvent, DenialGround, RemovalRequest, RequestStatus
from tests.test_api import assert_problem

# Each operation's documented 4xx, declared: 400 input or query parameters, 401/403 authenticated,
# 404 an id in the path or a cursor, 409 a transition of the object in the path (a POST on it that
# creates nothing), 413/415 a body.
READ_ONE = {401, 403, 404}
TRANSITION = {400, 401, 403, 404, 409, 413, 415}
PROBLEMS = {
    "requests_list": {400, 401, 403, 404},
    "requests_retrieve": READ_ONE,
    "requests_approve_create": TRANSITION,
    "requests_deny_create": TRANSITION,
    "requests_events_list": READ_ONE,
    "requests_hold_create": TRANSITION,
    "requests_resume_create": {401, 403, 404, 409},  # no input
    "requests_ask_create": TRANSITION,
    "requests_extend_create": TRANSITION,
    "requests_notes_list": READ_ONE,
    "requests_notes_create": {400, 401, 403, 404, 413, 415},  # a note on any request: no transition
    "requests_bulk_decide_create": {400, 401, 403, 413, 415},  # each request's refusal is in the answer
    "requests_certificate_retrieve": READ_ONE,
    "requests_audits_list": READ_ONE,
    "requests_audits_results_json": READ_ONE,
    "requests_audits_results_csv": READ_ONE,
    "requests_audits_items_csv": READ_ONE,
    "jobs_retrieve": READ_ONE,
    "jobs_requeue_create": TRANSITION,
    "jobs_fail_create": TRANSITION,
    "jobs_method_create": TRANSITION,
    "methods_list": {401, 403},
    "models_list": {401, 403},
    "models_create": {400, 401, 403, 413, 415},
    "models_retrieve": READ_ONE,
    "model_registrations_retrieve": READ_ONE,
}


class Assets(HTMLParser):
    """The URLs a page loads: <script src>, <link href>, <img src>."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if attrs.get(name) and tag in ("script", "link", "img"):
                self.urls.append(attrs[name])


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


# 1. The docs, served by the service itself

@pytest.mark.parametrize("page, script, marker", [
    ("/api/v1/docs/", "swagger-ui-bundle.js", b"SwaggerUIBundle"),
    ("/api/v1/redoc/", "redoc.standalone.js", b"Redoc"),
])
def test_the_docs_load_every_file_from_this_service(page, script, marker):
    response = Client().get(page)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in response["Content-Security-Policy"]  # the browser fetches from here only
    html = response.content.decode()
    assert "//cdn" not in html and "fonts.googleapis" not in html
    parser = Assets()
    parser.feed(html)
    assert parser.urls and any(url.endswith(script) for url in parser.urls), parser.urls
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//") and "://" not in url, f"{page} loads {url}"
        asset = Client().get(url)
        assert asset.status_code == 200, url
        body = b"".join(asset.streaming_content) if asset.streaming else asset.content
        assert body == Path(finders.find(url.removeprefix(settings.STATIC_URL))).read_bytes(), url
        if url.endswith(script):
            assert marker in body


def test_swagger_ui_asks_no_outside_validator():
    assert '"validatorUrl": null' in Client().get("/api/v1/docs/").content.decode()


# 2. The schema

def test_the_schema_validates_against_the_openapi_specification(schema):
    validate_schema(schema)
    served = Client().get("/api/v1/schema/", {"format": "json"})
    assert served.status_code == 200
    validate_schema(json.loads(served.content))


def test_approve_and_deny_have_their_own_inputs(schema):
    components = schema["components"]["schemas"]

    def input_of(path):
        return schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    assert input_of("/api/v1/requests/{request_id}/approve/").endswith("/ApproveRequestInput")
    assert input_of("/api/v1/requests/{request_id}/deny/").endswith("/DenyRequestInput")
    approve, deny = components["ApproveRequestInput"], components["DenyRequestInput"]
    assert set(approve["properties"]) == {"note", "include_records", "forget_material"}
    assert not approve.get("required")
    assert set(deny["properties"]) == {"reason", "ground"} and deny["required"] == ["reason"]
    grounds = [components[ref["$ref"].rsplit("/", 1)[1]] for ref in deny["properties"]["ground"]["oneOf"]]
    assert sorted(value for enum in grounds for value in enum["enum"]) == sorted(DenialGround.values)


def test_the_request_list_documents_every_status_it_filters_by(schema):
    (status,) = [p for p in schema["paths"]["/api/v1/requests/"]["get"]["parameters"] if p["name"] == "status"]
    assert status["in"] == "query" and set(status["schema"]["enum"]) == {*RequestStatus.values, ""}


def test_every_operation_documents_its_problems(schema):
    problem = schema["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    assert problem["properties"]["errors"]["type"] == "object"
    documented = {}
    for path, method, operation in operations(schema):
        codes = {int(code) for code in operation["responses"] if code.startswith("4")}
        documented[operation["operationId"]] = codes
        for code in codes:
            response = operation["responses"][str(code)]
            assert response["content"] == {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
            assert response["description"], (path, method, code)
        if 401 in codes:
            assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    # A new operation is declared in PROBLEMS with the statuses it can answer (compliance.api.schema).
    assert documented == PROBLEMS, {op: documented.get(op) for op in documented.keys() ^ PROBLEMS.keys()}


def test_a_throttled_operation_documents_429_with_retry_after():
    from django.urls import path

    class Throttled(APIView):
        throttle_classes = [AnonRateThrottle]

        def get(self, request):
            """Only here to be described."""

    schema = SchemaGenerator(patterns=[path("throttled/", Throttled.as_view())]).get_schema(request=None, public=True)
    too_many = schema["paths"]["/throttled/"]["get"]["responses"]["429"]
    assert "Retry-After" in too_many["headers"] and PROBLEM_CONTENT_TYPE in too_many["content"]


# 3. Choices in errors

@pytest.mark.django_db
def test_an_unknown_denial_ground_is_refused_with_the_grounds_there_are(legal_api, verified_request):
    events = AuditEvent.objects.count()
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/deny/", {"reason": "no", "ground": "nope"},
                              format="json")
    (message,) = assert_problem(response, 400, "invalid_input")["errors"]["ground"]
    grounds = ", ".join(value for value in DenialGround.values if value)
    assert message == f'"nope" is not a valid choice: choose one of {grounds} (or leave it empty)'
    assert RemovalRequest.objects.get(pk=verified_request.pk).status == RequestStatus.IDENTITY_VERIFIED
    assert AuditEvent.objects.count() == events


@pytest.mark.django_db
def test_an_unknown_status_filter_is_refused_with_every_status_there_is(legal_api, verified_request):
    body = assert_problem(legal_api.get("/api/v1/requests/", {"status": "pending"}), 400, "invalid_input")
    (message,) = body["errors"]["status"]
    assert message.startswith('"pending" is not a valid choice: choose one of ')
    assert message.endswith(", ".join(RequestStatus.values) + " (or leave it empty)")
    for status in ("on_hold", "info_requested", "no_data", "duplicate"):  # the newest states too
        assert status in message
    assert legal_api.get("/api/v1/requests/", {"status": ""}).json()["results"]  # empty: every request
