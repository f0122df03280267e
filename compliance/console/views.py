"""The legal team's review console: the queue by deadline, and each request's page with every
decision on it. Views only translate HTTP: a form → one service → a redirect back with a message,
or the page again with the form's errors or the service's refusal (ServiceError.detail) on it.

Who may use it is the API's rule (compliance.api.permissions.lifecycle_access): the legal team
drives requests, an auditor reads; anyone else signed in is refused (403), and a visitor not signed
in is sent to the admin's login."""

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from compliance import selectors, services
from compliance.api.permissions import DRIVES, READS, lifecycle_access
from compliance.console import forms
from compliance.errors import NotFound, ServiceError
from compliance.models import FINAL_STATUSES, RemovalRequest, RequestStatus

QUEUE_PAGE_SIZE = 50
S = RequestStatus


def legal_console(view):
    """Only for the legal team (an auditor reads): the rule of the API's IsLegalTeam. Pages carry
    personal data: never cached."""

    @wraps(view)
    def guarded(http_request, *args, **kwargs):
        if not http_request.user.is_authenticated:
            return redirect_to_login(http_request.get_full_path(), reverse("admin:login"))
        access = lifecycle_access(http_request.user)
        if access != DRIVES and not (access == READS and http_request.method in ("GET", "HEAD")):
            why = ("an auditor reads the requests; only the legal team changes them" if access == READS
                   else "the review console is for the legal team: your account is not in the legal group")
            response = render(http_request, "console/forbidden.html", {"why": why}, status=403)
        else:
            response = view(http_request, *args, **kwargs)
        add_never_cache_headers(response)
        return response

    return guarded


# --- The queue ---


@legal_console
@require_GET
def queue(http_request):
    return render(http_request, "console/queue.html", queue_context(http_request, forms.BulkDecisionForm()))


@legal_console
@require_POST
def bulk_decide(http_request):
    """Approve or deny the ticked requests, each on its own; the page lists what succeeded and,
    for each that failed, why."""
    form = forms.BulkDecisionForm(http_request.POST)
    if form.is_valid():
        try:
            outcome = services.bulk_decide(user=http_request.user, **form.cleaned_data)
        except ServiceError as error:  # refused as a whole (a denial without a reason)
            form.add_error(None, error.detail)
        else:
            references = selectors.references_of(outcome["succeeded"] + [f["id"] for f in outcome["failed"]])
            return render(http_request, "console/bulk_result.html", {
                "decision": form.cleaned_data["decision"], "outcome": outcome,
                "succeeded": [{"id": i, "reference": references.get(i, i)} for i in outcome["succeeded"]],
                "failed": [{**f, "reference": references.get(f["id"], f["id"])} for f in outcome["failed"]],
                "back": queue_url(http_request)})
    return render(http_request, "console/queue.html", queue_context(http_request, form), status=400)


def queue_context(http_request, bulk_form) -> dict:
    search = forms.QueueSearchForm(http_request.GET)
    filters = search.cleaned_data if search.is_valid() else {}
    closed = filters.get("show") == "closed"
    requests = selectors.review_queue(q=filters.get("q", ""), status=filters.get("status", ""), closed=closed)
    page = Paginator(requests, QUEUE_PAGE_SIZE).get_page(http_request.GET.get("page"))
    now = timezone.now()
    query = http_request.GET.copy()
    query.pop("page", None)
    return {
        "search": search, "closed": closed, "page": page, "query": query.urlencode(), "bulk_form": bulk_form,
        "picked": set(bulk_form["request_ids"].value() or []) if bulk_form.is_bound else set(),
        "rows": [{"request": request, "days_left": selectors.days_left(request),
                  "days_overdue": (now - request.due_at).days, "deadline": selectors.deadline_state(request, now)}
                 for request in page],
        "warning_days": settings.DEADLINE_WARNING_DAYS, "may_decide": lifecycle_access(http_request.user) == DRIVES,
    }


def queue_url(http_request) -> str:
    query = http_request.GET.urlencode()
    return reverse("console-queue") + (f"?{query}" if query else "")


# --- A request's page ---


def found(request_id) -> RemovalRequest:
    try:
        return selectors.request_detail(request_id)
    except NotFound:
        raise Http404 from None


@legal_console
@require_GET
def request_page(http_request, request_id):
    request = found(request_id)
    return render(http_request, "console/request.html", request_context(http_request, request))


