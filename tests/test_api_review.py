"""The legal team's review endpoints (compliance.api.review_views): hold and resume, a question to
the owner, the one extension, internal notes, and bulk decisions; every refusal a problem+json."""

import pytest
from rest_framework.test import APIClient

from compliance import services
from compliance.deadlines import add_months
from compliance.management.commands.create_api_user import ensure_api_user
from compliance.models import NoteKind, RemovalRequest, RequestStatus
from tests.test_api import assert_problem

pytestmark = pytest.mark.django_db


def verified(submit, email: str) -> RemovalRequest:
    request, code = submit(email=email, full_name="Someone Else")
    return services.verify_identity(request_id=request.pk, code=code)


def test_hold_and_resume(verified_request, legal_api):
    base = f"/api/v1/requests/{verified_request.pk}"
    held = legal_api.post(f"{base}/hold/", {"reason": "waiting for the DPO"}, format="json")
    assert held.status_code == 200 and held.json()["status"] == RequestStatus.ON_HOLD
    assert legal_api.post(f"{base}/resume/", {}, format="json").json()["status"] == RequestStatus.IDENTITY_VERIFIED
    assert "only a request on hold" in assert_problem(legal_api.post(f"{base}/resume/", {}, format="json"), 409,
                                                      "transition_not_allowed")["detail"]


def test_bad_input_is_a_problem_by_field(verified_request, legal_api):
    base = f"/api/v1/requests/{verified_request.pk}"
    body = assert_problem(legal_api.post(f"{base}/hold/", {"reason": "   "}, format="json"), 400, "invalid_input")
    assert set(body["errors"]) == {"reason"}
    body = assert_problem(legal_api.post(f"{base}/ask/", {}, format="json"), 400, "invalid_input")
    assert set(body["errors"]) == {"question"}
    assert_problem(legal_api.post(f"{base}/extend/", {"reason": ["a", "b"]}, format="json"), 400, "invalid_input")
    assert_problem(legal_api.post("/api/v1/requests/not-a-request/hold/", {"reason": "x"}, format="json"), 404,
                   "not_found")
    verified_request.refresh_from_db()
    assert verified_request.status == RequestStatus.IDENTITY_VERIFIED


def test_asking_the_owner_emails_the_question(verified_request, legal_api, django_capture_on_commit_callbacks,
                                              mailoutbox):
    with django_capture_on_commit_callbacks(execute=True):
        response = legal_api.post(f"/api/v1/requests/{verified_request.pk}/ask/",
                                  {"question": "Which account do you mean?"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == RequestStatus.INFO_REQUESTED
    assert "Which account do you mean?" in mailoutbox[-1].body and mailoutbox[-1].to == [verified_request.email]


def test_the_deadline_is_extended_once(verified_request, legal_api, django_capture_on_commit_callbacks, mailoutbox):
    before = verified_request.due_at
    path = f"/api/v1/requests/{verified_request.pk}/extend/"
    with django_capture_on_commit_callbacks(execute=True):
        response = legal_api.post(path, {"reason": "three models to audit"}, format="json")
    assert response.status_code == 200
    verified_request.refresh_from_db()
    assert verified_request.due_at == add_months(before, 2) and "three models to audit" in mailoutbox[-1].body
    assert "one extension" in assert_problem(legal_api.post(path, {"reason": "more"}, format="json"), 409)["detail"]


def test_notes_list_and_add(verified_request, legal_api):
    path = f"/api/v1/requests/{verified_request.pk}/notes/"
    added = legal_api.post(path, {"text": "looks like a test request"}, format="json")
    assert added.status_code == 201 and added.json()["kind"] == NoteKind.INTERNAL
    services.ask_owner(request_id=verified_request.pk, user=added.wsgi_request.user, question="Which account?")
    services.answer_owner_question(request_id=verified_request.pk, answer="The work one.")
    notes = legal_api.get(path).json()
    assert [(n["kind"], n["author"], n["text"]) for n in notes] == [
        (NoteKind.INTERNAL, "legal-test", "looks like a test request"),
        (NoteKind.QUESTION, "legal-test", "Which account?"),
        (NoteKind.OWNER_REPLY, None, "The work one."),
    ]
    assert set(assert_problem(legal_api.post(path, {"text": ""}, format="json"), 400, "invalid_input")["errors"]) == {"text"}
    assert_problem(legal_api.get("/api/v1/requests/00000000-0000-0000-0000-000000000000/notes/"), 404, "not_found")


def test_an_auditor_reads_the_notes_and_changes_nothing(verified_request, legal_api):
    _, token = ensure_api_user("notes-auditor", scope="auditor")
    auditor = APIClient()
    auditor.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    path = f"/api/v1/requests/{verified_request.pk}"
    legal_api.post(f"{path}/notes/", {"text": "seen"}, format="json")
    assert auditor.get(f"{path}/notes/").json() == legal_api.get(f"{path}/notes/").json()
    for action, body in (("hold", {"reason": "x"}), ("notes", {"text": "x"}), ("extend", {"reason": "x"})):
        assert_problem(auditor.post(f"{path}/{action}/", body, format="json"), 403)
    assert_problem(auditor.post("/api/v1/requests/bulk-decide/", {"decision": "approve", "request_ids": [
        str(verified_request.pk)]}, format="json"), 403)
    assert_problem(APIClient().post(f"{path}/hold/", {"reason": "x"}, format="json"), 401)


def test_bulk_decisions_answer_what_succeeded_and_why_the_rest_failed(submit, legal_user, legal_api):
    first, second, denied = (verified(submit, f"bulk-{n}@mail.example") for n in range(3))
    services.deny_request(request_id=denied.pk, user=legal_user, reason="not ours")
    ids = [str(first.pk), str(second.pk), str(denied.pk)]
    response = legal_api.post("/api/v1/requests/bulk-decide/", {"decision": "approve", "request_ids": ids},
                              format="json")
    assert response.status_code == 200
    outcome = response.json()
    assert sorted(outcome["succeeded"]) == sorted(ids[:2])
    assert [f["id"] for f in outcome["failed"]] == [ids[2]] and "denied" in outcome["failed"][0]["detail"]
    assert {r.status for r in RemovalRequest.objects.filter(pk__in=ids[:2])} == {RequestStatus.APPROVED}


def test_bulk_bad_input_is_a_problem(verified_request, legal_api):
    path, one = "/api/v1/requests/bulk-decide/", [str(verified_request.pk)]
    body = assert_problem(legal_api.post(path, {"decision": "maybe", "request_ids": one}, format="json"), 400)
    assert "choose one of approve, deny" in str(body["errors"]["decision"])
    assert set(assert_problem(legal_api.post(path, {"decision": "approve", "request_ids": []}, format="json"),
                              400)["errors"]) == {"request_ids"}
    assert "needs a reason" in assert_problem(legal_api.post(path, {"decision": "deny", "request_ids": one},
                                                             format="json"), 400, "invalid")["detail"]
    unknown = legal_api.post(path, {"decision": "deny", "reason": "no", "request_ids": ["nope"]}, format="json").json()
    assert unknown["succeeded"] == [] and "no removal request" in unknown["failed"][0]["detail"]
    verified_request.refresh_from_db()
    assert verified_request.status == RequestStatus.IDENTITY_VERIFIED
