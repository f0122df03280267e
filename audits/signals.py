"""Domain events of audit runs (see compliance.signals)."""

from django.dispatch import Signal

audit_queued = Signal()  # job_id: the job's audit run waits for a worker (re-queued after a lost worker)
audit_finished = Signal()  # run_id: its requests may be ready for their certificates
