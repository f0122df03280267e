"""An exact deletion that retrains two SISA shards runs as one task per shard on two real worker
processes (a Celery chord over Redis, as on two GPU machines sharing a model store), joined before
the served model is exported; a shard task whose process is killed mid-training (SIGKILL) is
redelivered and retrained alone, and the model after the join is byte-identical to the reference
retrained from scratch."""

import os
import re
import signal
import time

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import Client

from compliance import services
from compliance.auditlog import verify_chain
from compliance.models import AuditEvent, RemovalRequest, RequestStatus
from tests.conftest import CODE_PATTERN, one_torch_thread
from tests.integration.test_pipeline_worker import celery_worker, wait_for_outcome
from unlearning import services as unlearning_services
from unlearning.models import JobStatus, ModelVersion, TrainingRecord, UnlearningJob, VersionRole

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def verified_request(email: str, mailoutbox) -> RemovalRequest:
    owner = Client()
    response = owner.post("/", {"full_name": "Row Owner", "email": email, "description": "my rows",
                                "jurisdiction": "gdpr", "confirm": "on"})
    owner.post(response["Location"], {"code": re.search(CODE_PATTERN, mailoutbox[-1].body).group(1)})
    return RemovalRequest.objects.get(email=email)


def running_part(deadline_seconds: float = 300) -> tuple[UnlearningJob, str, int]:
    """Wait until a worker is retraining one of the job's shards; the job, that shard and the id of
    the process training it."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        job = UnlearningJob.objects.filter(status=JobStatus.RUNNING).first()
        for part, run in ((job.parts.get("runs") or {}).items() if job else ()):
            if "finished_at" not in run:
                return job, part, int(run["worker"].rsplit(" pid ", 1)[1])
        time.sleep(0.02)
    pytest.fail("no shard task started")


def test_two_shards_retrain_on_two_workers_and_a_killed_shard_task_is_retried_alone(
        tmp_path, settings, audit_log_reset_allowed, legal_user, mailoutbox):
    with celery_worker(tmp_path, settings, processes=2) as log:
        with one_torch_thread():  # long enough per shard (seconds) to be caught mid-training
            call_command("train_tabular_model", name="digits-sisa", dataset="digits", shards=2, slices=1, epochs=400,
                         hidden=64)
        owners = [TrainingRecord.objects.filter(shard=shard).order_by("record_id").first().owner_key
                  for shard in (0, 1)]
        requests = [verified_request(owner, mailoutbox) for owner in owners]
        with transaction.atomic():  # both scheduled before a worker sees them: one job, two shards
            for request in requests:
                services.approve_request(request_id=request.pk, user=legal_user)
                unlearning_services.schedule_request(request_id=request.pk)

        job, killed_part, pid = running_part()
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)  # the pool process training that shard
        outcomes = [wait_for_outcome(request.pk, log) for request in requests]
        worker_log = log.read_text()

    for request in outcomes:
        assert request.status == RequestStatus.CERTIFIED, f"{request.failure_reason}\n{worker_log[-5000:]}"
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.attempts == 1  # the job itself was never claimed again
    runs = job.parts["runs"]
    assert sorted(runs) == ["0", "1"]
    other_part = next(part for part in runs if part != killed_part)
    # The killed shard was retrained again, alone; the other shard was trained once, by the other
    # worker process, while the first was training.
    assert runs[killed_part]["attempts"] == 2 and runs[other_part]["attempts"] == 1
    assert not runs[other_part]["worker"].endswith(f" pid {pid}")
    assert AuditEvent.objects.filter(action="job.fanned_out", object_id=str(job.pk)).count() == 1
    reference = ModelVersion.objects.get(role=VersionRole.REFERENCE)
    assert reference.sha256 == job.result_version.sha256  # joined shards = retrained from scratch, byte for byte
    assert verify_chain().ok
