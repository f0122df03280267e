"""The data owner's portal. An owner sees a request only after proving, with a one-time code sent
to its e-mail address, that they hold that address; the session remembers what they proved."""

import io

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_http_methods, require_POST

from audits import exports
from audits import selectors as audit_selectors
from audits.figures import figures_of
from audits.models import AuditRun, AuditStatus
from compliance import selectors, services, throttles
from compliance.errors import NotFound, ServiceError, TooManyRequests
from compliance.models import RemovalRequest, RequestStatus
from compliance.portal.forms import AccessForm, CodeForm, RemovalRequestForm

OWNED = "owned_requests"
PIPELINE = [
    (RequestStatus.SUBMITTED, "Received"),
    (RequestStatus.IDENTITY_VERIFIED, "Identity verified"),
    (RequestStatus.APPROVED, "Approved"),
    (RequestStatus.SCHEDULED, "Scheduled"),
    (RequestStatus.UNLEARNING, "Unlearning"),
    (RequestStatus.AUDITING, "Auditing"),
    (RequestStatus.CERTIFIED, "Certified"),
]


# What the owner's history says for each audit-log action (others are shown as they are).
HISTORY_LABELS = {
    "request.submitted": "Request received",
    "identity.code_sent": "A new code was sent",
    "identity.failed_attempt": "A wrong or expired code was entered",
    "identity.signed_in": "Signed in with a code",
    "request.identity_verified": "E-mail address confirmed",
    "request.approved": "Approved by our legal team",
    "request.denied": "Denied by our legal team",
    "request.canceled": "Canceled",
    "request.scheduled": "Models trained on your data identified",
    "job.queued": "Unlearning queued",
    "job.started": "Unlearning started",
    "request.unlearning": "Unlearning in progress",
    "job.succeeded": "Unlearning finished",
    "job.failed": "Unlearning failed",
    "request.auditing": "Verification tests running",
    "audit.started": "Verification tests started",
    "audit.completed": "Verification tests finished",
    "audit.failed": "Verification tests failed",
    "request.certified": "Certificate issued",
    "request.failed": "Stopped by an error",
}


def _grant(session, request_id) -> None:
    owned = set(session.get(OWNED, []))
    owned.add(str(request_id))
    session.cycle_key()  # a new session id once ownership is proven: one fixed before is worth nothing
    session[OWNED] = sorted(owned)


def _too_many(http_request, template: str, context: dict, error: TooManyRequests, form=None):
    """The page again, with the limit's reason on its form, as 429 with Retry-After."""
    if form is not None:
        form.add_error("code" if "code" in form.fields else None, error.detail)
    else:
        messages.error(http_request, error.detail)
    response = render(http_request, template, context, status=429)
    if error.retry_after:
        response["Retry-After"] = str(error.retry_after)
    return response


def _owned(http_request, request_id) -> RemovalRequest:
    """The request if this session proved ownership of it; 404 otherwise, so ids reveal nothing."""
    if str(request_id) not in http_request.session.get(OWNED, []):
        raise Http404
    return selectors.request_detail(request_id)


@require_http_methods(["GET", "POST"])
def home(http_request):
    form = RemovalRequestForm(http_request.POST or None, http_request.FILES or None)
    if http_request.method == "POST":
        try:
            throttles.spend(throttles.SUBMISSIONS, http_request)
            if form.is_valid():
                data = form.cleaned_data
                request = services.submit_request(full_name=data["full_name"], email=data["email"],
                                                  description=data["description"], jurisdiction=data["jurisdiction"],
                                                  documents=data["documents"], qa_pairs=data["qa_pairs"])
                return redirect("portal-verify", request_id=request.pk)
        except TooManyRequests as error:
            return _too_many(http_request, "portal/home.html", {"form": form}, error, form)
    return render(http_request, "portal/home.html", {"form": form})


@require_http_methods(["GET", "POST"])
def verify(http_request, request_id):
    request = get_object_or_404(RemovalRequest, pk=request_id)
    form = CodeForm(http_request.POST or None)
    context = {"request_obj": request, "form": form}
    if http_request.method == "POST" and form.is_valid():
        try:
            throttles.spend(throttles.CODE_CHECKS, http_request)
            services.verify_identity(request_id=request.pk, code=form.cleaned_data["code"])
        except TooManyRequests as error:
            return _too_many(http_request, "portal/verify.html", context, error, form)
        except ServiceError as error:
            form.add_error("code", error.detail)
        else:
            _grant(http_request.session, request.pk)
            messages.success(http_request, "Thank you: your e-mail address is confirmed.")
            return redirect("portal-request", request_id=request.pk)
    return render(http_request, "portal/verify.html", context)


