"""Reads of removal requests, for the portal and the API."""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from audits import wording
from audits.models import AuditRun, AuditStatus
from audits.selectors import verdict_for
from audits.verdicts import PROVEN_BY_IDENTITY, overall
from compliance.errors import NotFound
from compliance.models import FINAL_STATUSES, AuditEvent, RemovalRequest, RequestNote, RequestStatus
from unlearning.models import JobStatus, UnlearningJob
from unlearning.selectors import confirmed_record_ids, deletion_plan, deletion_plans, forget_review, regime

# Waiting on hold or for the owner's answer is still before the decision: the plans stay in view.
BEFORE_SCHEDULING = (RequestStatus.SUBMITTED, RequestStatus.IDENTITY_VERIFIED, RequestStatus.ON_HOLD,
                     RequestStatus.INFO_REQUESTED, RequestStatus.APPROVED)


def request_list(*, status: str = "") -> QuerySet[RemovalRequest]:
    requests = RemovalRequest.objects.select_related("duplicate_of", "first_approval_by")  # named in each row
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
            RemovalRequest.objects.select_related("certificate", "duplicate_of", "first_approval_by")
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


# While a request is in one of these, workers are at it: the owner's page polls its progress.
WORK_UNDER_WAY = (RequestStatus.APPROVED, RequestStatus.SCHEDULED, RequestStatus.UNLEARNING, RequestStatus.AUDITING)
# An audit of a model none of whose audits has finished yet: the demo world's language model took
# about four minutes on two cores (reference retraining, three models scored, runtime filters).
AUDIT_SECONDS_UNMEASURED = 240
RECENT_AUDITS = 5  # the finished audits of the same model whose mean duration estimates the next one
SIGNING_SECONDS = 15  # render, sign (and timestamp) and store the certificate
# Below this share done, a rate of progress says little about the time left.
RATE_FROM = 0.05


def request_jobs(request: RemovalRequest) -> list[UnlearningJob]:
    """The request's jobs in the order they were queued: the owner's pages number its models so."""
    return sorted(request.jobs.all(), key=lambda job: job.pk)


def job_audit(job: UnlearningJob) -> AuditRun | None:
    return getattr(job, "audit_run", None)


def method_kind(job: UnlearningJob) -> str:
    """"exact" (removal) or "approximate" (suppression): as the job ran it, or as its regime will."""
    if job.outcome.get("method_kind"):
        return job.outcome["method_kind"]
    return "exact" if regime(job.asset).exact else "approximate"


def request_progress(request: RemovalRequest, now=None) -> dict:
    """What the owner's live status shows: per model, removing the data and testing the result,
    then signing the certificate, each waiting, running (with its percent done where a worker
    reports one), done or failed; and the time left, in words (audits.wording.time_left)."""
    now = now or timezone.now()
    jobs = request_jobs(request)
    phases = []
    for number, job in enumerate(jobs, start=1):
        name = wording.model_name(number, job.asset.kind)
        phases += [unlearning_phase(job, name), audit_phase(job, name)]
    certificate = certificate_of(request)
    if jobs:
        audits_done = all(job_audit(job) is not None and job_audit(job).status == AuditStatus.DONE for job in jobs)
        signing = ("done" if certificate else "running" if audits_done and request.status == RequestStatus.AUDITING
                   else "waiting")
        phases.append({"label": "Signing your certificate", "state": signing,
                       "percent": None, "detail": ""})
    seconds, overdue = seconds_left(request, jobs, now) if jobs and request.status in WORK_UNDER_WAY else (None, False)
    left = wording.time_left(seconds, overdue=overdue)
    return {"status": request.status, "label": request.get_status_display(), "final": request.status in FINAL_STATUSES,
            "under_way": request.status in WORK_UNDER_WAY, "phases": phases, "time_left": left,
            "sentence": progress_sentence(request, jobs, left)}


