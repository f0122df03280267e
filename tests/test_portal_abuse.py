"""Anonymous traffic on the public pages is limited per client address: submissions, code checks,
code sends, the verify page's comparisons and the admin login answer 429 with Retry-After once a
client's share is spent, with the reason on the page and nothing stored. Proving ownership gives a
new session id; signing out forgets what the session proved."""

import re

import pytest
from django.test import Client

from compliance.models import AuditEvent, IdentityChallenge, RemovalRequest

pytestmark = pytest.mark.django_db
FORM = {"full_name": "Alma Kestrel", "email": "alma.kestrel@mail.example", "description": "my biography",
        "jurisdiction": "gdpr", "confirm": "on"}


def from_address(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


def file_request(client, mailoutbox, capture, email="alma.kestrel@mail.example"):
    with capture(execute=True):
        response = client.post("/", {**FORM, "email": email})
    assert response.status_code == 302, response.content.decode()[:500]
    return RemovalRequest.objects.get(pk=response["Location"].split("/")[2]), re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)


def assert_limited(response, phrase: str):
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert phrase in response.content.decode()


def test_one_client_files_a_bounded_number_of_requests(settings, mailoutbox, django_capture_on_commit_callbacks):
    settings.PORTAL_SUBMISSIONS_PER_CLIENT_PER_HOUR = 3
    flooder = from_address("203.0.113.7")
    for number in range(3):
        file_request(flooder, mailoutbox, django_capture_on_commit_callbacks, email=f"person{number}@mail.example")
    with django_capture_on_commit_callbacks(execute=True):
        refused = flooder.post("/", {**FORM, "email": "person9@mail.example"})
    assert_limited(refused, "too many attempts from your network")
    assert RemovalRequest.objects.count() == 3 and len(mailoutbox) == 3
    file_request(from_address("198.51.100.2"), mailoutbox, django_capture_on_commit_callbacks)  # another client may


def test_the_same_address_filing_again_and_again_gets_a_clear_429(settings, mailoutbox, django_capture_on_commit_callbacks):
    settings.REQUESTS_PER_EMAIL_PER_DAY = 1
    file_request(from_address("203.0.113.7"), mailoutbox, django_capture_on_commit_callbacks)
    refused = from_address("198.51.100.2").post("/", FORM)
    assert_limited(refused, "filed as many requests as it may today")
    assert RemovalRequest.objects.count() == 1


def test_code_checks_are_limited_per_client_across_requests(settings, mailoutbox, django_capture_on_commit_callbacks):
    settings.CODE_CHECKS_PER_CLIENT_PER_HOUR = 3
    owner = from_address("198.51.100.2")
    first, _ = file_request(owner, mailoutbox, django_capture_on_commit_callbacks)
    second, code = file_request(owner, mailoutbox, django_capture_on_commit_callbacks, email="bram@mail.example")
    guesser = from_address("203.0.113.7")
    for request in (first, second, first):
        assert guesser.post(f"/requests/{request.pk}/verify/", {"code": "000000"}).status_code == 200
    assert_limited(guesser.post(f"/requests/{second.pk}/verify/", {"code": code}), "too many attempts")
    assert IdentityChallenge.objects.get(request=second).used_at is None  # the right code, unchecked
    assert owner.post(f"/requests/{second.pk}/verify/", {"code": code}).status_code == 302


def test_code_sends_are_limited_per_client(settings, mailoutbox, django_capture_on_commit_callbacks):
    settings.CODE_SENDS_PER_CLIENT_PER_HOUR = 2
    request, _ = file_request(from_address("198.51.100.2"), mailoutbox, django_capture_on_commit_callbacks)
    sender = from_address("203.0.113.7")
    with django_capture_on_commit_callbacks(execute=True):
        assert sender.post(f"/requests/{request.pk}/resend/").status_code == 302
        assert sender.post("/access/", {"reference": request.reference, "email": request.email}).status_code == 302
        refused = sender.post(f"/requests/{request.pk}/resend/")
        assert_limited(refused, "too many attempts")
        assert_limited(sender.post("/access/", {"reference": request.reference, "email": request.email}), "too many attempts")
    assert IdentityChallenge.objects.filter(request=request).count() == 3 and len(mailoutbox) == 3


def test_a_request_out_of_codes_says_so_on_the_page(settings, mailoutbox, django_capture_on_commit_callbacks):
    settings.IDENTITY_CODES_PER_REQUEST = 1
    request, _ = file_request(from_address("198.51.100.2"), mailoutbox, django_capture_on_commit_callbacks)
    refused = from_address("198.51.100.2").post(f"/requests/{request.pk}/resend/")
    assert refused.status_code == 429 and "all the codes it may have" in refused.content.decode()
    assert "Retry-After" not in refused  # waiting does not help


