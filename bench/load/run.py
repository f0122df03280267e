"""A bounded load test of the web process on loopback: gunicorn on PostgreSQL, locust headless
(bench/load/locustfile.py). It builds a fresh database, certifies one request for real (`manage.py
demo --dataset digits`: a signed certificate to download), seeds requests through the service,
runs the load, and prints throughput, median and 99th-percentile latency and errors per kind of
call, as bench/RESULTS.md records them.

    .venv/bin/pip install locust        # once (the `bench` extra)
    .venv/bin/python bench/load/run.py --seconds 60 --users 40 --workers 4

The per-client throttles are off for the run (every simulated owner comes from 127.0.0.1) and
e-mail goes to memory; everything else is the production path (DEBUG off).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
ACCESS_STATUS = re.compile(r'" (\d{3}) ')  # gunicorn's access log: "<request line>" <status> <bytes>
BIN = Path(sys.executable).parent
SEED = """
import json, sys
import django
django.setup()
from compliance import services
from compliance.management.commands.create_api_user import ensure_api_user
from compliance.models import RemovalRequest, RequestStatus
ids = [str(services.submit_request(full_name=f"Seeded Person {n}", email=f"seeded{n}@mail.example",
                                   description="all of it").pk) for n in range(int(sys.argv[1]))]
certified = RemovalRequest.objects.get(status=RequestStatus.CERTIFIED)
print(json.dumps({"legal_token": ensure_api_user("load-legal")[1].key, "request_ids": ids + [str(certified.pk)],
                  "certified_id": str(certified.pk)}))
"""


def fresh_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list[str], environment: dict, **kwargs) -> str:
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, **kwargs)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def wait_until_up(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=2)
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.3)


def summary(stats_csv: Path, seconds: float) -> list[dict]:
    rows = []
    with open(stats_csv) as handle:
        for row in csv.DictReader(handle):
            rows.append({"call": row["Name"], "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                         "per_second": int(row["Request Count"]) / seconds, "p50_ms": row["50%"], "p99_ms": row["99%"]})
    return rows


def status_counts(access_log: Path) -> dict[str, int]:
    """Answers per status code, from gunicorn's access log (the server's word, not the client's)."""
    counts: dict[str, int] = {}
    for line in access_log.read_text().splitlines():
        found = ACCESS_STATUS.search(line)
        if found:
            counts[found.group(1)] = counts.get(found.group(1), 0) + 1
    return dict(sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/compliance_load")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (sync)")
    parser.add_argument("--seed-requests", type=int, default=500)
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="load-"))
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if key not in ("CELERY_BROKER_URL", "CI")}
    environment.update(
        DATABASE_URL=args.database_url, VAR_DIR=str(var), SECRET_KEY=secrets.token_urlsafe(50), DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,testserver", SITE_URL=f"http://127.0.0.1:{port}", DATABASE_CONN_MAX_AGE="60",
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend", LOG_LEVEL="WARNING",
        PORTAL_SUBMISSIONS_PER_CLIENT_PER_HOUR="0", CODE_CHECKS_PER_CLIENT_PER_HOUR="0", REQUESTS_PER_EMAIL_PER_DAY="0",
        IDENTITY_CODES_PER_EMAIL_PER_HOUR="1000000", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="config.settings")
    fresh_database(args.database_url)
    run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], environment)
    run([sys.executable, "manage.py", "demo", "--dataset", "digits"], environment)
    fixture = var / "fixture.json"
    fixture.write_text(run([sys.executable, "-c", SEED, str(args.seed_requests)], environment).strip().splitlines()[-1])
    with open(var / "server.log", "w") as log:
        server = subprocess.Popen([str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers",
                                   str(args.workers), "--access-logfile", str(var / "access.log")], cwd=ROOT,
                                  env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server)
        out = var / "locust"
        run([str(BIN / "locust"), "-f", str(ROOT / "bench/load/locustfile.py"), "--headless", "-u", str(args.users),
             "-r", str(args.users), "-t", f"{args.seconds}s", "--host", f"http://127.0.0.1:{port}", "--csv", str(out),
             "--only-summary"], {**environment, "LOAD_FIXTURE": str(fixture)}, timeout=args.seconds + 120)
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = summary(Path(f"{out}_stats.csv"), args.seconds)
    print(f"| call | requests | per second | p50 ms | p99 ms | failures |  ({args.users} users, {args.seconds} s, "
          f"{args.workers} gunicorn workers)")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['call']} | {row['requests']} | {row['per_second']:.0f} | {row['p50_ms']} | {row['p99_ms']} | "
              f"{row['failures']} |")
    print(f"answers by status (gunicorn's access log): {status_counts(var / 'access.log')}; server log: {var / 'server.log'}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
