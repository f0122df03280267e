"""`make serve`: the web server and, beside it, a Celery worker that runs the pipeline, with no other
service to start. Tasks travel over kombu's filesystem transport (files under VAR_DIR/broker), so an
approval answers at once and the request's progress shows while the worker runs it.

Each runs in a process of its own: Django's development server without its autoreloader (which
would start a second worker) and `celery worker` on both queues, concurrency one, with beat embedded
for the periodic sweep. Both get SITE_URL = the address served here, unless SITE_URL is set, so that
e-mails, certificates and their QR codes link to this server. Ctrl-C or SIGTERM stops both; a worker
that stops on its own stops the web server too, with the reason.

With another broker in CELERY_BROKER_URL (Redis: a deployment), only the web server starts: the
deployment runs its workers and its one beat (`make worker`, `make beat`).
"""

import ctypes
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

EMBEDDED_BROKER = "filesystem://localhost/"  # the transport needs no host; naming one keeps kombu from warning
# A task under way is given this long to finish once asked to stop; then it is stopped, and its claim,
# gone stale, is taken again by the sweep when the worker runs again (JOB_STALE_AFTER_SECONDS).
WORKER_GRACE_SECONDS = 30
POLL_SECONDS = 0.2


LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec (Linux): a SIGTERM when this command's process dies, even by SIGKILL,
    so that no worker outlives it."""
    if LIBC is not None:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def site_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Command(BaseCommand):
    help = "Serve the portal and the API with a Celery worker beside them (the embedded mode: no Redis)."
    requires_system_checks = []  # the web server checks, in its own process

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1",
                            help="the address to listen on; another than localhost must be in ALLOWED_HOSTS, and "
                                 "0.0.0.0 needs SITE_URL set to the address people reach")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        broker = os.environ.get("CELERY_BROKER_URL") or EMBEDDED_BROKER
        environment = {**os.environ, "CELERY_BROKER_URL": broker,
                       "SITE_URL": os.environ.get("SITE_URL") or site_url(host, port)}
        self.signalled: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda signum, _frame: self.signalled.append(signum))

        worker = None
        if broker.startswith("filesystem://"):
            worker = self.start("worker", [
                sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "cpu,gpu", "--concurrency", "1",
                "--prefetch-multiplier", "1", "--beat", "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"),
                "--without-mingle", "--without-gossip", "--loglevel", "INFO", "-n", f"serve-{port}@%h",
            ], environment)
        else:
            self.stdout.write("Tasks go to the broker in CELERY_BROKER_URL: only the web server starts here "
                              "(workers: `make worker`; one `make beat`).")
        addrport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        web = self.start("web server", [sys.executable, str(settings.BASE_DIR / "manage.py"), "runserver",
                                        "--noreload", addrport], environment)
        self.stdout.write(f"Serving {environment['SITE_URL']} (SITE_URL); Ctrl-C stops "
                          f"{'the web server and the worker' if worker else 'the web server'}.")
        try:
            failure = self.watch(web, worker)
        finally:
            self.stop(web, worker)
        if failure:
            raise CommandError(failure)

    def start(self, what: str, command: list[str], environment: dict) -> subprocess.Popen:
        # A session of its own: the terminal's Ctrl-C reaches this command only, which stops the two
        # in order; the worker's pool and beat processes share its process group.
        process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=environment, start_new_session=True,
                                   preexec_fn=die_with_parent)
        self.stdout.write(f"Started the {what} (pid {process.pid}).")
        self.stdout.flush()
        return process

    def watch(self, web: subprocess.Popen, worker: subprocess.Popen | None) -> str:
        """Wait for a signal or for either process to stop; what went wrong, if anything."""
        while not self.signalled:
            if worker is not None and worker.poll() is not None:
                return f"the worker stopped (exit code {worker.returncode}): stopping the web server"
            if web.poll() is not None:
                return f"the web server stopped (exit code {web.returncode})" + (": stopping the worker" if worker else "")
            time.sleep(POLL_SECONDS)
        self.stdout.write(f"\n{signal.Signals(self.signalled[0]).name}: stopping.")
        return ""

    def stop(self, web: subprocess.Popen, worker: subprocess.Popen | None) -> None:
        self.stop_process(web, [(signal.SIGTERM, 10)])
        if worker is not None and worker.poll() is None:
            # Celery: SIGTERM lets the task under way finish (a warm shutdown; an idle worker over this
            # transport takes 7 to 10 s), SIGQUIT abandons it (cold); each Ctrl-C more takes the next step.
            self.stdout.write(f"Stopping the worker: a task under way has up to {WORKER_GRACE_SECONDS} s to finish "
                              "(Ctrl-C again: stop it now).")
            self.stdout.flush()
            self.stop_process(worker, [(signal.SIGTERM, WORKER_GRACE_SECONDS), (signal.SIGQUIT, 15)])
            self.stdout.write(f"The worker stopped (exit code {worker.returncode}).")
        elif worker is not None:
            self.stop_process(worker, [])  # what is left of its group: its pool's and beat's processes

    def stop_process(self, process: subprocess.Popen, steps: list[tuple[int, float]]) -> None:
        """Each signal in turn until the process exits: the next after its wait, or at once on a further
        Ctrl-C or SIGTERM; then SIGKILL to whatever is left of its process group."""
        for signum, seconds in steps:
            if process.poll() is not None:
                break
            process.send_signal(signum)
            asked, deadline = len(self.signalled), time.monotonic() + seconds
            while process.poll() is None and time.monotonic() < deadline and len(self.signalled) == asked:
                time.sleep(POLL_SECONDS)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the worker's pool and beat processes share its group
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
