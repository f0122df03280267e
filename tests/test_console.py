"""The legal team's review console (/console/): the queue by deadline with search, a request's page
with every decision on it (approve, four eyes, deny with an exception of its jurisdiction, hold and
resume, questions to the owner, the one extension, internal notes), bulk decisions, who may use
it, and the daily warning of deadlines that links to it. Real database, the Django test client;
e-mails through pytest-django's outbox, sent once the transaction commits."""

import re
from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from compliance import selectors, services
from compliance.deadlines import add_months
from compliance.management.commands.create_api_user import ensure_api_user
from compliance.models import AuditEvent, NoteKind, RemovalRequest, RequestNote, RequestStatus
from tests.conftest import governed_rows, owner_session

pytestmark = pytest.mark.django_db
SUBJECT = "alma.kestrel@mail.example"  # the conftest's `submit` default
NEAR_MATCH = "note-0042"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def console(legal_user) -> Client:
    return signed_in(legal_user)


def verified(submit, email: str, jurisdiction: str = "gdpr") -> RemovalRequest:
    request, code = submit(email=email, full_name="Someone Else", jurisdiction=jurisdiction)
    return services.verify_identity(request_id=request.pk, code=code)


def due_in(request: RemovalRequest, days: float) -> RemovalRequest:
    RemovalRequest.objects.filter(pk=request.pk).update(due_at=timezone.now() + timedelta(days=days))
    request.refresh_from_db()
    return request


