"""The request lifecycle's service functions: transitions, identity codes, and their audit events."""

from datetime import timedelta

import pytest
from django.utils import timezone

from compliance import services
from compliance.auditlog import verify_chain
from compliance.deadlines import add_months
from compliance.errors import IdentityCodeRejected, ServiceError, TransitionNotAllowed
from compliance.models import AuditEvent, IdentityChallenge, RemovalRequest, RequestStatus

pytestmark = pytest.mark.django_db


def test_submitting_records_the_deadline_emails_a_code_and_stores_only_its_hash(submit, mailoutbox):
    request, code = submit()
    assert request.status == RequestStatus.SUBMITTED
    assert request.due_at == add_months(request.received_at, 1)  # GDPR Art. 12(3): one month
    assert mailoutbox[-1].to == ["alma.kestrel@mail.example"] and request.reference in mailoutbox[-1].subject
    challenge = IdentityChallenge.objects.get(request=request)
    assert code not in challenge.code_hash and len(challenge.code_hash) == 64
    assert AuditEvent.objects.filter(action="request.submitted", object_id=str(request.pk)).exists()


@pytest.mark.parametrize("received, due", [
    ((2026, 1, 31), (2026, 2, 28)), ((2028, 1, 31), (2028, 2, 29)), ((2026, 12, 15), (2027, 1, 15)),
])
def test_a_month_is_a_calendar_month_clamped_to_its_last_day(received, due):
    from datetime import datetime

    assert add_months(datetime(*received, 9, 30), 1) == datetime(*due, 9, 30)


def test_ccpa_requests_are_due_in_45_days(submit):
    request, _ = submit(jurisdiction="ccpa")
    assert request.due_at - request.received_at == timedelta(days=45)


def test_the_right_code_verifies_identity_and_binds_the_subject_key(submit):
    request, code = submit(email="Alma.Kestrel@Mail.Example")
    request = services.verify_identity(request_id=request.pk, code=code)
    assert request.status == RequestStatus.IDENTITY_VERIFIED
    assert request.subject_key == "alma.kestrel@mail.example" and request.identity_verified_at


def test_a_wrong_code_is_counted_logged_and_changes_nothing_else(submit):
    request, code = submit()
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(IdentityCodeRejected, match="not correct"):
        services.verify_identity(request_id=request.pk, code=wrong)
    request.refresh_from_db()
    assert request.status == RequestStatus.SUBMITTED
    assert IdentityChallenge.objects.get(request=request).attempts == 1
    assert AuditEvent.objects.filter(action="identity.failed_attempt").count() == 1


def test_an_expired_code_is_refused(submit):
    request, code = submit()
    IdentityChallenge.objects.filter(request=request).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(IdentityCodeRejected, match="expired"):
        services.verify_identity(request_id=request.pk, code=code)


def test_after_too_many_attempts_even_the_right_code_is_refused(submit, settings):
    request, code = submit()
    for _ in range(settings.IDENTITY_CODE_MAX_ATTEMPTS):
        with pytest.raises(IdentityCodeRejected):
            services.verify_identity(request_id=request.pk, code="999999" if code != "999999" else "888888")
    with pytest.raises(IdentityCodeRejected, match="too many"):
        services.verify_identity(request_id=request.pk, code=code)


def test_a_new_code_replaces_the_old_one(submit, django_capture_on_commit_callbacks, mailoutbox):
    request, old_code = submit()
    with django_capture_on_commit_callbacks(execute=True):
        services.resend_identity_code(request_id=request.pk)
    new_code = mailoutbox[-1].body.split(" is ")[1][:6]
    if new_code != old_code:
        with pytest.raises(IdentityCodeRejected):
            services.verify_identity(request_id=request.pk, code=old_code)
    assert services.verify_identity(request_id=request.pk, code=new_code).status == RequestStatus.IDENTITY_VERIFIED


def test_an_unverified_request_cannot_be_approved(submit, legal_user):
    request, _ = submit()
    events = AuditEvent.objects.count()
    with pytest.raises(TransitionNotAllowed, match="identity is verified"):
        services.approve_request(request_id=request.pk, user=legal_user)
    request.refresh_from_db()
    assert request.status == RequestStatus.SUBMITTED and AuditEvent.objects.count() == events


def test_approval_records_who_and_queues_scheduling_and_the_notice_after_commit(
        verified_request, legal_user, django_capture_on_commit_callbacks, mailoutbox):
    sent = len(mailoutbox)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        request = services.approve_request(request_id=verified_request.pk, user=legal_user, note="ok")
    assert request.status == RequestStatus.APPROVED and request.decided_by == legal_user
    assert len(callbacks) == 2 and len(mailoutbox) == sent  # the owner's e-mail and the scheduling task: after commit
    event = AuditEvent.objects.get(action="request.approved")
    assert event.actor.startswith(f"user:{legal_user.pk}:") and event.data["from"] == RequestStatus.IDENTITY_VERIFIED


