"""Operations, against the real PostgreSQL and Redis: liveness and readiness (/health/, /ready/),
the Prometheus scrape (/metrics) and who may make it, `manage.py work_report`, and the JSON log
lines (README "Operations")."""

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import redis
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from compliance.models import RemovalRequest, RequestStatus
from compliance.operations import queue_keys
from unlearning.models import JobStatus, ModelAsset, UnlearningJob

ROOT = Path(__file__).resolve().parent.parent
# The tests' own Redis database (make test's TEST_REDIS_URL); only the queues' lists are touched.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ELSEWHERE = "203.0.113.9"  # a documentation address: not this machine


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


@pytest.fixture
def ready_store(store, settings):
    """This test's data folder with its model store made (a deployment mounts one)."""
    Path(settings.MODEL_STORE_DIR).mkdir()
    return store


@pytest.fixture
def broker(settings):
    """Tasks go to the test Redis (not run in-process); its queues start and end empty."""
    settings.CELERY_BROKER_URL, settings.CELERY_TASK_ALWAYS_EAGER = REDIS_URL, False
    client = redis.Redis.from_url(REDIS_URL)
    keys = [key for queue in ("cpu", "gpu") for key in queue_keys(queue)]
    client.delete(*keys)
    yield client
    client.delete(*keys)
    client.close()


def scrape(client: Client | None = None, **headers) -> list:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    return [sample for family in text_string_to_metric_families(response.content.decode()) for sample in family.samples]


def value(samples, name: str, **labels) -> float | None:
    found = [sample.value for sample in samples if sample.name == name and sample.labels == labels]
    return found[0] if found else None


def test_liveness_answers_without_asking_the_database_or_the_broker(settings):
    # No database access is granted to this test: a check that touched it would fail it.
    settings.CELERY_BROKER_URL, settings.CELERY_TASK_ALWAYS_EAGER = f"redis://127.0.0.1:{closed_port()}/0", False
    settings.MODEL_STORE_DIR = "/nonexistent/models"
    assert Client().get("/health/").status_code == 200
    answered = Client().get("/health/?format=json")
    assert (answered.status_code, answered.json()) == (200, {})


@pytest.mark.django_db
def test_readiness_is_200_when_the_database_broker_store_and_signer_answer(ready_store, broker, settings):
    from audits.signing import create_local_identity

    create_local_identity(Path(settings.SIGNING_DIR), "Test issuer")
    answered = Client().get("/ready/?format=json")
    assert answered.status_code == 200, answered.content
    assert answered.json() == {"Database(alias='default')": "OK", "Broker(redis)": "OK", "ModelStore()": "OK",
                               "CertificateSigner()": "OK"}


@pytest.mark.django_db
def test_readiness_is_503_naming_the_broker_when_it_does_not_answer(ready_store, settings):
    settings.CELERY_BROKER_URL, settings.CELERY_TASK_ALWAYS_EAGER = f"redis://127.0.0.1:{closed_port()}/0", False
    for answered in (Client().get("/ready/?format=json"), Client().get("/ready/", HTTP_ACCEPT="application/json")):
        assert answered.status_code == 503
        checks = answered.json()
        assert checks.pop("Broker(redis)").startswith("Unavailable: Unable to connect to Redis")
        assert set(checks.values()) == {"OK"}  # the database, the store and the signer still answer


@pytest.mark.django_db
def test_readiness_checks_the_store_and_the_signing_key_without_making_either(store, settings):
    signing = Path(settings.SIGNING_DIR)
    answered = Client().get("/ready/?format=json")  # embedded mode: no broker to check
    assert answered.status_code == 503
    assert answered.json() == {"Database(alias='default')": "OK", "CertificateSigner()": "OK",
                               "ModelStore()": "Unavailable: the model store folder is missing or cannot be written"}
    assert not signing.exists() and not Path(settings.MODEL_STORE_DIR).exists()  # the probe made nothing

    from audits.signing import create_local_identity

    Path(settings.MODEL_STORE_DIR).mkdir()
    identity = create_local_identity(signing, "Test issuer")
    assert Client().get("/ready/").status_code == 200
    identity.key_file.write_bytes((signing / "ca.key").read_bytes())  # a key that is not the signer's
    answered = Client().get("/ready/?format=json")
    assert answered.status_code == 503
    assert answered.json()["CertificateSigner()"] == "Unavailable: the signing identity does not load (ValueError)"


