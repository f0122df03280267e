"""Celery tasks: thin. Each loads by id, claims its row, and calls one service or runner; each is
safe to run twice (claims are conditional updates, and work already done is skipped). What runs
next is workers.pipeline's, which sends these by name: only worker processes (and the embedded
mode) import this module, and with it the engines and torch.
"""

import logging

from celery import shared_task

from audits import runner as audit_runner
from audits import services as audit_services
from compliance import services as compliance_services
from unlearning import runner as unlearning_runner
from unlearning import services as unlearning_services
from workers import pipeline
from workers.heartbeat import heartbeat

log = logging.getLogger(__name__)


@shared_task
def schedule_request(request_id: str) -> None:
    unlearning_services.schedule_request(request_id=request_id)


def claim_and_run(claim, record_heartbeat, work, key: int, what: str) -> None:
    """Claim the row for `key`, then work on it while a heartbeat says this worker is alive."""
    claimed = claim(key)
    if claimed is None:
        log.info("%s %s is not claimable (taken, finished, waiting for its model or out of attempts)", what, key)
        return
    with heartbeat(lambda: record_heartbeat(claimed.pk, claimed.attempts), f"{what} {key}"):
        work(claimed)


@shared_task
def run_unlearning_job(job_id: int) -> None:
    claim_and_run(unlearning_services.claim_job, unlearning_services.record_heartbeat,
                  unlearning_runner.run_claimed_job, job_id, "unlearning job")


@shared_task(ignore_result=False)  # a chord's header: the join waits for every part's result
def run_job_part(job_id: int, attempt: int, part: int) -> int:
    job_while_claimed(job_id, attempt, lambda job: unlearning_runner.run_job_part(job, part), f"part {part} of")
    return part


@shared_task
def join_job_parts(_parts: list[int], job_id: int, attempt: int) -> None:
    job_while_claimed(job_id, attempt, unlearning_runner.join_job_parts, "the join of")


def job_while_claimed(job_id: int, attempt: int, work, what: str) -> None:
    """Work on a fanned-out job while its claim (`attempt`) is current, heartbeating it: a job whose
    claim went stale and was taken again is left to its new attempt's tasks."""
    job = unlearning_services.current_claim(job_id, attempt).select_related("asset", "base_version").first()
    if job is None:
        log.info("%s unlearning job %s: attempt %s is no longer the job's claim", what, job_id, attempt)
        return
    with heartbeat(lambda: unlearning_services.record_heartbeat(job_id, attempt), f"{what} unlearning job {job_id}"):
        work(job)


@shared_task
def run_audit(job_id: int) -> None:
    claim_and_run(audit_services.claim_audit, audit_services.record_heartbeat, audit_runner.run_claimed_audit, job_id,
                  "the audit of job")


@shared_task
def register_checkpoint(registration_id: int) -> None:
    claim_and_run(unlearning_services.claim_registration, unlearning_services.record_registration_heartbeat,
                  unlearning_runner.run_claimed_registration, registration_id, "model registration")


@shared_task
def issue_certificate(request_id: str) -> None:
    audit_services.issue_certificate(request_id=request_id)


@shared_task
def issue_no_data_statement(request_id: str) -> None:
    audit_services.issue_no_data_statement(request_id=request_id)


@shared_task
def warn_near_deadlines() -> list[str]:
    """Daily (Celery beat): tell the reviewers of requests near their deadline."""
    return compliance_services.warn_near_deadlines()


@shared_task
def sweep_stale_work() -> dict:
    """Periodic (Celery beat): re-queue or fail jobs and audit runs whose worker was lost, and send
    again the tasks of work whose message was lost."""
    return {"jobs": unlearning_services.sweep_stale_jobs(), "audits": audit_services.sweep_stale_audits(),
            "registrations": unlearning_services.sweep_stale_registrations(),
            "resent": pipeline.resend_lost_messages()}
