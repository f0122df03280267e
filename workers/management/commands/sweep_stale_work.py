"""Re-queue (or, out of attempts, fail) jobs, audit runs and model registrations whose worker was lost, and send again
the tasks of work whose message was lost: what the Celery beat schedule runs every JOB_SWEEP_SECONDS, for deployments
without beat and for operators."""

from django.core.management.base import BaseCommand

from audits.services import sweep_stale_audits
from unlearning.services import sweep_stale_jobs, sweep_stale_registrations
from workers.pipeline import resend_lost_messages


class Command(BaseCommand):
    help = ("Re-queue jobs and audit runs that stopped heartbeating (their worker was lost) while attempts remain; "
            "fail them, with the reason, after JOB_MAX_ATTEMPTS. Send again the tasks of work that has waited "
            "PIPELINE_RESEND_AFTER_SECONDS with no message in its queue.")

    def handle(self, *args, **options):
        for kind, swept in (("jobs", sweep_stale_jobs()), ("audit runs", sweep_stale_audits()),
                            ("model registrations", sweep_stale_registrations())):
            self.stdout.write(f"{kind}: re-queued {swept['requeued'] or 'none'}, failed {swept['failed'] or 'none'}")
        resent = resend_lost_messages()
        self.stdout.write(f"tasks sent again: {resent or 'none'}")
