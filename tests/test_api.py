"""The legal team's REST API: auth, lifecycle actions, and problem+json errors that change nothing."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from compliance.models import AuditEvent, RemovalRequest, RequestStatus

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"


def assert_problem(response, status, code=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if code:
        assert body["type"].endswith(f"/{code}")
    return body


def test_without_a_token_the_api_answers_401_problem():
    assert_problem(APIClient().get("/api/v1/requests/"), 401)


def test_a_user_outside_the_legal_team_gets_403():
    user = get_user_model().objects.create(username="outsider")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert_problem(client.get("/api/v1/requests/"), 403)


def test_list_filters_by_status_and_rejects_an_unknown_one(legal_api, verified_request, submit):
    submit(email="bram@mail.example")
    listing = legal_api.get("/api/v1/requests/", {"status": "identity_verified"}).json()
    assert [r["reference"] for r in listing["results"]] == [verified_request.reference]
    assert "next" in listing  # cursor pagination
    body = assert_problem(legal_api.get("/api/v1/requests/", {"status": "nonsense"}), 400, "invalid_input")
    assert "status" in body["errors"]


@pytest.mark.parametrize("request_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_ids_are_404_problems(legal_api, request_id):
    assert_problem(legal_api.get(f"/api/v1/requests/{request_id}/"), 404, "not_found")
    assert_problem(legal_api.post(f"/api/v1/requests/{request_id}/approve/", {}, format="json"), 404, "not_found")


def test_approve_then_a_second_approval_is_a_409_that_changes_nothing(legal_api, verified_request):
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/approve/", {"note": "ok"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == RequestStatus.APPROVED
    events = AuditEvent.objects.count()
    assert_problem(legal_api.post(f"/api/v1/requests/{verified_request.pk}/approve/", {}, format="json"), 409, "transition_not_allowed")
    assert AuditEvent.objects.count() == events
    assert RemovalRequest.objects.get(pk=verified_request.pk).status == RequestStatus.APPROVED


def test_approving_an_unverified_request_is_refused(legal_api, submit):
    request, _ = submit()
    assert_problem(legal_api.post(f"/api/v1/requests/{request.pk}/approve/", {}, format="json"), 409)
    assert RemovalRequest.objects.get(pk=request.pk).status == RequestStatus.SUBMITTED


def test_deny_needs_a_reason(legal_api, verified_request):
    body = assert_problem(legal_api.post(f"/api/v1/requests/{verified_request.pk}/deny/", {}, format="json"), 400, "invalid_input")
    assert "reason" in body["errors"]
    assert RemovalRequest.objects.get(pk=verified_request.pk).status == RequestStatus.IDENTITY_VERIFIED
    response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/deny/",
                              {"reason": "needed for a pending lawsuit", "ground": "legal_claims"}, format="json")
    assert response.status_code == 200 and response.json()["denial_ground"] == "legal_claims"


def test_detail_shows_the_deadline_and_events_show_the_history(legal_api, verified_request):
    detail = legal_api.get(f"/api/v1/requests/{verified_request.pk}/").json()
    assert detail["reference"] == verified_request.reference and 27 <= detail["days_left"] <= 31
    assert detail["jobs"] == [] and detail["audits"] == [] and detail["certificate"] is None
    actions = [e["action"] for e in legal_api.get(f"/api/v1/requests/{verified_request.pk}/events/").json()]
    assert actions == ["request.submitted", "request.identity_verified"]


def test_no_certificate_yet_is_a_404_problem(legal_api, verified_request):
    assert_problem(legal_api.get(f"/api/v1/requests/{verified_request.pk}/certificate/"), 404)


def test_the_openapi_schema_is_public_and_lists_the_lifecycle():
    response = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/requests/{request_id}/approve/" in paths and "/api/v1/requests/{request_id}/certificate/" in paths


def test_the_openapi_schema_validates_without_warnings():
    """drf-spectacular's own validation, warnings as errors: e.g. approve and deny each have their
    own input component (deny's required reason is not lost in a shared one)."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
    schemas = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["components"]["schemas"]
    assert "reason" in schemas["DenyRequestInput"]["required"]
    assert {"include_records", "forget_material"} <= set(schemas["ApproveRequestInput"]["properties"])
