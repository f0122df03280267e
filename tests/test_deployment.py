"""The settings a real deployment runs with, checked in processes of their own (settings are read
once per process): production settings pass `manage.py check --deploy`; behind a proxy that ends
TLS, the portal's forms pass CSRF with secure cookies; the embedded SQLite default answers
concurrent submissions and code checks under a real multi-threaded server without a 500."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROXY_CLIENT = """
import django
django.setup()
from django.test import Client
browser = Client(enforce_csrf_checks=True, HTTP_HOST="privacy.example.org", HTTP_X_FORWARDED_PROTO="https")
page = browser.get("/access/")
token = browser.cookies["csrftoken"]
posted = browser.post("/access/", {"csrfmiddlewaretoken": token.value}, HTTP_ORIGIN="https://privacy.example.org",
                      HTTP_REFERER="https://privacy.example.org/access/")
plain = Client(HTTP_HOST="privacy.example.org").get("/access/")
print("|".join(map(str, (page.status_code, posted.status_code, token["secure"], token["samesite"], plain.status_code,
                         plain["Location"], page["Strict-Transport-Security"]))))
"""


def production_environment(var: Path, **more) -> dict:
    environment = {key: value for key, value in os.environ.items() if key not in ("CI", "DEBUG", "DATABASE_URL")}
    return {**environment, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(60), "SITE_URL": "https://privacy.example.org",
            "ALLOWED_HOSTS": "privacy.example.org", "VAR_DIR": str(var),
            "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}", "PYTHONPATH": str(ROOT), **more}


def run(command: list[str], environment: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)


def test_production_settings_pass_the_deploy_checks(tmp_path):
    checked = run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                  production_environment(tmp_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues" in checked.stdout


def test_behind_an_https_proxy_the_portal_forms_pass_csrf_with_secure_cookies(tmp_path):
    answered = run([sys.executable, "-c", PROXY_CLIENT], production_environment(tmp_path, BEHIND_HTTPS_PROXY="1"))
    assert answered.returncode == 0, answered.stderr
    page, posted, secure, samesite, plain, location, hsts = answered.stdout.strip().splitlines()[-1].split("|")
    assert (page, posted) == ("200", "200")  # the form's errors, not CSRF's 403
    assert (secure, samesite) == ("True", "Lax")
    assert (plain, location) == ("301", "https://privacy.example.org/access/")  # plain HTTP is sent to HTTPS
    assert hsts.startswith("max-age=")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sqlite_server(tmp_path):
    """gunicorn (2 processes × 4 threads) on a fresh embedded SQLite database; yields its URL and environment."""
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    environment.update(VAR_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PYTHONPATH=str(ROOT))
    migrated = run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], environment)
    assert migrated.returncode == 0, migrated.stderr
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen([str(gunicorn), "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                                   "--threads", "4"], cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.3)
        yield url, tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the test reads the redirect itself


class Browser:
    """A client with its own cookies that reads redirects rather than following them (the standard
    library's: nothing else to install)."""

    def __init__(self, url: str):
        self.url, self.cookies = url, CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), NoRedirects)

    def open(self, path: str, form: dict | None = None) -> tuple[int, dict]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.url + path, data=data, timeout=60) as response:
                return response.status, dict(response.headers)
        except urllib.error.HTTPError as answered:
            return answered.code, dict(answered.headers)

    def form(self, path: str, fields: dict) -> tuple[int, dict]:
        """GET the page (its CSRF cookie), then POST the form with the token."""
        self.open(path)
        token = next(cookie.value for cookie in self.cookies if cookie.name == "csrftoken")
        return self.open(path, {"csrfmiddlewaretoken": token, **fields})


def test_the_embedded_sqlite_answers_concurrent_submissions_and_code_checks(sqlite_server):
    url, var = sqlite_server

    def submit(number: int) -> tuple[int, dict]:
        return Browser(url).form("/", {"full_name": f"Person {number}", "email": f"person{number}@mail.example",
                                       "description": "all of it", "jurisdiction": "gdpr", "confirm": "on"})

    with ThreadPoolExecutor(10) as pool:
        filed = list(pool.map(submit, range(10)))
    assert [status for status, _ in filed] == [302] * 10
    verify_path = filed[0][1]["Location"]

    def guess(number: int) -> int:
        return Browser(url).form(verify_path, {"code": f"{number:06d}"})[0]

    with ThreadPoolExecutor(10) as pool:
        checked = list(pool.map(guess, range(10)))
    assert set(checked) <= {200, 302}, checked  # a wrong code's form error (or, by luck, the right one)
    log = (var / "server.log").read_text()
    assert "database is locked" not in log and "Traceback" not in log


COMPOSE_FILE = ROOT / "docker" / "compose.yaml"


def compose_plugin() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "compose", "version"], capture_output=True).returncode == 0


def compose_spec_schema() -> Path | None:
    """The compose specification's JSON schema where an installed package ships it (docker-compose
    1.x, from PyPI or Debian's python3 packages); never downloaded."""
    for folder in (*sys.path, "/usr/lib/python3/dist-packages"):
        schema = Path(folder) / "compose" / "config" / "compose_spec.json"
        if schema.is_file():
            return schema
    return None


def test_the_compose_file_is_valid(tmp_path):
    secret = tmp_path / "secret_key.txt"  # a fresh clone has no docker/secret_key.txt (git ignores it)
    secret.write_text(secrets.token_urlsafe(50))
    if compose_plugin():
        checked = subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT,
                                 env={**os.environ, "SECRET_KEY_HOST_FILE": str(secret)}, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        return
    schema = compose_spec_schema()
    if schema is None:
        pytest.skip("neither `docker compose` (the plugin) nor the compose specification's JSON schema is installed")
    # Draft 2019-09, as the schema says (its $schema URL, with a trailing '#', is one jsonschema does not know).
    jsonschema.Draft201909Validator(json.loads(schema.read_text())).validate(yaml.safe_load(COMPOSE_FILE.read_text()))


def test_the_compose_services_wait_for_healthy_dependencies_and_report_their_own_health():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            # `up` waits forever on service_healthy for a service without a healthcheck; `config` does not see it.
            assert condition == {"condition": "service_healthy"} and "healthcheck" in services[dependency], name
    assert "/ready/" in " ".join(services["web"]["healthcheck"]["test"])
    for worker in ("worker-cpu", "worker-gpu"):
        assert "inspect ping" in " ".join(services[worker]["healthcheck"]["test"])
