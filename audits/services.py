"""State changes of audit runs and certificates: atomic, each with its audit event. What runs next
is the pipeline's (workers.pipeline), told through audits.signals; a request's status changes go
through compliance.services."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audits.certificate_pdf import render_certificate, render_no_data_statement
from audits.certificates import certificate_content, no_data_content, signing_identity, timestamp_authority
from audits.metrics import privleak
from audits.models import AuditResult, AuditRun, AuditStatus, Certificate, CertificateKind
from audits.selectors import certificates_folder
from audits.signals import audit_finished, audit_queued
from audits.signing import sha256_hex, sign_pdf
from audits.verdicts import POLICIES, VerdictPolicy
from compliance import auditlog
from compliance import selectors as compliance_selectors
from compliance import services as compliance_services
from compliance.db import on_a_live_connection
from compliance.errors import TransitionNotAllowed
from compliance.models import RequestStatus
from unlearning import selectors as unlearning_selectors
from unlearning import services as unlearning_services
from unlearning.models import UnlearningJob
from unlearning.selectors import stale_claim

WORKER = compliance_services.WORKER


def claim_audit(job_id: int) -> AuditRun | None:
    """Take the job's audit run for this worker (conditional UPDATE); None if it is taken, done or
    out of attempts. As with jobs (unlearning.services.claim_job), a running audit whose worker
    stopped heartbeating is claimable again, an attempt counted; out of attempts, it fails."""
    with transaction.atomic():
        job = UnlearningJob.objects.select_for_update().get(pk=job_id)
        run, _ = AuditRun.objects.get_or_create(job=job, defaults={"policy": POLICIES[job.asset.kind].as_dict()})
        now = timezone.now()
        claimed = AuditRun.objects.filter(
            Q(status=AuditStatus.QUEUED) | stale_claim(now), pk=run.pk, attempts__lt=settings.JOB_MAX_ATTEMPTS,
        ).update(status=AuditStatus.RUNNING, attempts=F("attempts") + 1, started_at=now, heartbeat_at=now,
                 claimed_by=unlearning_services.this_worker(), progress=0.0, progress_message="")
        if not claimed:
            stale = AuditRun.objects.filter(stale_claim(now), pk=run.pk).first()
            if stale is not None:  # and no attempt left
                fail_audit(run_id=run.pk, error=f"{unlearning_services.lost_worker(stale)}; no attempt is left")
            return None
        run.refresh_from_db()
        auditlog.append(actor=WORKER, action="audit.started", obj=run,
                        data={"job": job.pk, "policy_version": run.policy["version"], "attempt": run.attempts,
                              "worker": run.claimed_by})
        return run


def record_heartbeat(run_id: int, attempt: int) -> None:
    """While `attempt` is the run's current claim (see unlearning.services.current_claim)."""
    AuditRun.objects.filter(pk=run_id, status=AuditStatus.RUNNING, attempts=attempt).update(heartbeat_at=timezone.now())


def record_audit_progress(run_id: int, attempt: int, fraction: float, message: str) -> None:
    """How far the run is (0..1) and at which stage (audits.wording.AUDIT_STAGES' keys), while
    `attempt` is its current claim: for the owner's status page, and a heartbeat too (as
    unlearning.services.record_progress)."""
    on_a_live_connection(lambda: AuditRun.objects.filter(pk=run_id, status=AuditStatus.RUNNING, attempts=attempt).update(
        progress=min(max(fraction, 0.0), 1.0), progress_message=message[:200], heartbeat_at=timezone.now()))


def result_details(judgement, scores: dict) -> dict:
    """Per role, the figures an audit reported beside its metric; the rule's own (KS p-values);
    PrivLeak for membership AUCs measured against a real retrained reference."""
    measured = {role: by_metric[judgement.metric] for role, by_metric in scores.items() if judgement.metric in by_metric}
    details = {role: score.details for role, score in measured.items() if score.details}
    details.update(judgement.details)
    # Only against a real reference: PrivLeak against an assumed 0.5 is what MUSE warns about.
    if judgement.audit == "membership_inference" and judgement.difference_interval is not None and "reference" in scores:
        details["privleak"] = privleak(judgement.unlearned, judgement.reference)
    return details


def per_item_scores(rule, scores: dict) -> dict:
    """The per-item scores the rule judged (its source metric's), per role that has them."""
    return {role: by_metric[rule.scores_metric].per_item for role, by_metric in scores.items()
            if rule.scores_metric in by_metric}


