"""The e-mails of a request's lifecycle: to its owner at each step, and to the reviewers when a
deadline is near. Each is a template `templates/email/<notice>.txt` whose first line is the
subject; it is sent once the transaction that caused it commits (a rolled-back step tells no one)
through the configured EMAIL_BACKEND, and a send that fails is logged without undoing the step.

Links point at the portal address the owner filed at (`RemovalRequest.site_url`), else SITE_URL:
an e-mail sent by a worker, far from any HTTP request, links where the owner came from.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse

from compliance.models import RemovalRequest, RequestStatus

# The notice a request's owner gets when it reaches each status (compliance.services._transition).
NOTICE_ON_STATUS = {
    RequestStatus.IDENTITY_VERIFIED: "verified",
    RequestStatus.INFO_REQUESTED: "info_requested",
    RequestStatus.APPROVED: "approved",
    RequestStatus.DENIED: "denied",
    RequestStatus.CERTIFIED: "certified",
    RequestStatus.NO_DATA: "no_data",
    RequestStatus.DUPLICATE: "duplicate",
    RequestStatus.FAILED: "failed",
    RequestStatus.CANCELED: "canceled",
}

# Where a data owner may complain about a denial (GDPR Art. 77; CCPA: Cal. Civ. Code 1798.199.45).
COMPLAINT_AUTHORITY = {
    "gdpr": "the data protection supervisory authority of the EU or EEA country where you live or work, or where "
            "you think your rights were infringed (GDPR Art. 77); you may also go to court (GDPR Art. 79)",
    "ccpa": "the California Privacy Protection Agency (cppa.ca.gov) or the California Attorney General",
}

# What went wrong, for the owner, by the step a request failed at (RemovalRequest.failed_step).
FAILURE_IN_PLAIN_WORDS = {
    "unlearning": "removing your data from one of our models did not succeed",
    "audit": "the tests that check your data is gone could not be completed",
    "certificate": "we could not sign your certificate",
    "": "an error stopped the work",
}


def portal_origin(http_request: HttpRequest) -> str:
    """The address the owner reached the portal at, when the operator vouches for it (a development
    server on any port, or an origin in CSRF_TRUSTED_ORIGINS); SITE_URL otherwise. Django has
    checked the host against ALLOWED_HOSTS already; the list keeps a forged Host header from
    putting its own address in the e-mails of someone else's request."""
    origin = f"{http_request.scheme}://{http_request.get_host()}"
    return origin if settings.DEBUG or origin in settings.CSRF_TRUSTED_ORIGINS else settings.SITE_URL


def link(request: RemovalRequest, path: str) -> str:
    return f"{request.site_url or settings.SITE_URL}{path}"


def status_link(request: RemovalRequest) -> str:
    return link(request, reverse("portal-request", args=[request.pk]))


def notify_owner(request: RemovalRequest, notice: str, **context) -> None:
    """E-mail the owner `notice` about `request` once the transaction commits."""
    subject, body = render(notice, {
        "request_obj": request, "status_url": status_link(request),
        "access_url": link(request, reverse("portal-access")),
        "complaint_authority": COMPLAINT_AUTHORITY.get(request.jurisdiction, COMPLAINT_AUTHORITY["gdpr"]),
        **context,
    })
    send_after_commit(subject, body, [request.email])


def notify_reviewers(notice: str, **context) -> None:
    if settings.REVIEWERS_EMAIL:
        send_after_commit(*render(notice, {"console_url": f"{settings.SITE_URL}{reverse('console-queue')}", **context}),
                          settings.REVIEWERS_EMAIL)


def render(notice: str, context: dict) -> tuple[str, str]:
    subject, _, body = render_to_string(f"email/{notice}.txt", context).lstrip().partition("\n")
    return subject.removeprefix("Subject:").strip(), body.strip() + "\n"


def send_after_commit(subject: str, body: str, to: list[str]) -> None:
    transaction.on_commit(lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to), robust=True)