@pytest.mark.django_db
def test_request_counts_by_status_and_deadlines_equal_the_database(submit):
    now = timezone.now()
    statuses = [RequestStatus.SUBMITTED, RequestStatus.SUBMITTED, RequestStatus.IDENTITY_VERIFIED, RequestStatus.APPROVED,
                RequestStatus.UNLEARNING, RequestStatus.CERTIFIED, RequestStatus.DENIED]
    requests = [submit(email=f"person{number}@mail.example", full_name=f"Person Number{number}")[0]
                for number in range(len(statuses))]
    for request, status in zip(requests, statuses):
        RemovalRequest.objects.filter(pk=request.pk).update(status=status)
    RemovalRequest.objects.filter(pk=requests[0].pk).update(due_at=now - timedelta(days=2))  # open, overdue
    RemovalRequest.objects.filter(pk=requests[3].pk).update(due_at=now + timedelta(days=3))  # open, due soon
    RemovalRequest.objects.filter(pk=requests[5].pk).update(due_at=now - timedelta(days=9))  # certified: closed

    response = Client().get("/metrics")
    samples = [sample for family in text_string_to_metric_families(response.content.decode()) for sample in family.samples]
    for status in RequestStatus.values:
        assert value(samples, "compliance_removal_requests", status=status) == RemovalRequest.objects.filter(
            status=status).count()
    assert value(samples, "compliance_removal_requests", status="submitted") == 2
    assert value(samples, "compliance_removal_requests_overdue") == 1
    assert value(samples, "compliance_removal_requests_due_soon") == 1
    for request in requests:  # counts only: nobody's reference, address or name
        assert not any(private.encode() in response.content for private in (request.reference, request.email,
                                                                             request.full_name))


@pytest.mark.django_db
def test_queue_depth_is_the_length_of_each_queues_lists(broker, settings):
    broker.rpush("cpu", *[b"message"] * 3)
    broker.rpush("gpu", *[b"message"] * 2)
    broker.rpush(queue_keys("gpu")[1], b"a message of priority 3")  # kombu's list for a priority step
    samples = scrape()
    assert value(samples, "compliance_celery_queue_messages", queue="cpu") == broker.llen("cpu") == 3
    assert value(samples, "compliance_celery_queue_messages", queue="gpu") == sum(
        broker.llen(key) for key in queue_keys("gpu")) == 3

    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded mode has no queue to measure
    assert value(scrape(), "compliance_celery_queue_messages", queue="cpu") is None


def running_job(asset: ModelAsset, heartbeat_age: timedelta) -> UnlearningJob:
    now = timezone.now()
    return UnlearningJob.objects.create(asset=asset, method="graddiff", status=JobStatus.RUNNING, attempts=1,
                                        claimed_by="worker-host:4242", started_at=now - heartbeat_age,
                                        heartbeat_at=now - heartbeat_age)


def work_report(*arguments) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("work_report", *arguments, stdout=out)
    except CommandError as stuck:
        return stuck.returncode, out.getvalue()
    return 0, out.getvalue()