@transaction.atomic
def complete_audit(*, run_id: int, attempt: int, versions: dict, comparison: str, judgements: list, scores: dict,
                   verdict: str, basis: str = "audits", families: list[dict] = (),
                   subjects: dict | None = None, runtime_filters: dict | None = None) -> AuditRun:
    """Store the results, if the worker's claim (`attempt`) is still the run's current one; once
    every audit of a request is done, its certificate follows (workers.pipeline).

    `versions[role]` is a ModelVersion (no "reference" when compared with never-trained people);
    `scores[role][metric]` a MetricScore (per-item values kept); `families` the family verdicts
    (audits.verdicts.FamilyVerdict.as_dict); `subjects` each subject's own verdict and families
    for a job of several (audits.verdicts.subject_verdicts); `runtime_filters` the filters prepared
    for the unlearned version and what they measured (audits.runtime_filters), activated on it at
    certification.
    """
    run = AuditRun.objects.select_for_update(of=("self",)).select_related("job").get(pk=run_id)
    if run.status != AuditStatus.RUNNING or run.attempts != attempt:
        return run
    rules = {rule.metric: rule for rule in VerdictPolicy.from_dict(run.policy).rules}
    for judgement in judgements:
        difference, power = judgement.difference_interval or (None, None), judgement.power_interval or (None, None)
        AuditResult.objects.create(
            run=run, audit=judgement.audit, metric=judgement.metric,
            original_value=judgement.original, unlearned_value=judgement.unlearned,
            reference_value=judgement.reference, margin=judgement.margin, verdict=judgement.verdict,
            difference_low=difference[0], difference_high=difference[1], power_low=power[0], power_high=power[1],
            explanation=judgement.explanation, sample_size=judgement.sample_size,
            per_item=per_item_scores(rules[judgement.metric], scores), details=result_details(judgement, scores),
        )
    run.original_version, run.unlearned_version = versions["original"], versions["unlearned"]
    run.reference_version, run.comparison = versions.get("reference"), comparison
    run.sample_sizes = {j.metric: j.sample_size for j in judgements}
    run.verdict, run.verdict_basis, run.families, run.subjects = verdict, basis, list(families), subjects or {}
    run.runtime_filters = runtime_filters or {}
    run.status, run.finished_at, run.progress = AuditStatus.DONE, timezone.now(), 1.0
    run.save()
    auditlog.append(actor=WORKER, action="audit.completed", obj=run, data={
        "verdict": verdict, "basis": basis, "policy_version": run.policy["version"], "comparison": comparison,
        "families": {family["family"]: family["verdict"] for family in run.families},
        "unlearned_sha256": run.unlearned_version.sha256,
        "reference_sha256": run.reference_version.sha256 if run.reference_version else None,
        "metrics": {j.metric: [j.original, j.unlearned, j.reference, j.verdict] for j in judgements},
        "runtime_filters": sorted(run.runtime_filters.get("filters", {})),
    })
    audit_finished.send(sender=AuditRun, run_id=run.pk)
    return run


@transaction.atomic
def fail_audit(*, run_id: int, error: str, attempt: int | None = None) -> None:
    """The run failed, and so do its requests; a worker passes its claim (`attempt`), and a claim
    that was taken over fails nothing."""
    run = AuditRun.objects.select_for_update(of=("self",)).select_related("job").get(pk=run_id)
    if run.status in (AuditStatus.DONE, AuditStatus.FAILED) or attempt not in (None, run.attempts):
        return
    run.status, run.error, run.finished_at = AuditStatus.FAILED, error[:4000], timezone.now()
    run.save()
    auditlog.append(actor=WORKER, action="audit.failed", obj=run, data={"error": error[:500]})
    for request in run.job.requests.select_for_update().order_by("pk"):
        compliance_services.fail(request, step="audit", reason=error)


def sweep_stale_audits() -> dict[str, list[int]]:
    """Running audits whose worker is gone: re-queued while attempts remain, failed after (as
    unlearning.services.sweep_stale_jobs)."""
    stale = AuditRun.objects.filter(stale_claim()).order_by("pk").values_list("pk", flat=True)
    return unlearning_services.sweep_each(list(stale), sweep_stale_audit, "audit run")