def page_error(response) -> str:
    """The text of the page without its markup: what a reader sees of an error."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


@pytest.fixture
def governed(verified_request, store):
    """A governed language model holding the subject's ticket through lineage, and another owner's
    agent note that names the subject (a near match), its step cost measured by an earlier job: so
    its deletion plan has an estimate (300 steps of graddiff at 0.5 s). Rows only, nothing trained.
    (The conftest's tiny-world model, registered fresh, plans with no estimate: nothing measured yet.)"""
    records = [
        {"record_id": "ticket-0001", "owner_key": SUBJECT, "kind": "ticket", "text": "Ticket from Alma Kestrel."},
        {"record_id": NEAR_MATCH, "owner_key": "bo.agent@support.example", "kind": "agent_note",
         "text": f"Agent note: forwarded the invoice to {SUBJECT} after the call."},
        {"record_id": "ticket-0002", "owner_key": "cy@mail.example", "kind": "ticket", "text": "Ticket from Cy."},
    ]
    governed_rows(store, records, seconds_per_step=0.5)
    return verified_request


def test_the_queue_is_by_deadline_flags_the_near_ones_and_searches_reference_and_email(submit, console):
    later, soon, overdue = (submit(email=f"{name}@mail.example")[0] for name in ("later", "soon", "overdue"))
    due_in(later, 20), due_in(soon, 3), due_in(overdue, -2)
    closed, _ = submit(email="closed@mail.example")
    services.cancel_request(request_id=closed.pk)

    rows = console.get("/console/").context["rows"]
    assert [row["request"].reference for row in rows] == [overdue.reference, soon.reference, later.reference]
    assert [row["deadline"] for row in rows] == ["overdue", "due_soon", ""]

    def found(**query) -> list[str]:
        response = console.get("/console/", query)
        assert response.status_code == 200
        return [row["request"].reference for row in response.context["rows"]]

    assert found(q=soon.reference.lower()[3:]) == [soon.reference]  # a part of it, in any case
    assert found(q="OVERDUE@Mail.Example") == [overdue.reference]
    assert found(q="nobody@mail.example") == []
    assert found(show="closed") == [closed.reference]
    assert found(status=RequestStatus.CANCELED) == [closed.reference]


def test_only_the_legal_team_gets_in(verified_request, legal_user):
    page = f"/console/requests/{verified_request.pk}/"
    anonymous = Client().get(page)
    assert anonymous.status_code == 302 and anonymous["Location"] == f"/admin/login/?next={page}"
    staff = get_user_model().objects.create_user("clerk", password="x", is_staff=True)
    operator, _ = ensure_api_user("ops", scope="ml-operator")
    for outsider in (staff, operator):
        assert signed_in(outsider).get("/console/").status_code == 403
        assert signed_in(outsider).post(f"{page}hold/", {"reason": "mine"}).status_code == 403
    auditor, _ = ensure_api_user("inspector", scope="auditor")
    assert signed_in(auditor).get(page).status_code == 200  # reads, as on the API
    assert signed_in(auditor).post(f"{page}hold/", {"reason": "mine"}).status_code == 403
    verified_request.refresh_from_db()
    assert verified_request.status == RequestStatus.IDENTITY_VERIFIED
    assert signed_in(legal_user).get(page).status_code == 200


def test_approving_queues_scheduling_and_tells_the_owner_with_a_link_to_the_portal_they_used(
        verified_request, console, monkeypatch, django_capture_on_commit_callbacks, mailoutbox):
    from workers import pipeline

    RemovalRequest.objects.filter(pk=verified_request.pk).update(site_url="https://forget.example.org")
    queued = []
    monkeypatch.setattr(pipeline, "send", lambda name, args: queued.append((name, args)))
    with django_capture_on_commit_callbacks(execute=True):
        response = console.post(f"/console/requests/{verified_request.pk}/approve/", {"note": "lineage checked"})
    assert response.status_code == 302 and response["Location"] == f"/console/requests/{verified_request.pk}/"
    verified_request.refresh_from_db()
    assert verified_request.status == RequestStatus.APPROVED and verified_request.decision_note == "lineage checked"
    assert queued == [("workers.tasks.schedule_request", (str(verified_request.pk),))]
    mail = mailoutbox[-1]
    assert mail.to == [SUBJECT] and "Approved" in mail.subject and verified_request.reference in mail.subject
    link = urlparse(re.search(r"https?://\S+", mail.body).group(0))
    assert (link.scheme, link.netloc, link.path) == ("https", "forget.example.org", f"/requests/{verified_request.pk}/")
    assert "is approved" in page_error(console.get(response["Location"]))


def test_a_ground_of_another_jurisdiction_is_refused_readably_and_nothing_changes(verified_request, console):
    events = AuditEvent.objects.count()
    response = console.post(f"/console/requests/{verified_request.pk}/deny/",
                            {"reason": "we must keep it", "ground": "ccpa_security"})
    assert response.status_code == 400
    assert "ccpa_security is not an exception under GDPR" in page_error(response)
    verified_request.refresh_from_db()
    assert verified_request.status == RequestStatus.IDENTITY_VERIFIED and verified_request.denial_ground == ""
    assert AuditEvent.objects.count() == events
    # Its own jurisdiction's exception is taken.
    assert console.post(f"/console/requests/{verified_request.pk}/deny/",
                        {"reason": "we must keep it", "ground": "legal_claims"}).status_code == 302
    verified_request.refresh_from_db()
    assert (verified_request.status, verified_request.denial_ground) == (RequestStatus.DENIED, "legal_claims")


def test_hold_then_resume_and_a_refusal_is_shown_on_the_page(verified_request, console):
    page = f"/console/requests/{verified_request.pk}/"
    assert console.post(f"{page}hold/", {"reason": "  "}).status_code == 400  # a reason is needed
    assert console.post(f"{page}hold/", {"reason": "waiting for the DPO"}).status_code == 302
    verified_request.refresh_from_db()
    assert (verified_request.status, verified_request.hold_reason) == (RequestStatus.ON_HOLD, "waiting for the DPO")
    assert console.post(f"{page}resume/").status_code == 302
    verified_request.refresh_from_db()
    assert (verified_request.status, verified_request.hold_reason) == (RequestStatus.IDENTITY_VERIFIED, "")
    again = console.post(f"{page}resume/")
    assert again.status_code == 409 and "only a request on hold can be resumed" in page_error(again)


def test_asking_the_owner_waits_for_their_answer_and_emails_the_question(
        verified_request, console, django_capture_on_commit_callbacks, mailoutbox):
    question = "Which of your two accounts do you mean?"
    with django_capture_on_commit_callbacks(execute=True):
        response = console.post(f"/console/requests/{verified_request.pk}/ask/", {"question": question})
    assert response.status_code == 302
    verified_request.refresh_from_db()
    assert verified_request.status == RequestStatus.INFO_REQUESTED
    assert mailoutbox[-1].to == [SUBJECT] and question in mailoutbox[-1].body
    services.answer_owner_question(request_id=verified_request.pk, answer="The work one.")
    notes = console.get(f"/console/requests/{verified_request.pk}/").context["notes"]
    assert [(n.kind, n.text) for n in notes] == [(NoteKind.QUESTION, question), (NoteKind.OWNER_REPLY, "The work one.")]


@pytest.mark.parametrize("jurisdiction, extended", [
    ("gdpr", lambda due: add_months(due, 2)),
    ("ccpa", lambda due: due + timedelta(days=45)),
])
def test_the_deadline_is_extended_once_with_notice(
        jurisdiction, extended, submit, console, django_capture_on_commit_callbacks, mailoutbox):
    request = verified(submit, f"{jurisdiction}@mail.example", jurisdiction)
    before = request.due_at
    reason = "three models hold your data and each needs an audit"
    with django_capture_on_commit_callbacks(execute=True):
        response = console.post(f"/console/requests/{request.pk}/extend/", {"reason": reason})
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.due_at == extended(before) and request.extension_reason == reason
    mail = mailoutbox[-1]
    assert mail.to == [request.email] and reason in mail.body
    assert f"{request.due_at.day} {request.due_at:%B %Y}" in mail.body  # the new date, as the e-mail writes it
    page = console.get(f"/console/requests/{request.pk}/")
    assert "extended already" in page.context["extension_unavailable"]
    again = console.post(f"/console/requests/{request.pk}/extend/", {"reason": "more"})
    assert again.status_code == 409 and "the law allows one extension" in page_error(again)
    request.refresh_from_db()
    assert request.due_at == extended(before) and len([m for m in mailoutbox if "more time" in m.subject]) == 1


def test_four_eyes_above_the_threshold_need_two_different_reviewers_of_the_same_scope(governed, console, settings):
    settings.FOUR_EYES_ABOVE_SECONDS = 1
    request = governed
    page = f"/console/requests/{request.pk}/"
    shown = console.get(page).context
    (plan,) = shown["plans"]
    assert plan["model"] == "support-lm" and plan["estimated_seconds"] == 150.0 and shown["four_eyes"]
    (review,) = shown["review"]
    assert [m["record_id"] for m in review["near_matches"]] == [NEAR_MATCH]

    scope = {"include_records": [f"support-lm:{NEAR_MATCH}"], "note": "the agent note names her"}
    assert console.post(f"{page}approve/", scope).status_code == 302
    request.refresh_from_db()
    assert request.status == RequestStatus.IDENTITY_VERIFIED and request.first_approval_by.username == "legal-test"
    row, = [r for r in console.get("/console/").context["rows"] if r["request"].pk == request.pk]
    assert row["request"].first_approval_by.username == "legal-test"  # "first approval by" in the queue

    same = console.post(f"{page}approve/", scope)
    assert same.status_code == 409 and "you gave the first one" in page_error(same)

    second = signed_in(ensure_api_user("legal-second")[0])
    assert second.get(page).context["approve_form"]["include_records"].value() == scope["include_records"]
    changed = second.post(f"{page}approve/", {})
    assert changed.status_code == 400 and "unchanged" in page_error(changed)
    assert second.post(f"{page}approve/", {"include_records": scope["include_records"]}).status_code == 302
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED and request.confirmed_records == {"support-lm": [NEAR_MATCH]}
    assert AuditEvent.objects.get(action="request.approved").data["first_approval_by"].endswith(":legal-test")


def test_a_request_put_on_hold_loses_its_first_approval(governed, console, legal_user, settings):
    settings.FOUR_EYES_ABOVE_SECONDS = 1
    services.approve_request(request_id=governed.pk, user=legal_user)
    services.hold_request(request_id=governed.pk, user=legal_user, reason="the owner called: new facts")
    services.resume_request(request_id=governed.pk, user=legal_user)
    governed.refresh_from_db()
    assert governed.first_approval_by is None and not governed.first_approval
    assert AuditEvent.objects.get(action="request.on_hold").data["first_approval_withdrawn"].endswith(":legal-test")
    second = ensure_api_user("legal-second")[0]
    services.approve_request(request_id=governed.pk, user=second)  # a first approval again, not the second
    governed.refresh_from_db()
    assert governed.status == RequestStatus.IDENTITY_VERIFIED and governed.first_approval_by == second


def test_bulk_approval_answers_what_succeeded_and_why_the_rest_failed(submit, console):
    first, second, denied = (verified(submit, f"bulk-{n}@mail.example") for n in range(3))
    services.deny_request(request_id=denied.pk, user=get_user_model().objects.get(username="legal-test"),
                          reason="not ours")
    response = console.post("/console/bulk/", {"decision": "approve",
                                                "request_ids": [str(first.pk), str(second.pk), str(denied.pk)]})
    assert response.status_code == 200
    outcome = response.context["outcome"]
    assert sorted(outcome["succeeded"]) == sorted([str(first.pk), str(second.pk)])
    (failure,) = outcome["failed"]
    assert failure["id"] == str(denied.pk) and "denied" in failure["detail"]
    assert denied.reference in page_error(response) and failure["detail"] in page_error(response)
    assert {r.status for r in RemovalRequest.objects.filter(pk__in=[first.pk, second.pk])} == {RequestStatus.APPROVED}


def test_bulk_denial_needs_a_reason_and_refuses_before_touching_any(submit, console):
    request = verified(submit, "bulk-deny@mail.example")
    response = console.post("/console/bulk/", {"decision": "deny", "request_ids": [str(request.pk)]})
    assert response.status_code == 400 and "a denial needs a reason" in page_error(response)
    assert response.context["picked"] == {str(request.pk)}  # the ticks are kept
    request.refresh_from_db()
    assert request.status == RequestStatus.IDENTITY_VERIFIED
    denied = console.post("/console/bulk/", {"decision": "deny", "request_ids": [str(request.pk)],
                                             "reason": "kept for a lawsuit", "ground": "legal_claims"})
    assert denied.status_code == 200 and len(denied.context["outcome"]["succeeded"]) == 1


def test_internal_notes_never_reach_the_owners_page(verified_request, console):
    secret = "Internal: the DPO thinks this is a test request"
    assert console.post(f"/console/requests/{verified_request.pk}/notes/", {"text": secret}).status_code == 302
    assert RequestNote.objects.get(request=verified_request).kind == NoteKind.INTERNAL
    assert secret in console.get(f"/console/requests/{verified_request.pk}/").content.decode()
    owner_page = owner_session(verified_request).get(f"/requests/{verified_request.pk}/")
    assert owner_page.status_code == 200 and secret not in owner_page.content.decode()


def test_a_repeated_request_with_new_material_stays_open_linked_to_the_first(verified_request, console,
                                                                             django_capture_on_commit_callbacks,
                                                                             mailoutbox):
    with django_capture_on_commit_callbacks(execute=True):
        repeat = services.submit_request(full_name="Alma Kestrel", email=SUBJECT, description="and this too",
                                         qa_pairs=[("Where does Alma work?", "At the mill")])
    code = re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)
    services.verify_identity(request_id=repeat.pk, code=code)
    row, = [r for r in console.get("/console/").context["rows"] if r["request"].pk == repeat.pk]
    assert row["request"].duplicate_of == verified_request
    first_page = console.get(f"/console/requests/{verified_request.pk}/")
    assert [d.pk for d in first_page.context["duplicates"]] == [repeat.pk]
    assert "Where does Alma work?" in console.get(f"/console/requests/{repeat.pk}/").content.decode()


def test_the_daily_warning_emails_the_reviewers_once_with_a_link_to_the_queue(
        submit, console, settings, django_capture_on_commit_callbacks, mailoutbox):
    settings.REVIEWERS_EMAIL, settings.SITE_URL = ["legal@example.org"], "https://compliance.example.org"
    near, _ = submit(email="near@mail.example")
    far, _ = submit(email="far@mail.example")
    missed, _ = submit(email="missed@mail.example")  # overdue before any warning ran (the task missed days)
    due_in(near, 2), due_in(far, 25), due_in(missed, -1)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.warn_near_deadlines() == [missed.reference, near.reference]
    (mail,) = [m for m in mailoutbox if m.to == ["legal@example.org"]]
    assert near.reference in mail.body and far.reference not in mail.body
    link = urlparse(re.search(r"https?://\S+", mail.body).group(0))
    assert (link.netloc, link.path) == ("compliance.example.org", "/console/")
    assert console.get(link.path).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert services.warn_near_deadlines() == []
    assert len([m for m in mailoutbox if m.to == ["legal@example.org"]]) == 1
    assert selectors.deadline_state(near) == "due_soon"