def progress_sentence(request: RemovalRequest, jobs: list[UnlearningJob], left: str) -> str:
    if request.status == RequestStatus.APPROVED:
        return "Your request is approved: we are finding the models that were trained on your data."
    if request.status not in WORK_UNDER_WAY:
        return ""
    doing = ("We are checking that your data is gone" if request.status == RequestStatus.AUDITING
             else "We are removing your data")
    if left == "taking longer than expected":
        return f"{doing}: it is taking longer than expected."
    return f"{doing}: {left}." if left else f"{doing}."


def percent(fraction: float) -> int:
    return round(min(max(fraction, 0.0), 1.0) * 100)


def unlearning_phase(job: UnlearningJob, name: str) -> dict:
    label = f"Removing your data from {name}"
    if job.status == JobStatus.QUEUED:
        return {"label": label, "state": "waiting", "percent": None, "detail": "waiting for a worker"}
    if job.status == JobStatus.RUNNING:
        # An exact deletion reports progress only as the shards it fans out finish: until one does,
        # it shows none rather than 0%.
        shown = job.progress > 0 or method_kind(job) == "approximate"
        return {"label": label, "state": "running", "percent": percent(job.progress) if shown else None, "detail": ""}
    if job.status == JobStatus.SUCCEEDED:
        return {"label": label, "state": "done", "percent": 100, "detail": ""}
    return {"label": label, "state": "failed", "percent": None, "detail": "did not succeed"}


def audit_phase(job: UnlearningJob, name: str) -> dict:
    label = f"Testing that your data is gone from {name}"
    run = job_audit(job)
    if run is None or run.status == AuditStatus.QUEUED:
        waiting = "waiting for a worker" if job.status == JobStatus.SUCCEEDED else ""
        return {"label": label, "state": "waiting", "percent": None, "detail": waiting}
    if run.status == AuditStatus.RUNNING:
        return {"label": label, "state": "running", "percent": percent(run.progress),
                "detail": wording.audit_stage(run.progress_message)}
    if run.status == AuditStatus.DONE:
        return {"label": label, "state": "done", "percent": 100, "detail": ""}
    return {"label": label, "state": "failed", "percent": None, "detail": "could not be completed"}


def seconds_left(request: RemovalRequest, jobs: list[UnlearningJob], now) -> tuple[float | None, bool]:
    """(seconds of work left, whether some work under way has run past its estimate): each job's
    deletion plan (estimated_seconds) for unlearning still to do, each audit's estimate (audit_seconds),
    signing, minus what has run. A running job's rate of progress shortens its plan's estimate (an
    approximate plan's is its whole step budget, which a method stopping at its target never spends).
    None when some work has no estimate."""
    left, overdue, known = 0.0, False, True

    def add(estimate: float | None, started=None, fraction: float = 0.0) -> None:
        nonlocal left, overdue, known
        elapsed = (now - started).total_seconds() if started else 0.0
        remaining = None if estimate is None else estimate - elapsed
        if started and fraction >= RATE_FROM:
            by_rate = elapsed * (1 - fraction) / fraction
            remaining = by_rate if remaining is None else min(remaining, by_rate)
        if remaining is None:
            known = False
        elif remaining < 0:
            overdue = True
        else:
            left += remaining

    for job in jobs:
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            running = job.status == JobStatus.RUNNING
            add(planned_seconds(job), job.started_at if running else None, job.progress if running else 0.0)
        run = job_audit(job)
        if run is None or run.status in (AuditStatus.QUEUED, AuditStatus.RUNNING):
            running = run is not None and run.status == AuditStatus.RUNNING
            add(audit_seconds(job), run.started_at if running else None)
    if certificate_of(request) is None:
        add(SIGNING_SECONDS)
    return (left if known else None), overdue


def planned_seconds(job: UnlearningJob) -> float | None:
    """The job's deletion plan's estimate (unlearning.selectors.deletion_plan); None when nothing
    was measured on the model yet, or the model has no version to plan from."""
    if job.asset.current_version_id is None:
        return None
    requests = list(job.requests.all())
    return deletion_plan(job.asset, [r.subject_key for r in requests if r.subject_key],
                         confirmed_record_ids(job.asset, requests), job=job).get("estimated_seconds")


