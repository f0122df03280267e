"""`make serve` (manage.py serve) on the embedded default, as a fresh clone runs it: SQLite, and a real
Celery worker beside the web server over the filesystem broker in VAR_DIR, no Redis. An approval on
the API answers at once while the worker runs the pipeline; every link the server and the worker
write (e-mails, the certificate's signature) points at the port it serves; stopping it leaves no
worker behind, and a worker that dies stops the server."""

import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.test_pipeline_worker import PIPELINE_TIMEOUT_SECONDS, wait_until
from tests.test_deployment import ROOT, Browser, free_port, run

pytestmark = pytest.mark.integration
START_TIMEOUT_SECONDS = 300  # two busy cores once took 120 s to start a worker (test_pipeline_worker)


@pytest.fixture
def embedded(tmp_path) -> dict:
    """The environment of a fresh clone's `make serve`: no broker, no SITE_URL, SQLite in VAR_DIR; migrated."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "SITE_URL", "DEBUG", "CI")}
    environment.update(VAR_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                       SECRET_KEY=secrets.token_urlsafe(50))
    manage("migrate", "--noinput", "-v0", environment=environment)
    return environment


def manage(*arguments: str, environment: dict) -> str:
    """`manage.py <arguments>` in `environment`; its output's last line."""
    done = run([sys.executable, "manage.py", *arguments], environment)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@contextmanager
def serving(environment: dict) -> Iterator[tuple[str, subprocess.Popen, int, Path]]:
    """`manage.py serve` on a free port, once its web server answers; yields its URL, the process, the
    worker's pid and the log. Stopped (SIGTERM) at the end if the test has not stopped it."""
    port, log_path = free_port(), Path(environment["VAR_DIR"]) / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        serve = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port)], cwd=ROOT, env=environment,
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: serve.poll() is not None or answers(url), "the web server's start", log_path,
                   seconds=START_TIMEOUT_SECONDS, every=0.5)
        assert serve.poll() is None, log_path.read_text()
        worker_pid = int(re.search(r"Started the worker \(pid (\d+)\)", log_path.read_text()).group(1))
        yield url, serve, worker_pid, log_path
    finally:
        if serve.poll() is None:
            serve.terminate()
            serve.wait(timeout=120)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health/", timeout=5):
            return True
    except OSError:
        return False


def api(url: str, path: str, token: str, body: dict | None = None) -> tuple[dict, bytes]:
    request = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        content = response.read()
    return (json.loads(content) if response.headers.get_content_type() == "application/json" else {}), content


def mails(var: Path) -> list[str]:
    """The e-mails the file backend wrote, oldest first."""
    folder = var / "mail"
    return [path.read_text() for path in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime)] if folder.exists() else []


def process_group_alive(pid: int) -> bool:
    """A process of the worker's group (itself, its pool, beat) is still there."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_approval_answers_at_once_and_the_worker_beside_the_server_certifies_the_request(embedded):
    from pyhanko.pdf_utils.reader import PdfFileReader

    var = Path(embedded["VAR_DIR"])
    # The cheapest world end to end: the tabular demo's SISA classifier on scikit-learn's digits.
    manage("train_tabular_model", "--name", "demo-digits", "--dataset", "digits", environment=embedded)
    token = manage("create_api_user", "legal-embedded", environment=embedded)
    owner = manage("shell", "-v", "0", "-c", "from unlearning.models import TrainingRecord; print(TrainingRecord.objects"
                   ".filter(asset__name='demo-digits').order_by('record_id').values_list('owner_key', flat=True)[0])",
                   environment=embedded)

    with serving(embedded) as (url, serve, worker_pid, log_path):
        # The owner files the request on the portal and confirms the e-mailed code: the e-mail links
        # to the port served, not SITE_URL's default.
        filed, headers = Browser(url).form("/", {"full_name": "Row Owner", "email": owner, "description": "my row",
                                                 "jurisdiction": "gdpr", "confirm": "on"})
        assert filed == 302, log_path.read_text()[-5000:]
        verify_path = headers["Location"]
        request_id = verify_path.strip("/").split("/")[1]
        sent = mails(var)[-1]
        assert f"{url}/requests/" in sent and "127.0.0.1:8000" not in sent, sent
        code = re.search(r"\b(\d{6})\b", sent.partition("\n\n")[2]).group(1)
        owner_browser = Browser(url)
        assert owner_browser.form(verify_path, {"code": code})[0] == 302

        # The approval answers before the pipeline has run: in-process (eager) tasks would have
        # certified the request inside it.
        approved, _ = api(url, f"/api/v1/requests/{request_id}/approve/", token, {"note": "verified row owner"})
        assert approved["status"] == "approved", approved

        seen = set()

        def outcome():
            detail, _ = api(url, f"/api/v1/requests/{request_id}/", token)
            seen.add(detail["status"])
            return detail if detail["status"] in ("certified", "failed") else None

        detail = wait_until(outcome, "the pipeline's end", log_path, seconds=PIPELINE_TIMEOUT_SECONDS, every=1)
        assert detail["status"] == "certified", f"{detail['failed_step']}: {detail['failure_reason']}\n{log_path.read_text()[-5000:]}"
        assert detail["jobs"][0]["status"] == "succeeded" and detail["jobs"][0]["progress"] == 1.0
        assert seen - {"approved", "certified"}, seen  # the steps between showed while the worker ran them

        # The worker signed the certificate with this server's address, and e-mailed its links.
        _, pdf = api(url, f"/api/v1/requests/{request_id}/certificate/", token)
        signature = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
        assert str(signature.sig_object["/Location"]) == url
        assert any(f"{url}/verify/{detail['certificate']['serial']}/" in text for text in mails(var))

        # Ctrl-C stops both, and nothing of the worker is left.
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=120) == 0, log_path.read_text()[-5000:]
    # The last of them may still be exiting (SIGKILL is asynchronous) or waiting for init to reap it.
    wait_until(lambda: not process_group_alive(worker_pid), "the end of the worker's processes", log_path, seconds=30)
    assert not answers(url)
    assert "Traceback" not in log_path.read_text() and "database is locked" not in log_path.read_text()


def test_a_worker_that_dies_stops_the_server(embedded):
    with serving(embedded) as (url, serve, worker_pid, log_path):
        os.killpg(worker_pid, signal.SIGKILL)
        assert serve.wait(timeout=60) != 0
    assert "the worker stopped (exit code -9)" in log_path.read_text()
    wait_until(lambda: not process_group_alive(worker_pid), "the end of the worker's processes", log_path, seconds=30)
    assert not answers(url)
