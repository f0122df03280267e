"""Celery tasks: thin. Each loads by id and calls one service or runner; each is safe to run twice
(the services claim rows with conditional updates and skip work that is already done).

The runners are imported inside the tasks because the web process imports this module to
enqueue work and must never import torch.
"""

from celery import shared_task


@shared_task
def schedule_request(request_id: str) -> None:
    from compliance.services import schedule_request as schedule

    schedule(request_id=request_id)


@shared_task
def run_unlearning_job(job_id: int) -> None:
    from unlearning.runner import run_job

    run_job(job_id)


@shared_task
def run_audit(job_id: int) -> None:
    from audits.runner import run_audit as audit

    audit(job_id)


@shared_task
def issue_certificate(request_id: str) -> None:
    from audits.services import issue_certificate as issue

    issue(request_id=request_id)
