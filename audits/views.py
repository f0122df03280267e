"""Public certificate verification: anyone holding a certificate can check it here."""

from django.http import FileResponse, Http404
from django.shortcuts import render

from audits.certificates import signing_identity
from audits.models import Certificate
from audits.selectors import request_verdict
from audits.signing import sha256_hex


def verify_certificate(http_request, serial):
    certificate = Certificate.objects.select_related("request", "audit_run__job__asset").filter(serial=serial).first()
    if certificate is None:
        raise Http404
    identity = signing_identity()
    uploaded_match = None
    if http_request.method == "POST" and http_request.FILES.get("pdf"):
        uploaded_match = sha256_hex(http_request.FILES["pdf"].read()) == certificate.pdf_sha256
    return render(http_request, "verify/certificate.html", {
        "certificate": certificate, "run": certificate.audit_run, "uploaded_match": uploaded_match,
        "verdict": request_verdict(certificate.request),
        "ca_fingerprint": identity.ca_fingerprint(),
    })


def ca_certificate(http_request):
    path = signing_identity().ca_file
    if not path.exists():
        raise Http404
    return FileResponse(open(path, "rb"), content_type="application/x-pem-file", filename="ca.pem")