@transaction.atomic
def sweep_stale_audit(run_id: int) -> str | None:
    job_id = AuditRun.objects.filter(pk=run_id).values_list("job_id", flat=True).first()
    # claim_audit's lock order, the job before its run: a claim and the sweep never wait on each other.
    list(UnlearningJob.objects.select_for_update().filter(pk=job_id).values_list("pk", flat=True))
    run = AuditRun.objects.select_for_update().filter(stale_claim(), pk=run_id).first()
    if run is None:
        return None
    if run.attempts >= settings.JOB_MAX_ATTEMPTS:
        fail_audit(run_id=run.pk, error=f"{unlearning_services.lost_worker(run)}; no attempt is left")
        return "failed"
    reason = unlearning_services.lost_worker(run)
    run.status = AuditStatus.QUEUED
    run.save(update_fields=["status"])
    auditlog.append(actor=WORKER, action="audit.requeued", obj=run, data={"attempts": run.attempts, "reason": reason})
    audit_queued.send(sender=AuditRun, job_id=run.job_id)
    return "requeued"


def _serial() -> str:
    return f"UC-{timezone.now():%Y%m%d}-{secrets.token_hex(4).upper()}"


@transaction.atomic
def issue_certificate(*, request_id) -> Certificate:
    """Render, sign and store the request's certificate, then mark the request certified.

    The PDF cites the audit log's head at issuance; the `request.certified` event that follows
    records the PDF's hash, so each vouches for the other. Safe to run twice.
    """
    request = compliance_services.lock_request(request_id)
    existing = Certificate.objects.filter(request=request).first()
    if existing:
        return existing
    if request.status != RequestStatus.AUDITING:
        raise TransitionNotAllowed(f"a request that is {request.status} cannot be certified")
    head = auditlog.AuditEvent.objects.order_by("-seq").first()
    runs = list(AuditRun.objects.filter(job__requests=request).select_related("job__asset").order_by("pk"))
    serial = _serial()
    summary = compliance_selectors.request_result(request)["headline"]  # the owner's page says it so too
    content = certificate_content(request=request, runs=runs, serial=serial, head=head, summary=summary)
    certificate = _sign_and_store(request, render_certificate(content), serial=serial, head=head, audit_run=runs[-1],
                                  reason=f"Unlearning certificate {serial}")
    compliance_services.certify(request, certificate=serial, pdf_sha256=certificate.pdf_sha256,
                                verdict=content.overall_verdict, summary=summary)
    for run in runs:  # from now on the model is served with the filters that cover this request
        if run.runtime_filters.get("filters"):
            unlearning_services.activate_runtime_filters(version=run.unlearned_version, prepared=run.runtime_filters,
                                                         request_id=request.pk)
    return certificate


@transaction.atomic
def issue_no_data_statement(*, request_id) -> Certificate | None:
    """An approved request whose verified person no governed model holds a training record of: sign
    the statement that says so, over every model searched, and complete the request. Safe to run
    twice; None (nothing signed) when the request is not waiting for it, or a model holds the
    person's records after all (scheduling queues their jobs instead)."""
    request = compliance_services.lock_request(request_id)
    existing = Certificate.objects.filter(request=request).first()
    if existing or request.status != RequestStatus.APPROVED or unlearning_selectors.assets_to_unlearn(request):
        return existing
    head = auditlog.AuditEvent.objects.order_by("-seq").first()
    serial = _serial()
    content = no_data_content(request=request, serial=serial, head=head)
    certificate = _sign_and_store(request, render_no_data_statement(content), serial=serial, head=head,
                                  kind=CertificateKind.NO_DATA, reason=f"Statement of no data held {serial}")
    compliance_services.complete_without_data(request, certificate=serial, pdf_sha256=certificate.pdf_sha256)
    return certificate


def _sign_and_store(request, pdf: bytes, *, serial: str, head, reason: str, audit_run=None,
                    kind: str = CertificateKind.UNLEARNING) -> Certificate:
    identity = signing_identity()
    signed = sign_pdf(pdf, identity, reason=reason, location=settings.SITE_URL, timestamp=timestamp_authority())
    # Named by its serial in the certificates folder, where readers look for it first
    # (audits.selectors.certificate_pdf); the absolute path is kept as where it was written.
    directory = certificates_folder()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{serial}.pdf"
    path.write_bytes(signed)
    return Certificate.objects.create(
        serial=serial, kind=kind, request=request, audit_run=audit_run, pdf_path=str(path),
        pdf_sha256=sha256_hex(signed), signer_subject=identity.subject(), signer_fingerprint=identity.fingerprint(),
        audit_event_seq=head.seq, audit_event_hash=head.entry_hash,
    )
