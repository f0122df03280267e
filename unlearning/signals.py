"""Domain events of unlearning jobs (see compliance.signals)."""

from django.dispatch import Signal

job_queued = Signal()  # job_id: a job is waiting for a worker (new, or re-queued after a lost worker)
job_finished = Signal()  # job_id, asset_id, succeeded: the model may take its next queued job
registration_queued = Signal()  # registration_id: a checkpoint waits for a worker to load and store it
nothing_to_unlearn = Signal()  # request_id: no governed model holds the approved request's person: a statement follows
job_fanned_out = Signal()  # job_id, attempt, parts: an exact deletion waits for one task per part, then a join