@pytest.mark.django_db
def test_a_stale_job_shows_in_the_metrics_and_the_work_report(settings):
    asset = ModelAsset.objects.create(name="tiny-world", architecture="GPT-2 (tiny)", training_manifest="train.jsonl")
    stale = running_job(asset, timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS + 60))
    running_job(asset, timedelta(seconds=5))  # heartbeating: not stuck
    UnlearningJob.objects.create(asset=asset, method="graddiff", status=JobStatus.FAILED, error="ValueError: no\ntrace",
                                 started_at=timezone.now() - timedelta(minutes=2), finished_at=timezone.now())

    samples = scrape()
    assert value(samples, "compliance_stale_claims", kind="unlearning_job") == 1
    assert value(samples, "compliance_stale_claims", kind="audit_run") == 0
    assert value(samples, "compliance_unlearning_jobs", status="running") == 2
    assert value(samples, "compliance_unlearning_job_duration_seconds_count", status="failed") == 1
    assert value(samples, "compliance_unlearning_job_duration_seconds_bucket", status="failed", le="60") == 0
    assert value(samples, "compliance_unlearning_job_duration_seconds_bucket", status="failed", le="300") == 1

    status, text = work_report()
    assert status == 1
    assert f"unlearning job {stale.pk}: attempt 1, claimed by worker-host:4242" in text
    assert "Failed in the last 7 days: 1" in text and ": ValueError: no" in text
    status, printed = work_report("--json")
    report = json.loads(printed)
    assert status == 1 and report["stuck"] is True
    assert [(row["kind"], row["id"]) for row in report["stale_claims"]] == [("unlearning_job", stale.pk)]
    assert [row["error"] for row in report["failed"]] == ["ValueError: no"]


@pytest.mark.django_db
def test_an_empty_system_reports_nothing_stuck():
    status, text = work_report()
    assert status == 0
    assert "Stale claims (no heartbeat for 300 s, or past the task time limit): 0" in text
    status, printed = work_report("--json")
    assert status == 0
    assert json.loads(printed) | {"generated_at": None} == {
        "generated_at": None, "stuck": False, "stale_claims": [], "failed": [], "overdue_requests": [],
        "requests_due_soon": []}


@pytest.mark.django_db
def test_metrics_answer_only_this_machine_or_the_token(settings):
    settings.METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR=ELSEWHERE).get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=ELSEWHERE).get("/metrics").status_code == 403  # a proxy's
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    assert scrape(Client(REMOTE_ADDR="127.0.0.1"))

    settings.METRICS_TOKEN = "a-long-scrape-token"
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403  # a token set: loopback is not enough
    for wrong in ("Bearer another-token", "a-long-scrape-token", "Token a-long-scrape-token"):
        assert Client(REMOTE_ADDR=ELSEWHERE).get("/metrics", HTTP_AUTHORIZATION=wrong).status_code == 403
    assert scrape(Client(REMOTE_ADDR=ELSEWHERE), HTTP_AUTHORIZATION="Bearer a-long-scrape-token")


LOGGING_CLIENT = """
import logging, django
django.setup()
from django.test import Client
Client().get("/access/?email=alma.kestrel%40mail.example")
Client().post("/", {"full_name": "Alma Kestrel", "email": "alma.kestrel@mail.example", "description": "all of it",
                    "jurisdiction": "gdpr", "confirm": "on"})
logging.getLogger("compliance").warning("could not mail %s", "alma.kestrel@mail.example")
"""


def test_json_log_lines_carry_the_request_id_and_no_e_mail_address(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    environment.update(VAR_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PYTHONPATH=str(ROOT),
                       DJANGO_SETTINGS_MODULE="config.settings", LOG_FORMAT="json")
    migrated = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=environment,
                              capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    ran = subprocess.run([sys.executable, "-c", LOGGING_CLIENT], cwd=ROOT, env=environment, capture_output=True,
                         text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    lines = [json.loads(line) for line in ran.stderr.splitlines()]  # every line is one JSON document
    requests = [line for line in lines if line["event"] in ("request_started", "request_finished")]
    assert [(line["event"], line["request"]) for line in requests] == [
        ("request_started", "GET /access/"), ("request_finished", "GET /access/"),
        ("request_started", "POST /"), ("request_finished", "POST /")]
    assert requests[0]["request_id"] == requests[1]["request_id"] != requests[2]["request_id"] == requests[3]["request_id"]
    assert {"event": "could not mail [e-mail]", "level": "warning", "logger": "compliance"}.items() <= lines[-1].items()
    assert "alma.kestrel" not in ran.stderr and "Kestrel" not in ran.stderr