def test_a_second_approval_is_refused(verified_request, legal_user):
    services.approve_request(request_id=verified_request.pk, user=legal_user)
    with pytest.raises(TransitionNotAllowed):
        services.approve_request(request_id=verified_request.pk, user=legal_user)


def test_a_denial_needs_a_reason_and_may_cite_an_exception(verified_request, legal_user):
    with pytest.raises(ServiceError, match="reason"):
        services.deny_request(request_id=verified_request.pk, user=legal_user, reason="  ")
    with pytest.raises(ServiceError, match="ground"):
        services.deny_request(request_id=verified_request.pk, user=legal_user, reason="x", ground="whim")
    request = services.deny_request(request_id=verified_request.pk, user=legal_user, reason="archive", ground="archiving_research")
    assert request.status == RequestStatus.DENIED and request.denial_ground == "archiving_research"


def test_the_owner_can_cancel_before_approval_but_not_after(verified_request, legal_user, submit):
    other, _ = submit(email="bram@mail.example")
    assert services.cancel_request(request_id=other.pk).status == RequestStatus.CANCELED
    services.approve_request(request_id=verified_request.pk, user=legal_user)
    with pytest.raises(TransitionNotAllowed):
        services.cancel_request(request_id=verified_request.pk)


def test_every_change_above_left_an_intact_chain(verified_request, legal_user):
    services.approve_request(request_id=verified_request.pk, user=legal_user)
    check = verify_chain()
    assert check.ok and check.events >= 3
    assert not any("alma" in str(event.data).lower() for event in AuditEvent.objects.all())  # pseudonyms only


def test_codes_per_request_are_capped_per_hour(submit, settings):
    from compliance.errors import TooManyCodes

    request, _ = submit()
    for _ in range(settings.IDENTITY_CODES_PER_HOUR - 1):
        services.resend_identity_code(request_id=request.pk)
    with pytest.raises(TooManyCodes):
        services.resend_identity_code(request_id=request.pk)
    assert IdentityChallenge.objects.filter(request=request).count() == settings.IDENTITY_CODES_PER_HOUR


def test_attempts_without_a_live_code_are_refused_and_never_logged(submit, settings):
    """After the lockout, after expiry, or with no code sent, an attempt changes nothing: nothing is
    written to the audit log, so no one can flood it (or an owner's history) with attempts."""
    request, code = submit()
    wrong = "999999" if code != "999999" else "888888"
    for _ in range(settings.IDENTITY_CODE_MAX_ATTEMPTS):
        with pytest.raises(IdentityCodeRejected, match="not correct"):
            services.verify_identity(request_id=request.pk, code=wrong)
    logged = AuditEvent.objects.filter(action="identity.failed_attempt").count()
    assert logged == settings.IDENTITY_CODE_MAX_ATTEMPTS
    for _ in range(20):
        with pytest.raises(IdentityCodeRejected, match="too many wrong attempts"):
            services.verify_identity(request_id=request.pk, code=wrong)
    IdentityChallenge.objects.filter(request=request).update(used_at=timezone.now())
    with pytest.raises(IdentityCodeRejected, match="no active code"):
        services.verify_identity(request_id=request.pk, code=code)
    assert AuditEvent.objects.filter(action="identity.failed_attempt").count() == logged


def test_a_request_has_a_lifetime_cap_on_codes(submit, settings):
    from compliance.errors import TooManyCodes

    settings.IDENTITY_CODES_PER_REQUEST, settings.IDENTITY_CODES_PER_HOUR = 3, 100
    request, _ = submit()
    IdentityChallenge.objects.filter(request=request).update(created_at=timezone.now() - timedelta(days=400))
    for _ in range(2):
        services.resend_identity_code(request_id=request.pk)
    with pytest.raises(TooManyCodes, match="all the codes it may have") as refused:
        services.resend_identity_code(request_id=request.pk)
    assert refused.value.status == 429 and refused.value.retry_after is None  # waiting does not help
    assert IdentityChallenge.objects.filter(request=request).count() == 3


def test_one_address_gets_a_bounded_number_of_codes_and_requests(submit, settings):
    """Filing many requests in someone's name neither floods their mailbox nor the request table."""
    from compliance.errors import TooManyCodes, TooManyRequests

    settings.REQUESTS_PER_EMAIL_PER_DAY, settings.IDENTITY_CODES_PER_EMAIL_PER_HOUR = 3, 4
    first, _ = submit()
    submit()
    services.resend_identity_code(request_id=first.pk)
    submit()  # the fourth code to this address in the hour
    with pytest.raises(TooManyCodes, match="this e-mail address"):
        services.resend_identity_code(request_id=first.pk)
    with pytest.raises(TooManyRequests, match="filed as many requests as it may today") as refused:
        submit(email="ALMA.KESTREL@mail.example")  # the same address, however it is written
    assert refused.value.retry_after == 24 * 3600
    assert RemovalRequest.objects.count() == 3
    assert IdentityChallenge.objects.filter(request__email="alma.kestrel@mail.example").count() == 4
    submit(email="bram@mail.example")  # another address is not affected
