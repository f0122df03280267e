"""Every e-mail the request lifecycle sends its owner: what each says, and that its links point at
the portal the owner filed at (a trusted origin), else at SITE_URL, never at a forged host. The
reviewers' console sends the rest (question, extension, deadline warnings: tests/test_console.py)."""

import re

import pytest
from django.test import Client

from compliance import services
from compliance.models import AuditEvent, DenialGround, RemovalRequest, RequestStatus

pytestmark = pytest.mark.django_db
LINK = re.compile(r"https?://[^\s)]+")
FORM = {"full_name": "Alma Kestrel", "email": "alma.kestrel@mail.example", "description": "my biography",
        "jurisdiction": "gdpr", "confirm": "on"}


def links(message) -> list[str]:
    return LINK.findall(message.body)


def file_on(host: str, django_capture_on_commit_callbacks, **form) -> RemovalRequest:
    with django_capture_on_commit_callbacks(execute=True):
        response = Client(HTTP_HOST=host).post("/", {**FORM, **form})
    assert response.status_code == 302
    return RemovalRequest.objects.get(email=form.get("email", FORM["email"]))


@pytest.fixture
def trusted_portal(settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "portal.example", "forged.example"]
    settings.CSRF_TRUSTED_ORIGINS = ["http://portal.example:8443"]
    settings.SITE_URL = "https://privacy.example"
    return "http://portal.example:8443"


def test_the_receipt_carries_the_reference_deadline_and_code_and_links_to_the_portal_filed_at(
        trusted_portal, mailoutbox, django_capture_on_commit_callbacks):
    request = file_on("portal.example:8443", django_capture_on_commit_callbacks)
    receipt = mailoutbox[-1]
    assert receipt.to == [request.email] and request.reference in receipt.subject and "received" in receipt.subject
    assert re.search(r"\b\d{6}\b", receipt.body) and f"{request.due_at:%Y}" in receipt.body
    assert links(receipt) == [f"{trusted_portal}/requests/{request.pk}/verify/"]
    assert request.site_url == trusted_portal


def test_a_host_the_operator_does_not_vouch_for_gets_the_site_url_instead(
        trusted_portal, mailoutbox, django_capture_on_commit_callbacks):
    request = file_on("forged.example", django_capture_on_commit_callbacks)
    assert links(mailoutbox[-1]) == [f"https://privacy.example/requests/{request.pk}/verify/"]


def test_a_new_code_and_the_confirmation_link_to_the_portal_filed_at(
        trusted_portal, mailoutbox, django_capture_on_commit_callbacks):
    request = file_on("portal.example:8443", django_capture_on_commit_callbacks)
    code = re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)
    status_page = f"{trusted_portal}/requests/{request.pk}/"
    with django_capture_on_commit_callbacks(execute=True):
        services.resend_identity_code(request_id=request.pk)
    resent = mailoutbox[-1]
    assert "code" in resent.subject and links(resent) == [f"{status_page}verify/"]
    code = re.search(r"\b(\d{6})\b", resent.body).group(1)
    with django_capture_on_commit_callbacks(execute=True):
        services.verify_identity(request_id=request.pk, code=code)
    verified = mailoutbox[-1]
    assert "confirmed" in verified.subject and links(verified) == [status_page]
    assert AuditEvent.objects.filter(action="request.identity_verified", data__notified="verified").exists()


def test_approval_tells_the_owner_what_happens_next(verified_request, legal_user, mailoutbox,
                                                     django_capture_on_commit_callbacks, settings):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # the pipeline's task is not run here
        services.approve_request(request_id=verified_request.pk, user=legal_user)
    [notice] = [callback for callback in callbacks if callback.__qualname__.startswith("send_after_commit")]
    notice()
    assert AuditEvent.objects.filter(action="request.approved", data__notified="approved").exists()
    approved = mailoutbox[-1]
    assert "Approved" in approved.subject and "certificate" in approved.body
    assert links(approved) == [f"{settings.SITE_URL}/requests/{verified_request.pk}/"]


@pytest.mark.parametrize("jurisdiction, authority", [
    ("gdpr", "supervisory authority"), ("ccpa", "California Privacy Protection Agency")])
def test_a_denial_gives_the_reason_the_ground_and_the_right_to_complain(
        submit, legal_user, mailoutbox, django_capture_on_commit_callbacks, jurisdiction, authority):
    request, code = submit(jurisdiction=jurisdiction)
    services.verify_identity(request_id=request.pk, code=code)
    ground = DenialGround.LEGAL_CLAIMS if jurisdiction == "gdpr" else DenialGround.CCPA_LEGAL_OBLIGATION
    with django_capture_on_commit_callbacks(execute=True):
        services.deny_request(request_id=request.pk, user=legal_user, reason="We must keep it for a pending lawsuit.",
                              ground=ground)
    denied = mailoutbox[-1]
    assert "denied" in denied.subject and "pending lawsuit" in denied.body
    assert ground.label in denied.body and authority in denied.body


def test_a_ground_of_the_other_law_is_refused_and_changes_nothing(verified_request, legal_user):
    from compliance.errors import ServiceError

    with pytest.raises(ServiceError, match="not an exception under GDPR"):
        services.deny_request(request_id=verified_request.pk, user=legal_user, reason="no",
                              ground=DenialGround.CCPA_SECURITY)
    verified_request.refresh_from_db()
    assert verified_request.status == RequestStatus.IDENTITY_VERIFIED


