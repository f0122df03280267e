"""The data owner's portal. An owner sees a request only after proving, with a one-time code sent
to its e-mail address, that they hold that address; the session remembers what they proved."""

import io

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_http_methods, require_POST

from audits import exports, wording
from audits import selectors as audit_selectors
from audits.figures import figures_of
from audits.models import AuditRun, AuditStatus
from compliance import notifications, selectors, services, throttles
from compliance.errors import NotFound, ServiceError, TooManyRequests
from compliance.models import RemovalRequest, RequestStatus
from compliance.portal.forms import AccessForm, AnswerForm, CodeForm, RemovalRequestForm

OWNED = "owned_requests"
# The steps a request passes through, each by its status's one name for people (the first's
# without its call to action: the step stays in the list once done).
PIPELINE = [(RequestStatus.SUBMITTED, "Received")] + [
    (status, status.label) for status in (RequestStatus.IDENTITY_VERIFIED, RequestStatus.APPROVED,
                                          RequestStatus.SCHEDULED, RequestStatus.UNLEARNING, RequestStatus.AUDITING,
                                          RequestStatus.CERTIFIED)]
# Statuses off the pipeline that wait where the review does.
IN_REVIEW = {RequestStatus.ON_HOLD: RequestStatus.IDENTITY_VERIFIED, RequestStatus.INFO_REQUESTED: RequestStatus.IDENTITY_VERIFIED}
# What an owner reads of a job's state and of a failed step.
JOB_STATE = {"queued": "waiting for a worker", "running": "in progress", "succeeded": "done", "failed": "did not succeed"}


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
    "request.first_approval": "Approved by a first reviewer (a second one confirms)",
    "request.deadline_extended": "Deadline extended",
    "job.request_added": "Added to unlearning already queued for a model",
    "job.method_chosen": "Unlearning method chosen",
    "job.fanned_out": "Unlearning spread over several workers",
    "job.requeued": "Unlearning restarted (a worker stopped)",
    "audit.requeued": "Verification tests restarted (a worker stopped)",
}
# Actions an owner's history leaves out: steps inside work it already lists, and internal notes.
HISTORY_SKIPPED = {"job.part_started", "job.part_finished", "request.note_added", "model.version_stored"}


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
                                                  documents=data["documents"], qa_pairs=data["qa_pairs"],
                                                  site_url=notifications.portal_origin(http_request))
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
            request.refresh_from_db()
            if request.status == RequestStatus.DUPLICATE:  # the same person: they may follow the open one
                _grant(http_request.session, request.duplicate_of_id)
                messages.info(http_request, f"Your e-mail address is confirmed. You already have an open request, "
                                            f"{request.duplicate_of.reference}, for the same person: it continues here.")
                return redirect("portal-request", request_id=request.duplicate_of_id)
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
    jobs = selectors.request_jobs(request)
    certificate = selectors.certificate_of(request)
    return render(http_request, "portal/request.html", {
        **_live(request),
        "models": [_model_entry(number, job, request) for number, job in enumerate(jobs, start=1)],
        "result": selectors.request_result(request) if request.status == RequestStatus.CERTIFIED else {},
        "downloads": exports.FILES,
        "certificate": certificate,
        "failure": notifications.FAILURE_IN_PLAIN_WORDS.get(request.failed_step, notifications.FAILURE_IN_PLAIN_WORDS[""]),
        "events": _history(request),
        "can_cancel": request.status in (RequestStatus.SUBMITTED, RequestStatus.IDENTITY_VERIFIED),
    })


def request_progress(http_request, request_id):
    """The live part of the request page (its status, steps and work under way), which the page
    fetches every few seconds while the request is not final."""
    response = render(http_request, "portal/_progress.html", _live(_owned(http_request, request_id)))
    response["Cache-Control"] = "no-store, private"
    return response


def _live(request) -> dict:
    status = IN_REVIEW.get(request.status, request.status)
    reached = [step for step, _ in PIPELINE]
    position = reached.index(status) if status in reached else None
    steps = ([{"label": label, "done": index <= position, "current": index == position}
              for index, (_, label) in enumerate(PIPELINE)] if position is not None else [])
    return {"request_obj": request, "steps": steps, "progress": selectors.request_progress(request),
            "days_left": selectors.days_left(request)}


def _history(request) -> list[tuple]:
    """The request's events as its owner reads them; a change of status by the status's own name."""
    events = []
    for event in selectors.request_events(request):
        label = HISTORY_LABELS.get(event.action)
        status = event.action.removeprefix("request.")
        if label is None and status in RequestStatus.values:
            label = RequestStatus(status).label
        if label is not None and event.action not in HISTORY_SKIPPED:
            events.append((event.at, label))
    return events


def _model_entry(number: int, job, request) -> dict:
    """One model of the request as its owner sees it: by number and kind, what was done to it, and
    its tests."""
    run = selectors.job_audit(job)
    kind = selectors.method_kind(job)
    return {"name": wording.model_name(number, job.asset.kind), "job": job, "kind": kind,
            "method": wording.METHOD_KINDS[kind], "state": JOB_STATE.get(job.status, job.status),
            "run": _run_entry(run, request) if run is not None and run.status == AuditStatus.DONE else None}


def _run_entry(run: AuditRun, request) -> dict:
    """A finished audit run: its verdict for this owner, the key figure in words, the families and
    every result with the question it answers beside its technical name, the reason for each
    verdict, and its figures (the lead ones shown, the others folded)."""
    figures = figures_of(run)
    verdict, families = audit_selectors.verdict_for(run, request)
    results = []
    for label, result in audit_selectors.labelled_results(run):
        question, technical = wording.metric_names(result.metric, label)
        result_verdict, explanation = audit_selectors.own_judgement(result, request)
        results.append({"question": question, "technical": technical, "result": result, "verdict": result_verdict,
                        "words": wording.VERDICT_WORDS.get(result_verdict, result_verdict), "explanation": explanation})
    ranking = audit_selectors.person_ranking(run, request)
    return {"run": run, "verdict": verdict, "words": wording.VERDICT_WORDS.get(verdict, verdict),
            "families": [{**family, "words": wording.VERDICT_WORDS.get(family["verdict"], family["verdict"])}
                         for family in families],
            "results": results, "ranking": ranking, "key_figure": ranking or _membership_figure(run),
            "lead_figures": [figure for figure in figures if figure.lead],
            "more_figures": [figure for figure in figures if not figure.lead]}


def _membership_figure(run: AuditRun) -> str:
    """The lead membership attack (LOSS where it was run) in words, for a run without a person-level ranking."""
    attacks = [result for result in run.results.all()
               if result.audit in ("membership_inference", "row_membership") and result.unlearned_value is not None
               and result.metric.endswith("_auc")]
    lead = next((r for r in attacks if r.metric in ("mia_loss_auc", "row_mia_loss_auc")), attacks[0] if attacks else None)
    return wording.membership_in_words(lead.unlearned_value, lead.original_value, lead.reference_value) if lead else ""


@require_POST
def answer(http_request, request_id):
    """The owner answers the question our reviewers asked (the request waits for it)."""
    request = _owned(http_request, request_id)
    form = AnswerForm(http_request.POST)
    if not form.is_valid():
        messages.error(http_request, "Write your answer before sending it.")
    else:
        try:
            services.answer_owner_question(request_id=request.pk, answer=form.cleaned_data["answer"])
            messages.success(http_request, "Thank you: our legal team has your answer, and your request continues.")
        except ServiceError as error:
            messages.error(http_request, error.detail)
    return redirect("portal-request", request_id=request.pk)


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