def audit_seconds(job: UnlearningJob) -> float:
    """The mean duration of the model's latest finished audits, else AUDIT_SECONDS_UNMEASURED."""
    runs = (AuditRun.objects.filter(job__asset_id=job.asset_id, status=AuditStatus.DONE)
            .exclude(started_at=None).exclude(finished_at=None).order_by("-finished_at")
            .values_list("started_at", "finished_at")[:RECENT_AUDITS])
    durations = [(finished - started).total_seconds() for started, finished in runs]
    return sum(durations) / len(durations) if durations else AUDIT_SECONDS_UNMEASURED


def request_result(request: RemovalRequest) -> dict:
    """A completed request's answer to "is my data gone?": the overall verdict over its finished
    audits (each for this request's subject), removal or suppression, and the sentence that says so
    (audits.wording.headline)."""
    audited = [(job, job_audit(job)) for job in request_jobs(request)
               if job_audit(job) is not None and job_audit(job).status == AuditStatus.DONE]
    if not audited:
        return {}
    runs = [run for _, run in audited]
    judged = [verdict_for(run, request) for run in runs]
    verdict = overall([run_verdict for run_verdict, _ in judged])
    nature = "removal" if all(method_kind(job) == "exact" for job, _ in audited) else "suppression"
    identity = all(run.verdict_basis == PROVEN_BY_IDENTITY for run in runs)
    families = [family for _, run_families in judged for family in run_families]
    return {"verdict": verdict, "nature": nature, "proven_by_identity": identity,
            "headline": wording.headline(verdict, nature, several=len(runs) > 1, families=families,
                                         proven_by_identity=identity)}


# --- The legal team's review console (compliance.console) ---


def review_queue(*, q: str = "", status: str = "", closed: bool = False) -> QuerySet[RemovalRequest]:
    """The reviewers' queue: open requests by deadline, the soonest first (with `closed`, the
    finished ones, the latest deadline first); `status`, only that one (open or finished); `q`, a
    part of the reference or of the e-mail address, in any case."""
    requests = RemovalRequest.objects.select_related("duplicate_of", "first_approval_by")
    if status:
        requests = requests.filter(status=status)
    else:
        requests = requests.filter(status__in=FINAL_STATUSES) if closed else requests.exclude(status__in=FINAL_STATUSES)
    if q := q.strip():
        requests = requests.filter(Q(reference__icontains=q) | Q(email__icontains=q))
    return requests.order_by("-due_at" if closed and not status else "due_at", "received_at")


def deadline_state(request: RemovalRequest, now=None) -> str:
    """"overdue", "due_soon" (within DEADLINE_WARNING_DAYS) or "" for an open request; "" for a finished one."""
    if request.status in FINAL_STATUSES:
        return ""
    now = now or timezone.now()
    if request.due_at < now:
        return "overdue"
    return "due_soon" if request.due_at < now + timedelta(days=settings.DEADLINE_WARNING_DAYS) else ""


def extension_unavailable(request: RemovalRequest, now=None) -> str:
    """Why the deadline cannot be extended (compliance.services.extend_deadline); "" when it can."""
    if request.status in FINAL_STATUSES:
        return "the request is finished"
    if request.extended_at is not None:
        return f"the deadline was extended already, on {request.extended_at:%Y-%m-%d}: the law allows one extension"
    if request.due_at <= (now or timezone.now()):
        return "the deadline has passed: an extension must be told to the owner before it"
    return ""


def request_notes(request: RemovalRequest) -> QuerySet[RequestNote]:
    """The reviewers' thread on a request: internal notes, questions to the owner and the owner's
    answers, oldest first. Never for the owner's pages."""
    return request.notes.select_related("author").order_by("created_at", "pk")


def references_of(request_ids) -> dict[str, str]:
    """The reference of each of these request ids that exists (ids as strings)."""
    ids = []
    for request_id in request_ids:
        try:
            ids.append(RemovalRequest._meta.pk.to_python(request_id))
        except ValidationError:
            continue  # not a UUID: no request has it
    return {str(pk): reference for pk, reference in
            RemovalRequest.objects.filter(pk__in=ids).values_list("pk", "reference")}