@require_POST
def resend_code(http_request, request_id):
    request = get_object_or_404(RemovalRequest, pk=request_id)
    try:
        throttles.spend(throttles.CODE_SENDS, http_request)
        services.resend_identity_code(request_id=request.pk)
    except TooManyRequests as error:
        return _too_many(http_request, "portal/verify.html", {"request_obj": request, "form": CodeForm()}, error)
    except ServiceError as error:
        messages.error(http_request, error.detail)
    else:
        messages.info(http_request, "We sent a new code. Earlier codes no longer work.")
    return redirect("portal-verify", request_id=request.pk)


@require_http_methods(["GET", "POST"])
def access(http_request):
    form = AccessForm(http_request.POST or None)
    if http_request.method == "POST" and form.is_valid():
        try:
            throttles.spend(throttles.CODE_SENDS, http_request)
            request = services.request_access_code(**form.cleaned_data)
        except TooManyRequests as error:
            return _too_many(http_request, "portal/access.html", {"form": form}, error, form)
        except ServiceError as error:
            form.add_error(None, error.detail)
        else:
            if request is not None:
                return redirect("portal-verify", request_id=request.pk)
            form.add_error(None, "No request matches this reference and e-mail address.")
    return render(http_request, "portal/access.html", {"form": form})


@require_POST
def sign_out(http_request):
    """Forget what this session proved (on a shared computer, the next person sees nothing)."""
    http_request.session.flush()
    messages.info(http_request, "You are signed out. To see a request again, sign in with its reference and a new code.")
    return redirect("portal-home")


def request_status(http_request, request_id):
    request = _owned(http_request, request_id)
    reached = [status for status, _ in PIPELINE]
    position = reached.index(request.status) if request.status in reached else -1
    steps = [{"label": label, "done": index <= position, "current": index == position}
             for index, (_, label) in enumerate(PIPELINE)]
    runs = [job.audit_run for job in request.jobs.all() if hasattr(job, "audit_run")]
    return render(http_request, "portal/request.html", {
        "request_obj": request, "steps": steps, "jobs": request.jobs.all(),
        "runs": [_run_entry(run, request) for run in runs],
        "downloads": exports.FILES,
        "certificate": selectors.certificate_of(request), "days_left": selectors.days_left(request),
        "events": [(event.at, HISTORY_LABELS.get(event.action, event.action)) for event in selectors.request_events(request)],
        "can_cancel": request.status in (RequestStatus.SUBMITTED, RequestStatus.IDENTITY_VERIFIED),
    })


def _run_entry(run: AuditRun, request) -> dict:
    """An audit run with its labelled results, the owner's person-level ranking and, once it is
    done, its figures: the lead ones shown, the others folded."""
    figures = figures_of(run) if run.status == AuditStatus.DONE else []
    verdict, families = audit_selectors.verdict_for(run, request)
    results = [(label, result, *audit_selectors.own_judgement(result, request))
               for label, result in audit_selectors.labelled_results(run)]
    return {"run": run, "verdict": verdict, "families": families, "results": results,
            "ranking": audit_selectors.person_ranking(run, request) if run.status == AuditStatus.DONE else "",
            "lead_figures": [figure for figure in figures if figure.lead],
            "more_figures": [figure for figure in figures if not figure.lead]}


@require_POST
def cancel(http_request, request_id):
    request = _owned(http_request, request_id)
    try:
        services.cancel_request(request_id=request.pk)
        messages.success(http_request, "Your request is canceled.")
    except ServiceError as error:
        messages.error(http_request, error.detail)
    return redirect("portal-request", request_id=request.pk)


def certificate_download(http_request, request_id):
    certificate = selectors.certificate_of(_owned(http_request, request_id))
    if certificate is None:
        raise Http404
    try:
        pdf = audit_selectors.certificate_pdf(certificate)
    except audit_selectors.CertificateFileMissing:
        raise Http404 from None  # logged for the operators; the owner sees the plain not-found page
    return FileResponse(io.BytesIO(pdf), content_type="application/pdf", as_attachment=True,
                        filename=f"{certificate.serial}.pdf")


def _finished_run(http_request, request_id, run_id) -> AuditRun:
    """A finished audit run of a request this session owns; 404 otherwise, like the request page."""
    try:
        run = audit_selectors.audit_run_of(_owned(http_request, request_id), run_id)
    except NotFound:
        raise Http404 from None
    if run.status != AuditStatus.DONE:
        raise Http404
    return run


@cache_control(private=True, max_age=3600)  # a finished run's scores never change
def audit_figure(http_request, request_id, run_id, figure):
    figures = {candidate.name: candidate for candidate in figures_of(_finished_run(http_request, request_id, run_id))}
    if figure not in figures:
        raise Http404
    return HttpResponse(figures[figure].draw(), content_type="image/png")


def audit_download(http_request, request_id, run_id, filename):
    run = _finished_run(http_request, request_id, run_id)
    if filename not in exports.FILES:
        raise Http404
    return exports.download(run, filename)
