"""The pipeline: the one place that decides what runs next.

Services report what happened as domain events (compliance.signals, unlearning.signals,
audits.signals) inside their transactions; each receiver here enqueues the follow-up task once
that transaction commits, so a worker never reads a row that was rolled back:

    request approved ──> schedule_request ──> (a job queued) ──> run_unlearning_job
                                          └─> (no model holds the person) ──> issue_no_data_statement
    job succeeded ─────> run_audit, and the model's next queued job
    job failed ────────> the model's next queued job
    audit finished ────> issue_certificate, for each request whose audits are all done
    job or audit re-queued (lost worker, operator) ──> run_unlearning_job / run_audit
    exact deletion fanned out ──> run_job_part for each part (SISA shard), then join_job_parts (a chord)
    checkpoint registration requested (API) ──> register_checkpoint
    work that waits with no message left to start it ──> its task again (resend_lost_messages)

Tasks are sent by name: the web process enqueues work without importing workers.tasks (which
imports the engines, and torch). In the embedded mode (no broker: `CELERY_TASK_ALWAYS_EAGER`) the
work runs in this process, so the tasks are loaded here by name.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from importlib import import_module

from celery import chord
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from audits.selectors import idle_audits, idle_certificates, requests_ready_for_certificate
from audits.signals import audit_finished, audit_queued
from compliance.operations import queue_depths, queues_are_countable
from compliance.selectors import idle_approved_requests
from compliance.signals import request_approved
from config.celery import app
from unlearning.selectors import idle_queued_jobs, idle_queued_registrations, next_queued_job
from unlearning.signals import job_fanned_out, job_finished, job_queued, nothing_to_unlearn, registration_queued

TASKS_MODULE = "workers.tasks"
log = logging.getLogger(__name__)


def enqueue(task: str, *args) -> None:
    """Send `workers.tasks.<task>(*args)` once the current transaction commits. A send that fails
    (the broker is down) is logged and does not undo or fail the work that committed: the sweep
    sends it again (resend_lost_messages)."""
    transaction.on_commit(lambda: send(f"{TASKS_MODULE}.{task}", args), robust=True)


def send(name: str, args: tuple) -> None:
    if app.conf.task_always_eager:
        import_module(TASKS_MODULE)  # registers the tasks with the app
        app.tasks[name].apply_async(args)
    else:
        app.send_task(name, args)


@receiver(request_approved, dispatch_uid="pipeline.schedule_approved_request")
def schedule_approved_request(sender, request_id: str, **_) -> None:
    enqueue("schedule_request", request_id)


@receiver(nothing_to_unlearn, dispatch_uid="pipeline.state_no_data")
def state_no_data(sender, request_id: str, **_) -> None:
    enqueue("issue_no_data_statement", request_id)


@receiver(job_queued, dispatch_uid="pipeline.start_queued_job")
def start_queued_job(sender, job_id: int, **_) -> None:
    enqueue("run_unlearning_job", job_id)


@receiver(job_finished, dispatch_uid="pipeline.after_job")
def after_job(sender, job_id: int, asset_id: int, succeeded: bool, **_) -> None:
    if succeeded:
        enqueue("run_audit", job_id)
    waiting = next_queued_job(asset_id)  # it waited for this job: jobs of one model run one at a time
    if waiting is not None:
        enqueue("run_unlearning_job", waiting.pk)


@receiver(audit_queued, dispatch_uid="pipeline.start_queued_audit")
def start_queued_audit(sender, job_id: int, **_) -> None:
    enqueue("run_audit", job_id)


@receiver(audit_finished, dispatch_uid="pipeline.certify_when_audited")
def certify_when_audited(sender, run_id: int, **_) -> None:
    for request_id in requests_ready_for_certificate(run_id):
        enqueue("issue_certificate", request_id)


@receiver(registration_queued, dispatch_uid="pipeline.load_registered_checkpoint")
def load_registered_checkpoint(sender, registration_id: int, **_) -> None:
    enqueue("register_checkpoint", registration_id)


@receiver(job_fanned_out, dispatch_uid="pipeline.retrain_parts_then_join")
def retrain_parts_then_join(sender, job_id: int, attempt: int, parts: list[int], **_) -> None:
    """One task per part on the gpu queue, as many at once as there are GPU workers; the join runs
    once all have returned (a chord: its counter lives in the result backend)."""
    header = [app.signature(f"{TASKS_MODULE}.run_job_part", (job_id, attempt, part)) for part in parts]
    join = app.signature(f"{TASKS_MODULE}.join_job_parts", (job_id, attempt))
    transaction.on_commit(lambda: chord(header)(join), robust=True)  # as enqueue's


# Each task that starts waiting work, with the rows that wait for it.
WAITING_WORK = {"schedule_request": idle_approved_requests, "run_unlearning_job": idle_queued_jobs,
                "run_audit": idle_audits, "issue_certificate": idle_certificates,
                "register_checkpoint": idle_queued_registrations}


def resend_lost_messages() -> dict[str, list]:
    """Send again the task of work that has waited PIPELINE_RESEND_AFTER_SECONDS with no message in
    its queue to start it. A task message can be lost after its row committed: Redis restarted
    without persistence, or the broker was down when the message was sent. Tasks are safe to run
    twice, so a resend that meets its original costs one no-op; while a queue holds messages the
    waiting work may be among them, so it is left alone (and each key is resent once per period).
    Queue depths are read from the broker (Redis, or the filesystem transport's files); tasks run
    in-process (`make demo`, the tests) are never in a broker."""
    if not queues_are_countable():
        return {}
    period = settings.PIPELINE_RESEND_AFTER_SECONDS
    cutoff = timezone.now() - timedelta(seconds=period)
    depths = queue_depths()  # before this sweep sends anything
    resent: dict[str, list] = {}
    for task, waiting in WAITING_WORK.items():
        name = f"{TASKS_MODULE}.{task}"
        if depths.get(queue_of(name)):
            continue
        for key in waiting(cutoff):
            if cache.add(f"pipeline-resent:{task}:{key}", True, timeout=period):
                send(name, (key,))
                resent.setdefault(task, []).append(key)
    if resent:
        log.warning("re-sent the tasks of work waiting for more than %s s with no message: %s", period, resent)
    return resent


def queue_of(task_name: str) -> str:
    return app.conf.task_routes.get(task_name, {}).get("queue", app.conf.task_default_queue)
