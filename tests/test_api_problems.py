"""Every error of the REST API is an RFC 9457 problem (application/problem+json), and the answers an
outside tester found wrong are right: a malformed cursor, a too deeply nested or too large body, an
unrouted path, a missing trailing slash, a file endpoint's Accept header, a certificate whose folder
moved, and staff without the legal group."""

import base64
import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from compliance.models import RemovalRequest, RequestStatus
from tests.conftest import owner_session
from tests.test_api import assert_problem

pytestmark = pytest.mark.django_db
DEEP_JSON = '{"a":' * 2000 + "1" + "}" * 2000


def cursor_of(query: str) -> str:
    """A cursor as DRF writes one: the base64 of a query string (o: offset, r: reverse, p: position)."""
    return base64.b64encode(query.encode()).decode()


def assert_unchanged(request, status=RequestStatus.IDENTITY_VERIFIED):
    assert RemovalRequest.objects.get(pk=request.pk).status == status


# 1. Pagination cursors

@pytest.mark.parametrize("cursor", [
    "%%%garbage",  # not base64: DRF's own NotFound already
    cursor_of("p=abc"),  # decodes, but the position is no date: DateTimeField's ValidationError was a 500
    cursor_of("p=2024-02-30 10:00:00+00:00"),  # the format of a date, not a date
    cursor_of("p=2024-01-01 10:00:00+99:00"),  # an offset no time zone has
    cursor_of("p=2024-01-01\x00"),  # NUL, which PostgreSQL refuses in any text
])
def test_a_cursor_the_api_cannot_use_is_a_404_problem(legal_api, verified_request, cursor):
    body = assert_problem(legal_api.get("/api/v1/requests/", {"cursor": cursor}), 404, "not_found")
    assert body["title"] == "Not Found" and body["detail"] == "Invalid cursor"


def test_the_cursors_the_api_writes_still_page_through_the_list(legal_api, submit, monkeypatch):
    from compliance.api.views import RequestPagination

    monkeypatch.setattr(RequestPagination, "page_size", 1)
    for email in ("a@mail.example", "b@mail.example"):
        submit(email=email)
    first = legal_api.get("/api/v1/requests/").json()
    second = legal_api.get(first["next"]).json()
    assert len(first["results"]) == len(second["results"]) == 1
    assert first["results"][0]["id"] != second["results"][0]["id"]


# 2. A body nested too deep for the JSON decoder

def test_json_nested_too_deep_is_a_400_problem_that_changes_nothing(legal_api, verified_request):
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/approve/", DEEP_JSON,
                              content_type="application/json")
    body = assert_problem(response, 400, "parse_error")
    assert body["title"] == "Bad Request" and "nested too deeply" in body["detail"]
    assert_unchanged(verified_request)


def test_an_operators_json_nested_too_deep_is_a_400_problem(operator_api):
    response = operator_api.post("/api/v1/jobs/1/method/", DEEP_JSON, content_type="application/json")
    assert "nested too deeply" in assert_problem(response, 400, "parse_error")["detail"]


def test_malformed_json_is_a_400_problem_too(legal_api, verified_request):
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/deny/", '{"reason": ',
                              content_type="application/json")
    assert "JSON parse error" in assert_problem(response, 400, "parse_error")["detail"]
    assert_unchanged(verified_request)


# 3. Paths no route matches

@pytest.mark.parametrize("method, path", [("get", "/api/v1/nope/"), ("post", "/api/v1/nope"), ("get", "/api/v1/"),
                                          ("delete", "/api/v1/requests/x/approve/extra/")])
def test_an_unrouted_api_path_is_a_404_problem(legal_api, method, path):
    body = assert_problem(getattr(legal_api, method)(path), 404, "not_found")
    assert body["title"] == "Not Found" and body["detail"] == f"no API endpoint at {path}"


def test_an_unrouted_path_is_a_problem_even_without_a_token_or_for_a_browser():
    response = APIClient().get("/api/v1/nope/", HTTP_ACCEPT="text/html,*/*;q=0.8")
    assert assert_problem(response, 404)["instance"] == "/api/v1/nope/"  # JSON, not the browsable API's HTML


