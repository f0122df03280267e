"""Domain events of removal requests. Services send them inside their transaction; the pipeline
(workers.pipeline) decides what runs next and enqueues it once the transaction commits."""

from django.dispatch import Signal

request_approved = Signal()  # request_id
