"""Public certificate verification: anyone holding a certificate can check it here."""

import re

from django.conf import settings
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from audits.certificates import signing_identity
from audits.models import Certificate
from audits.selectors import request_verdict
from audits.signing import sha256_hex
from compliance import throttles
from compliance.errors import TooManyRequests


SERIAL = re.compile(r"UC-\d{8}-[0-9A-F]{8}")


@require_http_methods(["GET"])
def verify_landing(http_request):
    """Type a serial, see its page; a serial we never issued is said so, with the form again."""
    serial = http_request.GET.get("serial", "").strip().upper()
    problem, status = "", 200
    if serial:
        if Certificate.objects.filter(serial=serial).exists():
            return redirect("verify-certificate", serial=serial)
        problem = ("we issued nothing under this serial: check it against the top of the certificate's pages"
                   if SERIAL.fullmatch(serial) else "a serial looks like UC-20261201-1A2B3C4D")
        status = 404 if SERIAL.fullmatch(serial) else 400
    return render(http_request, "verify/landing.html", {"serial": serial, "problem": problem}, status=status)


@require_http_methods(["GET", "POST"])
def verify_certificate(http_request, serial):
    certificate = Certificate.objects.select_related("request", "audit_run__job__asset").filter(serial=serial).first()
    if certificate is None:
        raise Http404
    uploaded_match, problem, status, retry_after = None, "", 200, None
    if http_request.method == "POST":
        try:
            throttles.spend(throttles.CERTIFICATE_CHECKS, http_request)
            uploaded_match = sha256_hex(uploaded_pdf(http_request)) == certificate.pdf_sha256
        except UploadRejected as error:
            problem, status = error.detail, error.status
        except TooManyRequests as error:
            problem, status, retry_after = error.detail, error.status, error.retry_after
    response = render(http_request, "verify/certificate.html", {
        "certificate": certificate, "run": certificate.audit_run, "uploaded_match": uploaded_match,
        "problem": problem, "verdict": request_verdict(certificate.request),
        "ca_fingerprint": signing_identity().ca_fingerprint(),
    }, status=status)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


class UploadRejected(Exception):
    def __init__(self, detail: str, status: int = 400):
        super().__init__(detail)
        self.detail, self.status = detail, status


def uploaded_pdf(http_request) -> bytes:
    """The uploaded PDF's bytes; its size is checked from the request's length before any is read."""
    limit = settings.CERTIFICATE_UPLOAD_MAX_BYTES
    too_large = UploadRejected(f"that file is too large: a certificate is under {limit // 2**20} MB", 413)
    try:
        length = int(http_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit + 64 * 1024:  # room for the multipart envelope
        raise too_large
    uploaded = http_request.FILES.get("pdf")
    if uploaded is None:
        raise UploadRejected("choose the certificate's PDF file to compare it with the one we issued")
    if uploaded.size > limit:
        raise too_large
    content = uploaded.read()
    if not content.startswith(b"%PDF-"):
        raise UploadRejected("that file is not a PDF")
    return content


def ca_certificate(http_request):
    path = signing_identity().ca_file
    if not path.exists():
        raise Http404
    return FileResponse(open(path, "rb"), content_type="application/x-pem-file", filename="ca.pem")