def request_context(http_request, request: RemovalRequest, review: list[dict] | None = None, **bound_forms) -> dict:
    """Everything the page shows, and its forms (`bound_forms`: the one posted, with its errors);
    `review`: the forget review when the caller read it already."""
    before_decision = request.status in selectors.BEFORE_SCHEDULING
    review = selectors.pending_forget_review(request) if review is None else review
    allowed = services.ALLOWED_TRANSITIONS[request.status]
    pending_first = request.first_approval_by_id is not None and request.status == S.IDENTITY_VERIFIED
    approve_initial = forms.ApproveForm.initial_from(request.first_approval) if pending_first else {}
    plans = selectors.pending_deletion_plans(request)  # worked out once: the table, the cost and four eyes
    seconds = services.plan_seconds(plans)
    context = {
        "request_obj": request, "final": request.status in FINAL_STATUSES, "materials": list(request.materials.all()), "plans": plans,
        "review": review, "plan_seconds": seconds if before_decision else None,
        "four_eyes": before_decision and services.needs_second_approval(seconds),
        "four_eyes_threshold": settings.FOUR_EYES_ABOVE_SECONDS, "pending_first": pending_first,
        "days_left": selectors.days_left(request), "deadline": selectors.deadline_state(request),
        "extension_unavailable": selectors.extension_unavailable(request),
        "notes": selectors.request_notes(request), "events": selectors.request_events(request),
        "duplicates": list(request.duplicates.order_by("received_at")),
        "may_decide": lifecycle_access(http_request.user) == DRIVES,
        "can": {"approve": request.status == S.IDENTITY_VERIFIED, "deny": S.DENIED in allowed,
                "hold": S.ON_HOLD in allowed, "resume": request.status == S.ON_HOLD,
                "ask": S.INFO_REQUESTED in allowed},
        "approve_form": forms.ApproveForm(review=review, initial=approve_initial),
        "deny_form": forms.DenyForm(jurisdiction=request.jurisdiction), "hold_form": forms.HoldForm(),
        "ask_form": forms.AskOwnerForm(), "extend_form": forms.ExtendForm(), "note_form": forms.NoteForm(),
    }
    return {**context, **bound_forms}


def act(http_request, request: RemovalRequest, form_name: str, form, perform, success, review=None):
    """Validate `form`, then `perform(**cleaned_data)` (one service call): back to the page with
    `success(result)` as its message, or the page again with the refusal on the form."""
    status = 400
    if form.is_valid():
        try:
            result = perform(**form.cleaned_data)
        except NotFound:
            raise Http404 from None
        except ServiceError as error:
            form.add_error(None, error.detail)
            status = error.status
        else:
            messages.success(http_request, success(result))
            return redirect("console-request", request_id=request.pk)
    return render(http_request, "console/request.html",
                  request_context(http_request, request, review, posted=form, **{form_name: form}), status=status)


@legal_console
@require_POST
def approve(http_request, request_id):
    request = found(request_id)
    review = selectors.pending_forget_review(request)
    form = forms.ApproveForm(http_request.POST, review=review)

    def success(approved: RemovalRequest) -> str:
        if approved.status == S.APPROVED:
            return f"{approved.reference} is approved: the owner is told and the unlearning is being scheduled."
        return (f"Your approval of {approved.reference} is recorded as the first: its deletion plan costs more than "
                f"{settings.FOUR_EYES_ABOVE_SECONDS} s of compute, so another reviewer must approve it too.")

    return act(http_request, request, "approve_form", form,
               lambda **data: services.approve_request(request_id=request.pk, user=http_request.user, **data), success,
               review)


@legal_console
@require_POST
def deny(http_request, request_id):
    request = found(request_id)
    form = forms.DenyForm(http_request.POST, jurisdiction=request.jurisdiction)
    return act(http_request, request, "deny_form", form,
               lambda **data: services.deny_request(request_id=request.pk, user=http_request.user, **data),
               lambda denied: f"{denied.reference} is denied: the owner is told, with the reason.")


@legal_console
@require_POST
def hold(http_request, request_id):
    request = found(request_id)
    return act(http_request, request, "hold_form", forms.HoldForm(http_request.POST),
               lambda **data: services.hold_request(request_id=request.pk, user=http_request.user, **data),
               lambda held: f"{held.reference} is on hold.")


@legal_console
@require_POST
def resume(http_request, request_id):
    request = found(request_id)
    return act(http_request, request, "resume_form", forms.ResumeForm(http_request.POST),
               lambda: services.resume_request(request_id=request.pk, user=http_request.user),
               lambda resumed: f"{resumed.reference} is back in review.")


@legal_console
@require_POST
def ask_owner(http_request, request_id):
    request = found(request_id)
    return act(http_request, request, "ask_form", forms.AskOwnerForm(http_request.POST),
               lambda **data: services.ask_owner(request_id=request.pk, user=http_request.user, **data),
               lambda asked: f"The question is e-mailed to the owner of {asked.reference}; the request waits for "
                             "their answer.")


@legal_console
@require_POST
def extend(http_request, request_id):
    request = found(request_id)
    return act(http_request, request, "extend_form", forms.ExtendForm(http_request.POST),
               lambda **data: services.extend_deadline(request_id=request.pk, user=http_request.user, **data),
               lambda extended: f"The deadline of {extended.reference} is now {extended.due_at:%d %B %Y}; the owner "
                                "is told why.")


@legal_console
@require_POST
def add_note(http_request, request_id):
    request = found(request_id)
    return act(http_request, request, "note_form", forms.NoteForm(http_request.POST),
               lambda **data: services.add_note(request_id=request.pk, user=http_request.user, **data),
               lambda note: "Note added.")
