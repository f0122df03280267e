"""One removal request end to end on real parts: PostgreSQL, Redis, a Celery worker process, real
training and unlearning, and a certificate checked by independent verifiers."""

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from django.db import connection
from django.test import Client

from audits.verdicts import CURRENT_POLICY
from compliance.auditlog import verify_chain
from compliance.models import AuditEvent, RemovalRequest, RequestStatus
from tests.conftest import register_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PIPELINE_TIMEOUT_SECONDS = 600


@contextmanager
def celery_worker(tmp_path: Path, settings, env: dict | None = None, beat: bool = False,
                  processes: int = 1, broker_url: str = REDIS_URL) -> Iterator[Path]:
    """A real `celery worker` process over Redis, on the test database, with its own data folder
    (`env`: more settings for it; `beat`: Celery beat embedded, for the periodic sweep; `processes`:
    that many worker processes, each of concurrency one, sharing the data folder like machines
    sharing a model store; `broker_url`: a Redis of the test's own). Yields the path of their log."""
    if connection.vendor != "postgresql":
        pytest.skip("the integration tests run on PostgreSQL (make test sets DATABASE_URL)")
    from config.celery import app

    var = tmp_path / "var"
    settings.VAR_DIR, settings.MODEL_STORE_DIR, settings.SIGNING_DIR = var, var / "models", var / "signing"
    db = connection.settings_dict
    environment = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": broker_url, "VAR_DIR": str(var), "SECRET_KEY": settings.SECRET_KEY,
        "SUBJECT_HASH_SALT": settings.SUBJECT_HASH_SALT, "AUDIT_RUNTIME_FILTERS": str(int(settings.AUDIT_RUNTIME_FILTERS)),
        **(env or {}),
    }
    redis.Redis.from_url(broker_url).flushdb()  # no stale tasks from an earlier run
    use_broker(app, broker_url, eager=False)
    log_path = tmp_path / "worker.log"
    beat_options = ["--beat", "--schedule", str(tmp_path / "celerybeat-schedule")] if beat else []
    with open(log_path, "w") as log:
        workers = [subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu,cpu", "--concurrency", "1",
             "--prefetch-multiplier", "1", "--loglevel", "INFO", "-n", f"pytest-{os.getpid()}-{number}@%h",
             *(beat_options if number == 0 else [])],
            cwd=settings.BASE_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT,
        ) for number in range(processes)]
    try:
        deadline = time.monotonic() + 300  # a hang guard: on two busy cores the worker once took 120 s to start
        while len(app.control.ping(timeout=1)) < processes:
            assert all(w.poll() is None for w in workers) and time.monotonic() < deadline, log_path.read_text()
        yield log_path
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(timeout=60)
        use_broker(app, "memory://", eager=True)


def use_broker(app, url: str, eager: bool) -> None:
    """Point this process's Celery app at `url`; its pools of broker connections and producers were
    made for the broker before, and Celery has no public way to drop them."""
    app.conf.update(task_always_eager=eager, broker_url=url)
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def worker(tmp_path, settings, audit_log_reset_allowed):
    with celery_worker(tmp_path, settings) as log_path:
        yield log_path