def test_the_catch_all_shadows_no_route(legal_api, verified_request):
    assert legal_api.get("/api/v1/requests/").status_code == 200
    assert legal_api.get(f"/api/v1/requests/{verified_request.pk}/events/").status_code == 200
    assert APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/json").status_code == 200


# 4. A body larger than Django accepts

@pytest.mark.parametrize("content_type, body", [
    ("application/json", json.dumps({"note": "x" * 5000})),
    ("application/x-www-form-urlencoded", "note=" + "x" * 5000),
])
def test_a_body_over_the_upload_limit_is_a_413_problem(legal_api, verified_request, settings, content_type, body):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/approve/", body, content_type=content_type)
    problem = assert_problem(response, 413, "payload_too_large")
    assert problem["title"] == "Request Entity Too Large" and "1000 bytes" in problem["detail"]
    assert_unchanged(verified_request)


def test_a_multipart_field_over_the_upload_limit_is_a_413_problem(legal_api, verified_request, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/approve/", {"note": "x" * 5000},
                              format="multipart")
    assert_problem(response, 413, "payload_too_large")
    assert_unchanged(verified_request)


def test_too_many_form_fields_is_a_400_problem(legal_api, verified_request, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 2
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/approve/", "a=1&b=2&c=3&d=4",
                              content_type="application/x-www-form-urlencoded")
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in assert_problem(response, 400, "parse_error")["detail"]
    assert_unchanged(verified_request)


# 5. Routes with or without their trailing slash

def test_approve_without_the_trailing_slash_keeps_its_body(legal_api, verified_request):
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/approve", {"note": "checked by legal"},
                              format="json")
    assert response.status_code == 200, response.content
    approved = RemovalRequest.objects.get(pk=verified_request.pk)
    assert approved.status == RequestStatus.APPROVED and approved.decision_note == "checked by legal"


def test_deny_without_the_trailing_slash_keeps_its_body(legal_api, verified_request):
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/deny",
                              {"reason": "needed for a pending lawsuit", "ground": "legal_claims"}, format="json")
    assert response.status_code == 200, response.content
    denied = RemovalRequest.objects.get(pk=verified_request.pk)
    assert (denied.status, denied.denial_ground) == (RequestStatus.DENIED, "legal_claims")


def test_reads_without_the_trailing_slash_are_the_same_as_with_it(legal_api, verified_request):
    with_slash = legal_api.get(f"/api/v1/requests/{verified_request.pk}/").json()
    assert legal_api.get(f"/api/v1/requests/{verified_request.pk}").json() == with_slash
    assert legal_api.get("/api/v1/requests").status_code == 200
    assert_problem(legal_api.get("/api/v1/requests/not-a-uuid"), 404, "not_found")  # the view's 404, not the catch-all's


def test_names_and_the_schema_keep_the_slash_form_once_each():
    assert reverse("api-request-approve", args=["abc"]) == "/api/v1/requests/abc/approve/"
    paths = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert "/api/v1/requests/{request_id}/approve/" in paths
    assert all(path.endswith(("/", ".json", ".csv")) for path in paths), sorted(paths)
    assert not [path for path in paths if path.endswith("/") and path[:-1] in paths]  # each path once
    assert "/api/v1/" not in paths  # the catch-all is no endpoint


# 6. File endpoints and their media types

