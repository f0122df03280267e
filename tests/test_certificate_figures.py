"""The certificate's "Figures" page: the lead ROC curves and histogram, in a PDF whose signature still validates."""

import subprocess
from pathlib import Path

import pytest

from audits.certificates import certificate_content, signing_identity
from audits.services import issue_certificate
from audits.signing import validate_pdf
from compliance.models import AuditEvent, RemovalRequest, RequestStatus

pytestmark = pytest.mark.django_db
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_content_carries_the_lead_figures_as_png(audited_request):
    request, _, run = audited_request
    content = certificate_content(request=request, runs=[run], serial="UC-TEST", head=AuditEvent.objects.order_by("-seq").first())
    assert [figure.png.startswith(PNG_SIGNATURE) for figure in content.figures] == [True, True]
    assert "MIA AUC, LOSS" in content.figures[0].caption
    assert [line.interval for line in content.audits][-1] == (None, None)  # the not-applicable audit


def test_the_signed_certificate_ends_with_a_figures_page(audited_request, settings, tmp_path):
    request, _, _ = audited_request
    settings.VAR_DIR, settings.SIGNING_DIR = tmp_path, tmp_path / "signing"
    RemovalRequest.objects.filter(pk=request.pk).update(status=RequestStatus.AUDITING)
    certificate = issue_certificate(request_id=request.pk)
    pdf = Path(certificate.pdf_path).read_bytes()
    check = validate_pdf(pdf, signing_identity().ca_file.read_bytes())
    assert check.intact and check.valid and check.trusted
    text = subprocess.run(["pdftotext", "-layout", certificate.pdf_path, "-"], capture_output=True, text=True, check=True).stdout
    pages = text.split("\f")[:-1]  # pdftotext ends every page with a form feed
    assert pages[-1].lstrip().startswith("Figures") and "dashed diagonal" in pages[-1]
    listing = subprocess.run(["pdfimages", "-list", certificate.pdf_path], capture_output=True, text=True, check=True).stdout
    image_pages = [int(row.split()[0]) for row in listing.splitlines()[2:] if row.split()[2] == "image"]
    assert image_pages.count(len(pages)) == 2  # the ROC curves and the histogram, on the last page
