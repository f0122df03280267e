"""What an operator (or a cron job, or a monitoring check) asks first: is work stuck on a lost
worker, what failed lately, which requests are near or past their statutory deadline."""

import json
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from compliance import operations

KINDS = {"unlearning_job": "unlearning job", "audit_run": "audit run", "model_registration": "model registration"}


def moment(value) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def claim_row(kind: str, claim) -> dict:
    return {"kind": kind, "id": claim.pk, "attempts": claim.attempts, "claimed_by": claim.claimed_by,
            "started_at": moment(claim.started_at), "heartbeat_at": moment(claim.heartbeat_at)}


def failure_row(kind: str, work) -> dict:
    return {"kind": kind, "id": work.pk, "finished_at": moment(work.finished_at), "error": first_line(work.error)}


def request_row(request, now) -> dict:
    return {"reference": request.reference, "status": request.status, "due_at": moment(request.due_at),
            "days_left": (request.due_at - now).days}


def work_report(now, days: int) -> dict:
    stale = [claim_row(kind, claim) for kind, claims in operations.stale_claims(now).items() for claim in claims]
    failed = [failure_row(kind, work) for kind, failures in operations.failures_since(now - timedelta(days=days)).items()
              for work in failures]
    return {"generated_at": moment(now), "stuck": bool(stale), "stale_claims": stale, "failed": failed,
            "overdue_requests": [request_row(request, now) for request in operations.overdue_requests(now)],
            "requests_due_soon": [request_row(request, now) for request in operations.requests_due_soon(now)]}


class Command(BaseCommand):
    help = ("Report stuck and failing work: claims of unlearning jobs, audit runs and model registrations whose "
            "worker stopped sending heartbeats, the jobs and audits that failed in the last --days days with "
            "their error, and open requests past their deadline or due within DEADLINE_WARNING_DAYS. Exit "
            "status 0 when no claim is stuck, 1 when one is (failures and deadlines are reported, not counted). "
            "Changes nothing: `manage.py sweep_stale_work` re-queues stale claims.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=7, help="how far back to list failures (default 7)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON document, for machines")

    def handle(self, *args, days: int, as_json: bool, **options):
        report = work_report(timezone.now(), days)
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.write_text(report, days)
        if report["stuck"]:
            raise CommandError(f"stuck: {len(report['stale_claims'])} stale claims "
                               "(`manage.py sweep_stale_work` re-queues them)", returncode=1)

    def write_text(self, report: dict, days: int) -> None:
        write = self.stdout.write
        write(f"Work report at {report['generated_at']}")
        write(f"\nStale claims (no heartbeat for {settings.JOB_STALE_AFTER_SECONDS} s, or past the task time limit): "
              f"{len(report['stale_claims'])}")
        for row in report["stale_claims"]:
            write(f"  {KINDS[row['kind']]} {row['id']}: attempt {row['attempts']}, claimed by {row['claimed_by'] or '?'}, "
                  f"started {row['started_at']}, last heartbeat {row['heartbeat_at'] or 'never'}")
        write(f"\nFailed in the last {days} days: {len(report['failed'])}")
        for row in report["failed"]:
            write(f"  {KINDS[row['kind']]} {row['id']} at {row['finished_at']}: {row['error']}")
        for title, key in (("Requests past their deadline", "overdue_requests"),
                           (f"Requests due within {settings.DEADLINE_WARNING_DAYS} days", "requests_due_soon")):
            write(f"\n{title}: {len(report[key])}")
            for row in report[key]:
                write(f"  {row['reference']} ({row['status']}): due {row['due_at']}")