def wait_until(condition, what: str, log_path: Path, seconds: float = 300, every: float = 0.05):
    """Poll `condition()` until it returns something true, and return that."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    pytest.fail(f"{what} did not happen in {seconds} s; worker log:\n{log_path.read_text()[-5000:]}")


def wait_for_outcome(request_id, log_path: Path) -> RemovalRequest:
    return wait_until(lambda: RemovalRequest.objects.filter(
        pk=request_id, status__in=(RequestStatus.CERTIFIED, RequestStatus.FAILED)).first(), "the pipeline's end",
        log_path, seconds=PIPELINE_TIMEOUT_SECONDS, every=1)


@pytest.mark.runtime_filters
def test_a_request_travels_from_the_portal_to_a_certificate_through_a_worker(tiny_model, worker, legal_api, mailoutbox, tmp_path,
                                                                           caplog):
    from audits.certificates import signing_identity
    from audits.signing import pdfsig_report, validate_pdf
    from unlearning.store import checkpoint_sha256

    asset = register_tiny_model(tiny_model)
    subject = tiny_model.world.trained_people[0]
    caplog.set_level(logging.INFO)

    owner = Client()
    response = owner.post("/", {"full_name": subject.name, "email": subject.email, "description": "everything about me",
                                "jurisdiction": "gdpr", "confirm": "on"})
    verify_url = response["Location"]
    owner.post(verify_url, {"code": re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)})
    request = RemovalRequest.objects.get()
    assert request.status == RequestStatus.IDENTITY_VERIFIED

    assert legal_api.post(f"/api/v1/requests/{request.pk}/approve/", {}, format="json").status_code == 200
    request = wait_for_outcome(request.pk, worker)
    assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}\n{worker.read_text()[-5000:]}"

    # The work happened in the worker process, step by step, each step in the audit log.
    detail = legal_api.get(f"/api/v1/requests/{request.pk}/").json()
    job, audit = detail["jobs"][0], detail["audits"][0]
    assert job["status"] == "succeeded" and job["forget_records"] == len(tiny_model.world.person_records(subject, include_canary=subject.canary_inserted))
    actions = [e["action"] for e in legal_api.get(f"/api/v1/requests/{request.pk}/events/").json()]
    for action in ("request.approved", "request.scheduled", "job.started", "request.unlearning", "job.succeeded",
                   "request.auditing", "audit.started", "audit.completed", "request.certified"):
        assert action in actions
    assert AuditEvent.objects.filter(action="job.started", actor="worker").exists()
    assert verify_chain().ok

    # The unlearned model is a new, hash-pinned version; the original is untouched.
    asset.refresh_from_db()
    result = asset.current_version
    assert result.sha256 == job["result_sha256"] != job["base_sha256"] == tiny_model.checkpoint_sha256
    assert checkpoint_sha256(Path(result.storage_path)) == result.sha256
    assert checkpoint_sha256(tiny_model.checkpoint_path) == tiny_model.checkpoint_sha256

    # The audits compared the three models, and unlearning moved the subject's figures toward the reference.
    results = {r["metric"]: r for r in audit["results"]}
    assert set(results) == {rule.metric for rule in CURRENT_POLICY.rules}
    reported_only = {rule.metric for rule in CURRENT_POLICY.rules if rule.rule == "report"}
    assert all(r["verdict"] != "N/A" or r["metric"] in {"canary_exposure", *reported_only} for r in results.values())
    assert results["mia_person_p"]["details"]["original"]["population"] > 0  # measured, and reported
    loss = results["mia_loss_auc"]
    assert loss["details"]["privleak"] == pytest.approx((loss["unlearned"] - loss["reference"]) / loss["reference"] * 100)
    assert loss["details"]["original"]["tpr_at_0.01_fpr"]["n"] == loss["sample_size"]
    assert audit["reference_sha256"] not in (job["base_sha256"], job["result_sha256"])
    assert results["forget_qa_accuracy"]["original"] >= 0.8
    assert results["forget_qa_accuracy"]["unlearned"] < results["forget_qa_accuracy"]["original"]
    assert results["mia_loss_auc"]["unlearned"] < results["mia_loss_auc"]["original"]
    assert audit["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")

    # The certificate: downloadable by its owner (byte-identical to the API's), by no one else, and valid.
    pdf = b"".join(owner.get(f"/requests/{request.pk}/certificate.pdf").streaming_content)
    assert pdf == b"".join(legal_api.get(detail["certificate"]["download"]).streaming_content)
    assert Client().get(f"/requests/{request.pk}/certificate.pdf").status_code == 404
    identity = signing_identity()
    check = validate_pdf(pdf, identity.ca_file.read_bytes())
    assert check.intact and check.valid and check.trusted
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    cli = subprocess.run([str(Path(sys.executable).parent / "pyhanko"), "sign", "validate", "--trust", str(identity.ca_file),
                          "--trust-replace", str(path)], capture_output=True, text=True)
    assert cli.returncode == 0 and "INTACT:TRUSTED,UNTOUCHED" in cli.stdout
    pdfsig = pdfsig_report(path, identity.ca_file, tmp_path / "nss").stdout
    assert "Signature is Valid." in pdfsig and "Certificate is Trusted." in pdfsig

    # One flipped byte inside the signed range is caught by both verifiers.
    tampered = bytearray(pdf)
    position = pdf.index(b"Certificate of machine unlearning") if b"Certificate of machine unlearning" in pdf else len(pdf) // 3
    tampered[position] ^= 0x01
    path.write_bytes(bytes(tampered))
    assert "Signature is Valid." not in pdfsig_report(path, identity.ca_file, tmp_path / "nss").stdout
    assert not validate_pdf(bytes(tampered), identity.ca_file.read_bytes()).intact

    # The public verify page vouches for the genuine file and not the tampered one.
    page = Client().get(f"/verify/{detail['certificate']['serial']}/")
    assert page.status_code == 200 and detail["certificate"]["pdf_sha256"] in page.content.decode()
    from django.core.files.uploadedfile import SimpleUploadedFile

    genuine = Client().post(f"/verify/{detail['certificate']['serial']}/", {"pdf": SimpleUploadedFile("c.pdf", pdf)})
    forged = Client().post(f"/verify/{detail['certificate']['serial']}/", {"pdf": SimpleUploadedFile("c.pdf", bytes(tampered))})
    assert "exactly this document" in genuine.content.decode() and "is not this document" in forged.content.decode()

    # No log names the owner: neither the web side's records (nor its code) nor the worker process's log.
    code = re.search(r"\b(\d{6})\b", mailoutbox[0].body).group(1)
    assert code not in caplog.text
    for log in (caplog.text, worker.read_text()):
        assert subject.email not in log and subject.name not in log
