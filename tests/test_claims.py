"""Claims that recover: a job or audit run whose worker stopped heartbeating is claimed again (an
attempt counted), re-queued by the sweep, failed with the reason once out of attempts, and an
operator can re-queue or fail a stuck job from the API, each step in the audit log. The pipeline
sends each follow-up task once the transaction commits, and again where its message was lost."""

import json
from datetime import timedelta

import pytest
import redis
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from audits import services as audit_services
from audits.models import AuditRun, AuditStatus
from compliance.models import AuditEvent, RemovalRequest, RequestStatus
from tests.test_api import assert_problem
from tests.test_lineage import approved, governed  # noqa: F401  (fixture)
from unlearning import services as unlearning_services
from unlearning.models import JobStatus, ModelAsset, UnlearningJob
from workers.pipeline import resend_lost_messages

pytestmark = pytest.mark.django_db


@pytest.fixture
def running_job(tiny_model, governed, submit, legal_user):  # noqa: F811
    unlearning_services.schedule_request(request_id=approved(submit, legal_user, tiny_model.world.trained_people[0]).pk)
    return unlearning_services.claim_job(UnlearningJob.objects.get().pk)


def silence(job_or_run, seconds: int) -> None:
    """As if its worker had died `seconds` ago."""
    type(job_or_run).objects.filter(pk=job_or_run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


def test_a_running_job_is_not_claimed_again_while_its_worker_heartbeats(running_job, settings):
    assert unlearning_services.claim_job(running_job.pk) is None
    silence(running_job, settings.JOB_STALE_AFTER_SECONDS - 10)
    assert unlearning_services.claim_job(running_job.pk) is None
    running_job.refresh_from_db()
    assert running_job.status == JobStatus.RUNNING and running_job.attempts == 1


def test_a_stale_claim_is_taken_by_the_next_delivery_with_its_attempt_counted(running_job, settings):
    silence(running_job, settings.JOB_STALE_AFTER_SECONDS + 1)
    again = unlearning_services.claim_job(running_job.pk)
    assert again is not None and again.attempts == 2 and again.base_version == running_job.base_version
    assert AuditEvent.objects.filter(action="job.started", object_id=str(running_job.pk)).count() == 2
    assert "pid" in again.claimed_by


def test_a_claim_past_the_hard_time_limit_is_stale_even_with_a_heartbeat(running_job, settings):
    UnlearningJob.objects.filter(pk=running_job.pk).update(
        started_at=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 1))
    assert unlearning_services.claim_job(running_job.pk).attempts == 2


def test_the_sweep_requeues_a_lost_job_and_the_pipeline_sends_it_again(running_job, settings,
                                                                       django_capture_on_commit_callbacks):
    silence(running_job, settings.JOB_STALE_AFTER_SECONDS + 1)
    with django_capture_on_commit_callbacks() as callbacks:
        swept = unlearning_services.sweep_stale_jobs()
    assert swept == {"requeued": [running_job.pk], "failed": []}
    assert len(callbacks) == 1  # run_unlearning_job, once the re-queue commits
    running_job.refresh_from_db()
    assert running_job.status == JobStatus.QUEUED and running_job.attempts == 1
    event = AuditEvent.objects.get(action="job.requeued")
    assert event.actor == "worker" and event.data["reason"].startswith("WorkerLost: attempt 1 of 3 on ")
    assert "no heartbeat since" in event.data["reason"]
    assert unlearning_services.sweep_stale_jobs() == {"requeued": [], "failed": []}  # nothing twice
    assert unlearning_services.claim_job(running_job.pk).attempts == 2


def test_out_of_attempts_a_lost_job_fails_with_the_reason_and_so_does_its_request(running_job, settings):
    settings.JOB_MAX_ATTEMPTS = 1
    silence(running_job, settings.JOB_STALE_AFTER_SECONDS + 1)
    assert unlearning_services.claim_job(running_job.pk) is None  # the next delivery sees it and fails it
    running_job.refresh_from_db()
    assert running_job.status == JobStatus.FAILED and running_job.error.startswith("WorkerLost: attempt 1 of 1 on ")
    assert running_job.error.endswith("no attempt is left")
    request = running_job.requests.get()
    assert request.status == RequestStatus.FAILED and request.failed_step == "unlearning"
    assert "WorkerLost" in request.failure_reason


