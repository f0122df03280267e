"""Reads of audit runs, for the portal, the API and certificates."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.db.models import Q, QuerySet

from audits.models import AuditResult, AuditRun, AuditStatus, Certificate
from audits.persons import PERSON_METRIC, PERSON_RANK_METRIC
from audits.signing import sha256_hex
from audits.verdicts import overall
from compliance.auditlog import subject_ref
from compliance.errors import NotFound, ServiceError
from compliance.models import RemovalRequest, RequestStatus
from unlearning.models import JobStatus, UnlearningJob, VersionRole

ROLES = tuple(VersionRole.values)  # original, unlearned, reference
logger = logging.getLogger(__name__)


def audit_runs_of(request) -> QuerySet[AuditRun]:
    """The request's audit runs (one per unlearning job), oldest first, with their results."""
    return (
        AuditRun.objects.filter(job__requests=request)
        .select_related("job__asset", "original_version", "unlearned_version", "reference_version")
        .prefetch_related("results")
        .order_by("pk")
    )


def audit_run_of(request, run_id) -> AuditRun:
    """One of the request's audit runs; NotFound for any other id, a run of another request included."""
    run = audit_runs_of(request).filter(pk=int(run_id)).first() if str(run_id).isdecimal() else None
    if run is None:
        raise NotFound(f"request {request.reference} has no audit run {run_id}")
    return run


def labelled_results(run: AuditRun) -> list[tuple[str, AuditResult]]:
    """Each result with the plain-language label of the policy rule it was judged under (a metric
    the stored policy does not name is labelled by its name)."""
    labels = {rule["metric"]: rule["label"] for rule in run.policy.get("rules", [])}
    return [(labels.get(result.metric, result.metric), result) for result in run.results.all()]


def scores_by_role(result: AuditResult) -> list[tuple[str, dict]]:
    """The result's per-item scores as (role, scores), original, unlearned and reference first
    (a JSON column keeps no key order)."""
    return sorted(result.per_item.items(), key=lambda pair: ROLES.index(pair[0]) if pair[0] in ROLES else len(ROLES))


def requests_ready_for_certificate(run_id: int) -> list[str]:
    """The run's requests whose every job has a finished audit: each gets its certificate now."""
    run = AuditRun.objects.select_related("job").get(pk=run_id)
    return [str(request.pk) for request in run.job.requests.order_by("pk")
            if not request.jobs.exclude(audit_run__status=AuditStatus.DONE).exists()]


def idle_audits(cutoff) -> list[int]:
    """Jobs that succeeded before `cutoff` whose audit has not started since (no run, or a queued
    one untouched since): the message of their audit task is lost."""
    waiting = (Q(audit_run=None) | Q(audit_run__status=AuditStatus.QUEUED)
               & (Q(audit_run__heartbeat_at=None) | Q(audit_run__heartbeat_at__lt=cutoff)))
    return list(UnlearningJob.objects.filter(waiting, status=JobStatus.SUCCEEDED, finished_at__lt=cutoff)
                .order_by("pk").values_list("pk", flat=True))


def idle_certificates(cutoff) -> list[str]:
    """Requests whose audits all finished before `cutoff` and still wait for their certificate."""
    waiting = (RemovalRequest.objects.filter(status=RequestStatus.AUDITING, certificate=None)
               .exclude(jobs__audit_run__status__in=(AuditStatus.QUEUED, AuditStatus.RUNNING, AuditStatus.FAILED))
               .exclude(jobs__audit_run=None).exclude(jobs__audit_run__finished_at__gte=cutoff))
    return [str(pk) for pk in waiting.distinct().order_by("pk").values_list("pk", flat=True)]


def subject_of(request) -> str:
    """The request's subject as the audits name them: the salted pseudonym of their owner key."""
    return subject_ref(request.subject_key or request.email)


def own_judgement(result: AuditResult, request) -> tuple[str, str]:
    """A result's verdict and explanation for this request's subject: a person-level row of a job of
    several subjects was judged per subject (its row shows the worst); any other result is shared."""
    subjects = sorted((result.details.get("unlearned") or {}).get("combined") or {})
    verdicts = result.details.get("subject_verdicts") or []
    subject = subject_of(request)
    if len(subjects) > 1 and subject in subjects and len(verdicts) == len(subjects):
        verdict, explanation = verdicts[subjects.index(subject)]
        return verdict, explanation
    return result.verdict, result.explanation


