"""The most common answer to a removal request: no governed model was trained on the person. It is
a completed outcome with its own signed statement, not a failure."""

import re
import subprocess
from pathlib import Path

import pytest
from django.test import Client

from audits.certificates import signing_identity
from audits.models import CertificateKind
from audits.signing import validate_pdf
from compliance import services
from compliance.models import AuditEvent, RequestStatus
from compliance.portal.views import OWNED
from tests.conftest import governed_rows
from unlearning.models import UnlearningJob

pytestmark = pytest.mark.django_db
NOBODY = "nobody.here@mail.example"


@pytest.fixture
def no_data_request(store, submit, legal_user, django_capture_on_commit_callbacks):
    """A person in no model, approved: scheduling finds nothing and the statement is signed."""
    governed_rows(store, [{"record_id": "ticket-0001", "owner_key": "cy@mail.example", "kind": "ticket",
                           "text": "Ticket from Cy about the router."}])
    request, code = submit(email=NOBODY, full_name="Nobody Here")
    services.verify_identity(request_id=request.pk, code=code)
    with django_capture_on_commit_callbacks(execute=True):  # the pipeline's tasks run in-process here
        services.approve_request(request_id=request.pk, user=legal_user)
    request.refresh_from_db()
    return request


def test_a_person_in_no_model_gets_a_completed_request_and_a_signed_statement(no_data_request, mailoutbox, tmp_path):
    request = no_data_request
    assert request.status == RequestStatus.NO_DATA and request.completed_at and not request.failed_step
    assert not UnlearningJob.objects.filter(requests=request).exists()  # nothing was run
    statement = request.certificate
    assert statement.kind == CertificateKind.NO_DATA and statement.audit_run is None
    pdf = Path(statement.pdf_path)
    check = validate_pdf(pdf.read_bytes(), signing_identity().ca_file.read_bytes())
    assert check.ok and check.subfilter == "/ETSI.CAdES.detached"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Statement: no data held" in text and "support-lm" in text and request.reference in text
    assert NOBODY not in text  # the subject appears as a salted pseudonym only
    event = AuditEvent.objects.get(action="request.no_data", object_id=str(request.pk))
    assert event.data["certificate"] == statement.serial and event.data["pdf_sha256"] == statement.pdf_sha256
    done = mailoutbox[-1]
    assert "none of our models" in done.subject
    assert re.findall(r"https?://\S+", done.body)[:2] == [
        f"http://127.0.0.1:8000/requests/{request.pk}/certificate.pdf", f"http://127.0.0.1:8000/verify/{statement.serial}/"]


def test_the_owner_downloads_the_statement_and_anyone_can_check_it(no_data_request):
    request = no_data_request
    owner = Client()
    session = owner.session
    session[OWNED] = [str(request.pk)]
    session.save()
    page = owner.get(f"/requests/{request.pk}/").content.decode()
    assert "we hold no data about you" in page.lower() and "Failed" not in page
    download = owner.get(f"/requests/{request.pk}/certificate.pdf")
    assert download.status_code == 200 and b"".join(download.streaming_content).startswith(b"%PDF-")
    public = Client().get(f"/verify/{request.certificate.serial}/").content.decode()
    assert "none of the models we govern was trained" in public
    assert Client().get("/verify/", {"serial": request.certificate.serial.lower()}).url == \
        f"/verify/{request.certificate.serial}/"


def test_issuing_the_statement_twice_signs_once(no_data_request):
    from audits.services import issue_no_data_statement

    assert issue_no_data_statement(request_id=no_data_request.pk) == no_data_request.certificate


def test_the_verify_landing_page_says_what_is_wrong_with_a_serial():
    client = Client()
    assert client.get("/verify/").status_code == 200
    unknown = client.get("/verify/", {"serial": "UC-20260101-00000000"})
    assert unknown.status_code == 404 and "we issued nothing under this serial" in unknown.content.decode()
    malformed = client.get("/verify/", {"serial": "hello"})
    assert malformed.status_code == 400 and "a serial looks like" in malformed.content.decode()