def test_cancellation_is_confirmed(verified_request, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.cancel_request(request_id=verified_request.pk)
    assert "canceled" in mailoutbox[-1].subject and verified_request.reference in mailoutbox[-1].body


def test_a_failure_is_told_in_plain_words_without_the_technical_reason(
        submit, mailoutbox, django_capture_on_commit_callbacks):
    request, _ = submit()
    RemovalRequest.objects.filter(pk=request.pk).update(status=RequestStatus.UNLEARNING)
    with django_capture_on_commit_callbacks(execute=True):
        with services.transaction.atomic():
            locked = services.lock_request(request.pk)
            services.fail(locked, step="unlearning", reason="RuntimeError: CUDA out of memory at step 41")
    failed = mailoutbox[-1]
    assert "problem" in failed.subject and "did not succeed" in failed.body
    assert "CUDA" not in failed.body and "RuntimeError" not in failed.body and "complain" in failed.body


def test_the_certified_owner_gets_the_result_in_a_sentence_and_the_certificate_links(
        audited_request, store, mailoutbox, settings, django_capture_on_commit_callbacks):
    from audits.services import issue_certificate

    request, _, _ = audited_request
    RemovalRequest.objects.filter(pk=request.pk).update(status=RequestStatus.AUDITING)
    with django_capture_on_commit_callbacks(execute=True):
        certificate = issue_certificate(request_id=request.pk)
    done = mailoutbox[-1]
    assert "Done" in done.subject and request.reference in done.subject
    from compliance.selectors import request_result

    assert request_result(request)["headline"] in " ".join(done.body.split())  # the owner page's sentence
    assert links(done) == [f"{settings.SITE_URL}/requests/{request.pk}/certificate.pdf",
                           f"{settings.SITE_URL}/verify/{certificate.serial}/",
                           f"{settings.SITE_URL}/requests/{request.pk}/"]


def test_a_repeat_request_of_the_same_person_is_closed_as_a_duplicate_and_points_to_the_open_one(
        submit, mailoutbox, django_capture_on_commit_callbacks, settings):
    first, code = submit()
    services.verify_identity(request_id=first.pk, code=code)
    second, code = submit()
    with django_capture_on_commit_callbacks(execute=True):
        services.verify_identity(request_id=second.pk, code=code)
    second.refresh_from_db()
    assert second.status == RequestStatus.DUPLICATE and second.duplicate_of == first
    duplicate = mailoutbox[-1]
    assert first.reference in duplicate.subject and links(duplicate) == [f"{settings.SITE_URL}/requests/{first.pk}/"]
    assert AuditEvent.objects.filter(action="request.duplicate", data__duplicate_of=first.reference).exists()


def test_a_repeat_with_new_material_stays_open_linked_for_the_reviewer(
        submit, mailoutbox, django_capture_on_commit_callbacks):
    first, code = submit()
    services.verify_identity(request_id=first.pk, code=code)
    with django_capture_on_commit_callbacks(execute=True):
        second = services.submit_request(full_name="Alma Kestrel", email=first.email, description="this too",
                                         qa_pairs=[("Where does Alma Kestrel work?", "Acme")])
    code = re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)
    second = services.verify_identity(request_id=second.pk, code=code)
    assert second.status == RequestStatus.IDENTITY_VERIFIED and second.duplicate_of == first


def test_verifying_a_duplicate_on_the_portal_leads_to_the_open_request(submit, mailoutbox):
    first, code = submit()
    services.verify_identity(request_id=first.pk, code=code)
    second, code = submit()
    client = Client()
    response = client.post(f"/requests/{second.pk}/verify/", {"code": code}, follow=True)
    assert response.redirect_chain[-1][0] == f"/requests/{first.pk}/"
    assert first.reference in response.content.decode()


def test_the_owner_answers_a_question_on_the_portal_and_the_request_is_back_in_review(
        verified_request, legal_user, mailoutbox, django_capture_on_commit_callbacks, settings):
    from compliance.models import NoteKind
    from tests.conftest import owner_session

    with django_capture_on_commit_callbacks(execute=True):
        services.ask_owner(request_id=verified_request.pk, user=legal_user, question="Which city did you live in?")
    asked = mailoutbox[-1]
    assert "more information" in asked.subject and "Which city did you live in?" in asked.body
    assert links(asked)[0] == f"{settings.SITE_URL}/requests/{verified_request.pk}/"
    owner = owner_session(verified_request)
    assert owner.post(f"/requests/{verified_request.pk}/answer/", {"answer": " "}).status_code == 302  # refused
    verified_request.refresh_from_db()
    assert verified_request.status == RequestStatus.INFO_REQUESTED
    owner.post(f"/requests/{verified_request.pk}/answer/", {"answer": "Ghent, until 2019."})
    verified_request.refresh_from_db()
    assert verified_request.status == RequestStatus.IDENTITY_VERIFIED and not verified_request.hold_reason
    assert [(note.kind, note.text) for note in verified_request.notes.all()] == [
        (NoteKind.QUESTION, "Which city did you live in?"), (NoteKind.OWNER_REPLY, "Ghent, until 2019.")]