def test_proving_ownership_gives_a_new_session_and_signing_out_forgets_it(mailoutbox, django_capture_on_commit_callbacks):
    owner = from_address("198.51.100.2")
    request, code = file_request(owner, mailoutbox, django_capture_on_commit_callbacks)
    before = owner.session.session_key
    owner.post(f"/requests/{request.pk}/verify/", {"code": code})
    assert owner.session.session_key != before
    page = owner.get(f"/requests/{request.pk}/")
    assert page.status_code == 200 and "Sign out" in page.content.decode()
    assert owner.get("/requests/{}/sign-out/".format(request.pk)).status_code == 404  # no such page
    assert owner.get("/sign-out/").status_code == 405  # only a POST signs out (a link cannot be forged into it)
    assert owner.post("/sign-out/").status_code == 302
    assert owner.get(f"/requests/{request.pk}/").status_code == 404


def test_the_admin_login_is_limited_per_client(settings, django_user_model):
    settings.ADMIN_LOGINS_PER_CLIENT_PER_HOUR = 2
    django_user_model.objects.create_superuser("root", "root@example.org", "a long passphrase here")
    guesser = from_address("203.0.113.7")
    for guess in ("one", "two"):
        assert guesser.post("/admin/login/", {"username": "root", "password": guess}).status_code == 200
    assert_limited(guesser.post("/admin/login/", {"username": "root", "password": "a long passphrase here"}),
                   "too many attempts")
    admin = from_address("198.51.100.2")
    assert admin.post("/admin/login/?next=/admin/", {"username": "root", "password": "a long passphrase here"}).status_code == 302


def test_failed_code_events_stay_bounded_under_a_flood(settings, mailoutbox, django_capture_on_commit_callbacks):
    request, code = file_request(from_address("198.51.100.2"), mailoutbox, django_capture_on_commit_callbacks)
    flooders = [from_address(f"203.0.113.{n}") for n in range(1, 11)]
    for flooder in flooders:
        for _ in range(5):
            flooder.post(f"/requests/{request.pk}/verify/", {"code": "000000" if code != "000000" else "111111"})
    assert AuditEvent.objects.filter(action="identity.failed_attempt").count() == settings.IDENTITY_CODE_MAX_ATTEMPTS


@pytest.fixture
def issued(audited_request, store):
    """A certificate row for the audited request (the verify page compares uploads with its hash)."""
    import hashlib

    from audits.models import Certificate

    request, _, run = audited_request
    pdf = b"%PDF-1.7\n% the issued certificate\n%%EOF\n"
    return Certificate.objects.create(serial="UC-ABUSE-1", request=request, audit_run=run, pdf_path="/nowhere.pdf",
                                      pdf_sha256=hashlib.sha256(pdf).hexdigest(), signer_subject="CN=test",
                                      signer_fingerprint="00" * 32, audit_event_seq=1, audit_event_hash="00" * 32), pdf


def upload(client, serial, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(f"/verify/{serial}/", {"pdf": SimpleUploadedFile("certificate.pdf", content)})


def test_the_verify_page_compares_a_pdf_and_refuses_anything_else(issued, settings):
    certificate, pdf = issued
    visitor = from_address("203.0.113.7")
    assert "exactly this document" in upload(visitor, certificate.serial, pdf).content.decode()
    assert "is not this document" in upload(visitor, certificate.serial, pdf + b" ").content.decode()
    not_pdf = upload(visitor, certificate.serial, b"GIF89a")
    assert not_pdf.status_code == 400 and "not a PDF" in not_pdf.content.decode()
    nothing = visitor.post(f"/verify/{certificate.serial}/")
    assert nothing.status_code == 400 and "choose the certificate" in nothing.content.decode()
    settings.CERTIFICATE_UPLOAD_MAX_BYTES = 1024
    too_large = upload(visitor, certificate.serial, b"%PDF-" + b"x" * 200_000)
    assert too_large.status_code == 413 and "too large" in too_large.content.decode()
    assert visitor.put(f"/verify/{certificate.serial}/").status_code == 405
    assert visitor.delete(f"/verify/{certificate.serial}/").status_code == 405


def test_the_verify_page_limits_comparisons_per_client(issued, settings):
    certificate, pdf = issued
    settings.CERTIFICATE_CHECKS_PER_CLIENT_PER_HOUR = 2
    visitor = from_address("203.0.113.7")
    for _ in range(2):
        assert upload(visitor, certificate.serial, pdf).status_code == 200
    assert_limited(upload(visitor, certificate.serial, pdf), "too many attempts")
    assert visitor.get(f"/verify/{certificate.serial}/").status_code == 200  # reading it stays open
