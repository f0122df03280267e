"""Faults on real processes, each in the middle of a real pipeline (PostgreSQL, Redis, a `celery
worker` process with beat embedded, real training and signing): a worker process SIGKILLed during
the audit and again while it signs the certificate, the broker restarted without persistence while
a job runs, every database connection cut while the job trains and again while the audit scores.
Whatever happens, the request ends certified exactly once. A worker SIGKILLed during unlearning is
tests/integration/test_worker_recovery.py's."""

import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter

import pytest
import redis
from django.db import connection

from audits.models import AuditRun, AuditStatus, Certificate
from compliance.auditlog import verify_chain
from compliance.models import AuditEvent, RequestStatus
from tests.conftest import register_tiny_model
from tests.integration.test_pipeline_worker import celery_worker, wait_for_outcome, wait_until
from tests.integration.test_worker_recovery import FAST_RECOVERY, claimant, running_job_process, verified_request
from unlearning.models import JobStatus, ModelVersion, UnlearningJob, VersionRole

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

def approve(legal_api, request) -> None:
    assert legal_api.post(f"/api/v1/requests/{request.pk}/approve/", {}, format="json").status_code == 200


def approve_and_wait_for_training(legal_api, request, log) -> None:
    approve(legal_api, request)
    running_job_process(log)


def assert_certified_exactly_once(request, asset, worker_log: str) -> UnlearningJob:
    """Certified; one new model version, one job, one audit run, one certificate; every step of the
    lifecycle logged once, in a chain that verifies. Returns the request's job."""
    assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}\n{worker_log[-5000:]}"
    assert ModelVersion.objects.filter(asset=asset, role=VersionRole.UNLEARNED).count() == 1
    job = UnlearningJob.objects.get(requests=request)
    assert job.status == JobStatus.SUCCEEDED
    assert AuditRun.objects.filter(job=job).count() == 1 and Certificate.objects.filter(request=request).count() == 1
    once = ("request.approved", "request.scheduled", "request.unlearning", "request.auditing", "request.certified",
            "job.queued", "job.succeeded", "audit.completed")
    actions = Counter(AuditEvent.objects.values_list("action", flat=True))
    assert {action: actions[action] for action in once} == dict.fromkeys(once, 1)
    assert not actions["job.failed"] and not actions["audit.failed"] and not actions["request.failed"]
    assert verify_chain().ok
    return job


def test_a_worker_killed_during_the_audit_and_again_while_signing_certifies_once(
        tiny_model, tmp_path, settings, audit_log_reset_allowed, legal_api, mailoutbox):
    asset = register_tiny_model(tiny_model)
    request = verified_request(tiny_model, mailoutbox)

    with celery_worker(tmp_path, settings, env=FAST_RECOVERY, beat=True) as log:
        approve(legal_api, request)
        auditor = claimant(wait_until(lambda: AuditRun.objects.filter(status=AuditStatus.RUNNING).first(),
                                      "the audit's start", log))
        os.kill(auditor, signal.SIGKILL)  # the pool process scoring the models
        # The sweep re-queues the silent run; a fresh pool process audits again, then signs.
        signer = claimant(wait_until(lambda: AuditRun.objects.filter(status=AuditStatus.RUNNING, attempts=2).first(),
                                     "the audit's second attempt", log, every=0.5))
        assert signer != auditor
        wait_until(lambda: re.search(r"issue_certificate\[[\w-]+\] received", log.read_text()) and signing_under_way(),
                   "the signing", log, every=0.01)
        os.kill(signer, signal.SIGKILL)  # while it renders and signs the certificate
        request = wait_for_outcome(request.pk, log)
        worker_log = log.read_text()

    assert_certified_exactly_once(request, asset, worker_log)
    run = AuditRun.objects.get()
    assert run.status == AuditStatus.DONE and run.attempts == 2
    # Taken again by the sweep's re-queue, or by the redelivered task itself when the silent claim had
    # gone stale by the time a fresh pool process took it (a busy machine): one lost attempt either way.
    recovery = [event.action for event in AuditEvent.objects.filter(action__in=("audit.started", "audit.requeued"))
                .order_by("seq")]
    assert recovery in (["audit.started", "audit.requeued", "audit.started"], ["audit.started", "audit.started"])
    # The signing task was lost with its process mid-way, redelivered (late acknowledgement with
    # reject-on-worker-lost) and ran again to the one certificate.
    signing = re.search(r"issue_certificate\[([\w-]+)\] received(.*?)issue_certificate\[\1\] received(.*)", worker_log,
                        re.DOTALL)
    assert signing, worker_log[-5000:]
    assert "Task handler raised error: WorkerLostError" in signing.group(2)
    assert len(re.findall(r"issue_certificate\[[\w-]+\] succeeded", worker_log)) == 1


def signing_under_way() -> bool:
    """issue_certificate holds its transaction open (the request's row locked) while it renders and
    signs: a worker's connection idle in a transaction is that, the task begun and not committed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid() AND state = 'idle in transaction'")
        return cursor.fetchone()[0] > 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A Redis of the test's own, without persistence: a restart loses every message it held."""

    def __init__(self, workdir):
        self.port, self.workdir, self.process = free_port(), workdir, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.workdir)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_the_broker_restarted_while_a_job_runs_loses_no_work(
        tiny_model, tmp_path, settings, audit_log_reset_allowed, legal_api, mailoutbox, private_redis):
    asset = register_tiny_model(tiny_model)
    request = verified_request(tiny_model, mailoutbox)
    env = {**FAST_RECOVERY, "PIPELINE_RESEND_AFTER_SECONDS": "3"}

    with celery_worker(tmp_path, settings, env=env, beat=True, broker_url=private_redis.url) as log:
        approve_and_wait_for_training(legal_api, request, log)
        private_redis.stop()
        # The job finishes while the broker is down: the message that would start its audit cannot be sent.
        wait_until(lambda: UnlearningJob.objects.filter(status=JobStatus.SUCCEEDED).exists(), "the job's end", log,
                   every=0.5)
        time.sleep(2)
        private_redis.start()  # empty: what it held is gone
        request = wait_for_outcome(request.pk, log)
        worker_log = log.read_text()

    job = assert_certified_exactly_once(request, asset, worker_log)
    assert job.attempts == 1  # the training ran through the outage
    assert re.search(r"re-sent the tasks of work waiting .*'run_audit': \[%d\]" % job.pk, worker_log), worker_log[-5000:]


def cut_database_connections() -> int:
    """Terminate every connection to the test database but this process's own, as a database restart
    or a failover would; returns how many there were."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def test_database_connections_cut_mid_job_and_mid_audit_cost_no_attempt(
        tiny_model, tmp_path, settings, audit_log_reset_allowed, legal_api, mailoutbox):
    asset = register_tiny_model(tiny_model)
    request = verified_request(tiny_model, mailoutbox)

    with celery_worker(tmp_path, settings, env=FAST_RECOVERY, beat=True) as log:
        approve_and_wait_for_training(legal_api, request, log)
        assert cut_database_connections() >= 1  # the worker's, as it writes its progress
        wait_until(lambda: AuditRun.objects.filter(status=AuditStatus.RUNNING).exists(), "the audit's start", log)
        time.sleep(1)
        assert cut_database_connections() >= 1
        request = wait_for_outcome(request.pk, log)
        worker_log = log.read_text()

    job = assert_certified_exactly_once(request, asset, worker_log)
    # A cut connection is renewed before the next write: neither the job nor the audit started over.
    assert job.attempts == 1 and AuditRun.objects.get().attempts == 1