def test_the_sweep_fails_a_lost_job_out_of_attempts(running_job, settings):
    settings.JOB_MAX_ATTEMPTS = 1
    silence(running_job, settings.JOB_STALE_AFTER_SECONDS + 1)
    call_command("sweep_stale_work")
    running_job.refresh_from_db()
    assert running_job.status == JobStatus.FAILED and "no attempt is left" in running_job.error


def test_an_operator_requeues_or_fails_a_stuck_job_on_the_api(running_job, legal_api, legal_user, settings,
                                                               django_capture_on_commit_callbacks):
    # While its worker heartbeats, a job is not stuck: re-queued, two workers would run it.
    refused = legal_api.post(f"/api/v1/jobs/{running_job.pk}/requeue/", {"reason": "node rebooted"}, format="json")
    assert_problem(refused, 409)
    assert "it is working" in refused.json()["detail"]
    silence(running_job, settings.JOB_STALE_AFTER_SECONDS + 1)
    with django_capture_on_commit_callbacks() as callbacks:
        response = legal_api.post(f"/api/v1/jobs/{running_job.pk}/requeue/", {"reason": "node rebooted"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert len(callbacks) == 1
    event = AuditEvent.objects.get(action="job.requeued")
    assert event.actor.startswith(f"user:{legal_user.pk}:") and event.data["reason"] == "node rebooted"
    # Queued, it is no longer stuck: neither action applies; problems, and nothing changes.
    assert_problem(legal_api.post(f"/api/v1/jobs/{running_job.pk}/requeue/", {}, format="json"), 409)
    assert_problem(legal_api.post(f"/api/v1/jobs/{running_job.pk}/fail/", {"reason": "x"}, format="json"), 409)

    unlearning_services.claim_job(running_job.pk)
    assert_problem(legal_api.post(f"/api/v1/jobs/{running_job.pk}/fail/", {}, format="json"), 400)  # no reason
    response = legal_api.post(f"/api/v1/jobs/{running_job.pk}/fail/", {"reason": "GPU node retired"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "failed"
    request = running_job.requests.get()
    assert request.status == RequestStatus.FAILED and request.failure_reason == "Stopped by an operator: GPU node retired"
    assert AuditEvent.objects.get(action="job.failed").actor.startswith(f"user:{legal_user.pk}:")
    assert_problem(legal_api.get("/api/v1/jobs/999999/"), 404)
    assert_problem(legal_api.get("/api/v1/jobs/not-a-number/"), 404)


def test_an_operator_cannot_requeue_a_job_out_of_attempts(running_job, legal_api, settings):
    settings.JOB_MAX_ATTEMPTS = 1
    silence(running_job, settings.JOB_STALE_AFTER_SECONDS + 1)
    assert_problem(legal_api.post(f"/api/v1/jobs/{running_job.pk}/requeue/", {}, format="json"), 409)
    running_job.refresh_from_db()
    assert running_job.status == JobStatus.RUNNING


def test_a_claim_that_was_taken_over_writes_nothing(running_job, settings):
    """The first worker was only slow: its late heartbeat, progress, failure or result must not
    touch the job a second worker now holds."""
    silence(running_job, settings.JOB_STALE_AFTER_SECONDS + 1)
    second = unlearning_services.claim_job(running_job.pk)
    first_attempt = running_job.attempts
    stamp = UnlearningJob.objects.get(pk=second.pk).heartbeat_at
    unlearning_services.record_heartbeat(second.pk, first_attempt)
    unlearning_services.record_progress(second.pk, first_attempt, 0.9, "late")
    unlearning_services.fail_job(job_id=second.pk, step="unlearning", error="late", attempt=first_attempt)
    unlearning_services.complete_job(job_id=second.pk, attempt=first_attempt, sha256=second.base_version.sha256,
                                     path=second.base_version.storage_path, outcome={})
    job = UnlearningJob.objects.get(pk=second.pk)
    assert (job.status, job.attempts, job.progress, job.heartbeat_at) == (JobStatus.RUNNING, 2, 0.0, stamp)
    assert job.requests.get().status == RequestStatus.UNLEARNING
    unlearning_services.record_progress(second.pk, second.attempts, 0.5, "going")
    assert UnlearningJob.objects.get(pk=second.pk).progress == 0.5  # the current claim writes


def test_a_running_claim_from_before_heartbeats_is_stale_only_past_the_time_limit(running_job, settings):
    UnlearningJob.objects.filter(pk=running_job.pk).update(heartbeat_at=None)
    assert unlearning_services.sweep_stale_jobs() == {"requeued": [], "failed": []}
    UnlearningJob.objects.filter(pk=running_job.pk).update(
        started_at=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 1))
    assert unlearning_services.sweep_stale_jobs() == {"requeued": [running_job.pk], "failed": []}
    assert "running past the hard time limit" in AuditEvent.objects.get(action="job.requeued").data["reason"]


def test_a_lost_audit_is_claimed_again_swept_and_finally_failed(running_job, settings,
                                                                 django_capture_on_commit_callbacks):
    run = audit_services.claim_audit(running_job.pk)
    assert run.status == AuditStatus.RUNNING and audit_services.claim_audit(running_job.pk) is None
    silence(run, settings.JOB_STALE_AFTER_SECONDS + 1)
    assert audit_services.claim_audit(running_job.pk).attempts == 2
    silence(run, settings.JOB_STALE_AFTER_SECONDS + 1)
    with django_capture_on_commit_callbacks() as callbacks:
        assert audit_services.sweep_stale_audits() == {"requeued": [run.pk], "failed": []}
    assert len(callbacks) == 1  # run_audit
    assert AuditRun.objects.get(pk=run.pk).status == AuditStatus.QUEUED
    settings.JOB_MAX_ATTEMPTS = 3
    audit_services.claim_audit(running_job.pk)  # the third attempt
    silence(run, settings.JOB_STALE_AFTER_SECONDS + 1)
    assert audit_services.sweep_stale_audits() == {"requeued": [], "failed": [run.pk]}
    run.refresh_from_db()
    assert run.status == AuditStatus.FAILED and "no attempt is left" in run.error
    assert running_job.requests.get().failed_step == "audit"


def test_approval_sends_the_scheduling_task_only_once_it_commits(verified_request, legal_user,
                                                                 django_capture_on_commit_callbacks):
    from compliance import services

    with django_capture_on_commit_callbacks() as callbacks:
        services.approve_request(request_id=verified_request.pk, user=legal_user)
    sends = [callback for callback in callbacks if callback.__qualname__.startswith("enqueue.")]
    assert len(sends) == 1  # beside it, the owner's e-mail


def test_a_later_job_retains_neither_its_own_records_nor_those_earlier_jobs_removed(running_job):
    """Retaining what an earlier job made the model forget would train it back in."""
    from pathlib import Path

    from unlearning.manifest import read_manifest
    from unlearning.runner import retained

    manifest = read_manifest(Path(running_job.asset.training_manifest))
    earlier = [r["record_id"] for r in manifest if r["record_id"] not in running_job.forget_record_ids][:3]
    UnlearningJob.objects.create(asset=running_job.asset, method="graddiff", status=JobStatus.SUCCEEDED,
                                 forget_record_ids=earlier)
    kept = {r["record_id"] for r in retained(running_job, manifest)}
    assert not kept & (set(earlier) | set(running_job.forget_record_ids))
    assert len(kept) == len(manifest) - len(earlier) - len(running_job.forget_record_ids)


@pytest.fixture
def redis_broker(settings):
    """This process's Celery app on a real Redis of the tests' own (no worker reads it)."""
    from config.celery import app
    from tests.integration.test_pipeline_worker import REDIS_URL, use_broker

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    settings.CELERY_BROKER_URL, settings.CELERY_TASK_ALWAYS_EAGER = REDIS_URL, False
    use_broker(app, REDIS_URL, eager=False)
    yield client
    use_broker(app, "memory://", eager=True)
    client.flushdb()


@pytest.fixture
def files_broker(settings, tmp_path):
    """This process's Celery app on kombu's filesystem transport (`make serve`'s), in a folder of
    the test's own: returns a reader of the messages of a queue."""
    from config.celery import app
    from tests.integration.test_pipeline_worker import use_broker

    folder = tmp_path / "broker"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False}
    settings.CELERY_BROKER_URL, settings.CELERY_TASK_ALWAYS_EAGER = "filesystem://localhost/", False
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    app.conf.broker_transport_options = options
    use_broker(app, settings.CELERY_BROKER_URL, eager=False)
    yield lambda queue: [path.read_bytes() for path in folder.glob(f"*.{queue}.msg")]
    use_broker(app, "memory://", eager=True)


@pytest.fixture(params=["redis", "files"])
def broker_messages(request):
    """Each broker the pipeline may send to, as a reader of one queue's raw messages."""
    if request.param == "redis":
        client = request.getfixturevalue("redis_broker")
        return lambda queue: client.lrange(queue, 0, -1)
    return request.getfixturevalue("files_broker")


def queued_tasks(messages, queue: str) -> list[tuple[str, list]]:
    return sorted((message["headers"]["task"].rsplit(".", 1)[1], message["headers"]["argsrepr"])
                  for message in map(json.loads, messages(queue)))


def test_work_whose_task_message_was_lost_gets_it_sent_again_once_and_only_into_an_empty_queue(
        audited_request, submit, settings, broker_messages):
    settings.PIPELINE_RESEND_AFTER_SECONDS = 600
    long_ago, just_now = timezone.now() - timedelta(seconds=601), timezone.now() - timedelta(seconds=5)
    # Waiting past the period: a certificate (its audits all done), a scheduling, a job's start, an audit's start.
    certifying, _, run = audited_request
    RemovalRequest.objects.filter(pk=certifying.pk).update(status=RequestStatus.AUDITING)
    AuditRun.objects.filter(pk=run.pk).update(finished_at=long_ago)
    approved_request, _ = submit(email="approved@mail.example")
    RemovalRequest.objects.filter(pk=approved_request.pk).update(status=RequestStatus.APPROVED, decided_at=long_ago)
    free, busy = (ModelAsset.objects.create(name=name, architecture="GPT-2 (tiny)") for name in ("free", "busy"))
    queued = UnlearningJob.objects.create(asset=free, method="graddiff")
    unaudited = UnlearningJob.objects.create(asset=free, method="graddiff", status=JobStatus.SUCCEEDED, finished_at=long_ago)
    behind_a_running_job = UnlearningJob.objects.create(asset=busy, method="graddiff")
    UnlearningJob.objects.create(asset=busy, method="graddiff", status=JobStatus.RUNNING, heartbeat_at=just_now)
    UnlearningJob.objects.filter(pk__in=[queued.pk, behind_a_running_job.pk]).update(created_at=long_ago)
    # Not waiting long enough: approved a moment ago.
    recent, _ = submit(email="recent@mail.example")
    RemovalRequest.objects.filter(pk=recent.pk).update(status=RequestStatus.APPROVED, decided_at=just_now)

    resent = resend_lost_messages()

    assert resent == {"schedule_request": [str(approved_request.pk)], "run_unlearning_job": [queued.pk],
                      "run_audit": [unaudited.pk], "issue_certificate": [str(certifying.pk)]}
    assert queued_tasks(broker_messages, "cpu") == sorted([("issue_certificate", repr((str(certifying.pk),))),
                                                           ("schedule_request", repr((str(approved_request.pk),)))])
    assert queued_tasks(broker_messages, "gpu") == sorted([("run_audit", repr((unaudited.pk,))),
                                                           ("run_unlearning_job", repr((queued.pk,)))])
    assert resend_lost_messages() == {}  # once per period
    cache.clear()
    assert resend_lost_messages() == {}  # the queues hold messages: the waiting work may be among them