@pytest.mark.parametrize("filename", ["results.csv", "items.csv"])
@pytest.mark.parametrize("accept", ["text/csv", "*/*", None, "text/csv;q=0.9, application/problem+json"])
def test_a_csv_export_answers_its_media_type(legal_api, audited_request, filename, accept):
    request, _, run = audited_request
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = legal_api.get(f"/api/v1/requests/{request.pk}/audits/{run.pk}/{filename}", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert len(list(csv.DictReader(io.StringIO(response.content.decode())))) > 1


def test_a_csv_export_errors_as_a_problem_whatever_was_accepted(legal_api, audited_request):
    request, _, run = audited_request
    missing = legal_api.get(f"/api/v1/requests/{request.pk}/audits/{run.pk + 1}/results.csv", HTTP_ACCEPT="text/csv")
    assert f"no audit run {run.pk + 1}" in assert_problem(missing, 404, "not_found")["detail"]
    assert_problem(APIClient().get(f"/api/v1/requests/{request.pk}/audits/{run.pk}/items.csv",
                                   HTTP_ACCEPT="text/csv"), 401)
    wrong_type = legal_api.get(f"/api/v1/requests/{request.pk}/audits/{run.pk}/results.csv",
                               HTTP_ACCEPT="application/json")
    assert assert_problem(wrong_type, 406, "not_acceptable")["title"] == "Not Acceptable"


def test_no_certificate_yet_is_a_404_problem_when_a_pdf_is_accepted(legal_api, verified_request):
    response = legal_api.get(f"/api/v1/requests/{verified_request.pk}/certificate/", HTTP_ACCEPT="application/pdf")
    assert assert_problem(response, 404, "not_found")["detail"] == "this request has no certificate yet"


# 7. Certificates whose folder moved, or whose file is gone

def downloads(legal_api, request) -> tuple:
    """The certificate as the API and the portal answer it."""
    return (legal_api.get(f"/api/v1/requests/{request.pk}/certificate/", HTTP_ACCEPT="application/pdf"),
            owner_session(request).get(f"/requests/{request.pk}/certificate.pdf"))


def assert_the_issued_pdf(response, certificate):
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert hashlib.sha256(content).hexdigest() == certificate.pdf_sha256
    assert f'filename="{certificate.serial}.pdf"' in response["Content-Disposition"]


@pytest.mark.parametrize("accept", ["application/pdf", "*/*", None])
def test_the_certificate_answers_its_media_type(legal_api, certified, accept):
    request, certificate = certified
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    assert_the_issued_pdf(legal_api.get(f"/api/v1/requests/{request.pk}/certificate/", **headers), certificate)


def test_a_certificate_follows_its_folder_when_var_dir_moves(legal_api, certified, settings, tmp_path):
    request, certificate = certified
    moved = tmp_path / "moved-var"
    moved.mkdir()
    (tmp_path / "certificates").rename(moved / "certificates")
    settings.VAR_DIR = moved
    assert not Path(certificate.pdf_path).exists()  # the stored absolute path is stale
    for response in downloads(legal_api, request):
        assert_the_issued_pdf(response, certificate)


def test_a_certificate_follows_a_configured_certificate_dir(legal_api, certified, settings, tmp_path):
    request, certificate = certified
    (tmp_path / "certificates").rename(tmp_path / "archive")
    settings.CERTIFICATE_DIR = tmp_path / "archive"
    for response in downloads(legal_api, request):
        assert_the_issued_pdf(response, certificate)


def test_a_certificate_left_at_its_stored_path_is_still_read(legal_api, certified, settings, tmp_path):
    request, certificate = certified
    settings.VAR_DIR = tmp_path / "a-new-empty-var"  # its certificates folder holds nothing
    for response in downloads(legal_api, request):
        assert_the_issued_pdf(response, certificate)


@pytest.mark.parametrize("loss", ["deleted", "replaced"])
def test_a_certificate_whose_file_is_gone_is_a_410_problem_and_a_portal_404(legal_api, certified, loss):
    request, certificate = certified
    path = Path(certificate.pdf_path)
    if loss == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"%PDF-1.7 not the one that was issued")
    api, portal = downloads(legal_api, request)
    body = assert_problem(api, 410, "certificate_file_missing")
    assert body["title"] == "Certificate file missing" and certificate.serial in body["detail"]
    assert portal.status_code == 404 and portal["Content-Type"].startswith("text/html")


# 8. Staff alone is not the legal team

@pytest.fixture
def staff_api(db):
    user = get_user_model().objects.create(username="staff-only", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_staff_without_the_legal_group_gets_403_on_list_and_approve(staff_api, verified_request):
    body = assert_problem(staff_api.get("/api/v1/requests/"), 403, "permission_denied")
    assert body["title"] == "Forbidden" and "legal group" in body["detail"]
    assert_problem(staff_api.post(f"/api/v1/requests/{verified_request.pk}/approve/", {}, format="json"), 403)
    assert_unchanged(verified_request)


def test_a_legal_token_still_drives_requests(legal_api, verified_request):
    assert legal_api.get("/api/v1/requests/").status_code == 200
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/approve/", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == RequestStatus.APPROVED
