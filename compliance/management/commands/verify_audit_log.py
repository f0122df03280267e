from django.core.management.base import BaseCommand, CommandError

from compliance.auditlog import verify_chain


class Command(BaseCommand):
    help = "Recompute the audit log's hash chain from the first event; exit 1 at the first broken link."

    def handle(self, *args, **options):
        check = verify_chain()
        if not check.ok:
            raise CommandError(f"audit log broken at event {check.first_bad_seq}: {check.problem}")
        self.stdout.write(self.style.SUCCESS(f"audit log intact: {check.events} events, head {check.head_hash}"))