def request_verdict(request) -> str:
    """The request's overall verdict over its finished audit runs, each for its own subject (as
    its certificate states it)."""
    return overall([verdict_for(run, request)[0] for run in audit_runs_of(request).filter(status=AuditStatus.DONE)])


def verdict_for(run: AuditRun, request) -> tuple[str, list[dict]]:
    """The run's verdict and family verdicts for this request's subject: their own in a job of
    several subjects (audits.verdicts.subject_verdicts), else the run's."""
    own = run.subjects.get(subject_of(request))
    return (own["verdict"], own["families"]) if own else (run.verdict, run.families)


DEFAULT_TAIL = 0.025  # runs stored before the person-level rule had a tail of their own


def person_ranking(run: AuditRun, request) -> str:
    """In plain words, where the request's subject ranks among the people the model never saw,
    before and after unlearning (the combined person-level membership statistic, audits.persons),
    beside the retrained reference's rank where there is one, read against the tail its rule
    judged by; empty where it was not measured."""
    # Runs judged before the combined row decided kept their ranks on the reported row.
    results = {r.metric: r for r in run.results.all()}
    result = results.get(PERSON_RANK_METRIC) or results.get(PERSON_METRIC)
    subject = subject_of(request)
    ranks = {role: ((result.details.get(role) or {}).get("subjects") or {}).get(subject, {}).get("combined")
             for role in ("original", "unlearned", "reference")} if result else {}
    if not ranks or ranks["original"] is None or ranks["unlearned"] is None:
        return ""
    # The ranks and p-values the verdict used: adjusted for the families tested, where the run adjusted them.
    before, after, reference = ({**rank, **((result.details.get(role) or {}).get("adjusted") or {}).get(subject, {})}
                                if rank else None for role, rank in ranks.items())
    population, tail = after["population"], result.margin or DEFAULT_TAIL
    placed = (f"Among you and the {population} people this model was never trained on, ranked from the one it "
              f"seems to know best: before unlearning you were number {before['rank']}; now you are number "
              f"{after['rank']} of {population + 1}"
              + (f" (a model retrained without your data places you number {reference['rank']})" if reference else ""))
    if 1 / (population + 1) > tail:
        return (f"{placed}. With so few never-trained people to compare with, this ranking cannot tell whether the "
                "model still knows you.")
    if after["p_member"] <= tail:
        now = "it still knows you better than almost everyone it never saw"
    elif after["p_over"] <= tail:
        now = "you now look less familiar to it than almost everyone it never saw, which an attacker could notice"
    else:
        now = "this test finds no sign that it knows you better than people it never saw"
    return (f"{placed}: {now}. (Membership tests on each person's texts; p = {after['p_member']:.2f} that a "
            "never-trained person looks at least as familiar.)")


class CertificateFileMissing(ServiceError):
    """The certificate was issued (its row and hash remain) but its signed PDF is nowhere on file."""

    status, title, code = 410, "Certificate file missing", "certificate_file_missing"


def certificates_folder() -> Path:
    """Where signed certificates are stored: CERTIFICATE_DIR, else VAR_DIR/certificates, read each
    time it is asked, so that an operator who moves the folder (or VAR_DIR) and says so in the
    settings moves every certificate with it."""
    return Path(settings.CERTIFICATE_DIR) if settings.CERTIFICATE_DIR else Path(settings.VAR_DIR) / "certificates"


def certificate_pdf(certificate: Certificate) -> bytes:
    """The certificate's signed PDF, byte for byte as issued: the file of its name in the certificates
    folder as configured now, else the absolute path stored at issuance (a certificate issued into
    another folder, whose file is still there). A file whose SHA-256 is not the recorded one is not
    this certificate. CertificateFileMissing when neither holds it.

    Every reader of a certificate's PDF comes here: the stored path alone went stale as soon as an
    operator moved the folder, and each download answered 500."""
    stored = Path(certificate.pdf_path)
    for path in dict.fromkeys([certificates_folder() / stored.name, stored]):  # in order, once each
        try:
            pdf = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        if sha256_hex(pdf) == certificate.pdf_sha256:
            return pdf
        logger.error("certificate %s: %s is not the PDF that was issued (its SHA-256 differs)", certificate.serial, path)
    logger.error("certificate %s: its PDF is neither in the certificates folder (%s) nor at %s",
                 certificate.serial, certificates_folder(), stored)
    raise CertificateFileMissing(f"certificate {certificate.serial} was issued, but its PDF is no longer on file: "
                                 "the service's operators must restore it to the certificates folder")
