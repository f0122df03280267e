"""A worker process killed mid-job (SIGKILL, as the kernel's OOM killer would) loses nothing: its
claim goes stale, the periodic sweep (Celery beat, embedded in the worker) re-queues the job, a
fresh worker process claims it again, and the request is certified exactly once."""

import os
import re
import signal

import pytest
from django.test import Client

from audits.models import Certificate
from compliance.auditlog import verify_chain
from compliance.models import AuditEvent, RemovalRequest, RequestStatus
from tests.conftest import CODE_PATTERN, register_tiny_model
from tests.integration.test_pipeline_worker import celery_worker, wait_for_outcome, wait_until
from unlearning.models import JobStatus, ModelVersion, UnlearningJob, VersionRole

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Seconds, short so the test runs in about a minute: a heartbeat every second, a claim stale after
# four silent seconds, a sweep every two.
FAST_RECOVERY = {"JOB_HEARTBEAT_SECONDS": "1", "JOB_STALE_AFTER_SECONDS": "4", "JOB_SWEEP_SECONDS": "2"}


def claimant(claim) -> int:
    """The id of the process that holds a job's or an audit run's claim."""
    return int(claim.claimed_by.rsplit(" pid ", 1)[1])


def running_job_process(log_path) -> tuple[UnlearningJob, int]:
    """Wait until the worker has started unlearning (the method reported progress), and return the
    job with the id of the process that holds its claim."""
    job = wait_until(lambda: UnlearningJob.objects.filter(status=JobStatus.RUNNING, progress__gt=0).first(),
                     "the job's start", log_path)
    return job, claimant(job)


def verified_request(tiny_model, mailoutbox) -> RemovalRequest:
    """A request of the tiny world's first person, filed and verified on the portal."""
    subject = tiny_model.world.trained_people[0]
    owner = Client()
    response = owner.post("/", {"full_name": subject.name, "email": subject.email, "description": "all of it",
                                "jurisdiction": "gdpr", "confirm": "on"})
    owner.post(response["Location"], {"code": re.search(CODE_PATTERN, mailoutbox[-1].body).group(1)})
    return RemovalRequest.objects.get()


def test_a_worker_killed_mid_job_is_recovered_and_the_job_completes_once(
        tiny_model, tmp_path, settings, audit_log_reset_allowed, legal_api, mailoutbox):
    asset = register_tiny_model(tiny_model)
    request = verified_request(tiny_model, mailoutbox)

    with celery_worker(tmp_path, settings, env=FAST_RECOVERY, beat=True) as log:
        assert legal_api.post(f"/api/v1/requests/{request.pk}/approve/", {}, format="json").status_code == 200
        job, pid = running_job_process(log)
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)  # the pool process running the job, mid-method
        request = wait_for_outcome(request.pk, log)
        worker_log = log.read_text()

    assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}\n{worker_log[-5000:]}"
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 2
    assert job.claimed_by.rsplit(" pid ", 1)[1] != str(pid)  # finished by another process
    # Exactly once: one new model version, one certificate; the lost attempt left nothing behind.
    assert ModelVersion.objects.filter(asset=asset, role=VersionRole.UNLEARNED).count() == 1
    assert Certificate.objects.filter(request=request).count() == 1
    events = list(AuditEvent.objects.filter(object_type="unlearning.UnlearningJob", object_id=str(job.pk))
                  .order_by("seq").values_list("action", flat=True))
    claims = [action for action in events if action in ("job.started", "job.requeued", "job.succeeded", "job.failed")]
    assert claims == ["job.started", "job.requeued", "job.started", "job.succeeded"]
    requeued = AuditEvent.objects.get(action="job.requeued", object_id=str(job.pk))
    assert requeued.actor == "worker" and requeued.data["reason"].startswith("WorkerLost: attempt 1 of 3 on ")
    assert f"pid {pid}: no heartbeat since" in requeued.data["reason"]
    assert verify_chain().ok
