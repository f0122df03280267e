"""Reads of removal requests, for the portal and the API."""

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from compliance.errors import NotFound
from compliance.models import AuditEvent, RemovalRequest, RequestStatus
from unlearning.models import UnlearningJob
from unlearning.selectors import deletion_plans, forget_review

BEFORE_SCHEDULING = (RequestStatus.SUBMITTED, RequestStatus.IDENTITY_VERIFIED, RequestStatus.APPROVED)


def request_list(*, status: str = "") -> QuerySet[RemovalRequest]:
    requests = RemovalRequest.objects.all()
    return requests.filter(status=status) if status else requests


def idle_approved_requests(cutoff) -> list[str]:
    """Requests approved before `cutoff` and not scheduled since: the message of their scheduling
    task is lost."""
    return [str(pk) for pk in RemovalRequest.objects.filter(status=RequestStatus.APPROVED, decided_at__lt=cutoff)
            .order_by("pk").values_list("pk", flat=True)]


def request_detail(request_id) -> RemovalRequest:
    jobs = UnlearningJob.objects.select_related("asset", "base_version", "result_version", "audit_run__original_version",
                                                "audit_run__unlearned_version", "audit_run__reference_version")
    try:
        return (
            RemovalRequest.objects.select_related("certificate")
            .prefetch_related(Prefetch("jobs", queryset=jobs), "jobs__audit_run__results")
            .get(pk=request_id)
        )
    except (RemovalRequest.DoesNotExist, ValidationError):  # ValidationError: not a UUID at all
        raise NotFound(f"no removal request with id {request_id}") from None


def request_events(request: RemovalRequest) -> QuerySet[AuditEvent]:
    """The request's own events, and those of its jobs and audit runs."""
    job_ids = [str(pk) for pk in request.jobs.values_list("pk", flat=True)]
    run_ids = [str(pk) for pk in request.jobs.exclude(audit_run=None).values_list("audit_run__pk", flat=True)]
    return AuditEvent.objects.filter(
        Q(object_type="compliance.RemovalRequest", object_id=str(request.pk))
        | Q(object_type="unlearning.UnlearningJob", object_id__in=job_ids)
        | Q(object_type="audits.AuditRun", object_id__in=run_ids)
    ).order_by("seq")


def days_left(request: RemovalRequest) -> int:
    return (request.due_at - timezone.now()).days


def certificate_of(request: RemovalRequest):
    return getattr(request, "certificate", None)


def pending_deletion_plans(request: RemovalRequest) -> list[dict]:
    """The deletion plan per model, while the request waits for scheduling; afterwards each job
    carries the plan it executed. Before identity is verified, no subject key is known: no plans."""
    if request.status not in BEFORE_SCHEDULING or not request.subject_key:
        return []
    return deletion_plans(request.subject_key)


def pending_forget_review(request: RemovalRequest) -> list[dict]:
    """What legal reviews before approving: per model, the subject's linked records and the near
    matches of their name and e-mail (unlearning.selectors.forget_review)."""
    if request.status not in BEFORE_SCHEDULING:
        return []
    return forget_review(request)
