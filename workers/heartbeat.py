"""A heartbeat for a claimed job or audit run: a thread that records one every
`JOB_HEARTBEAT_SECONDS` while the task works. It dies with its worker process, so a claim whose
heartbeat stopped belongs to a lost worker (unlearning.selectors.stale_claim) and is claimed again.

In the embedded mode (tasks run in the web or command process, `CELERY_TASK_ALWAYS_EAGER`) no thread
is started: its separate database connection would wait on the caller's open transaction. There,
the claim and every progress report record the heartbeat.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection


@contextmanager
def heartbeat(record: Callable[[int], None], pk: int) -> Iterator[None]:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.JOB_HEARTBEAT_SECONDS):
                record(pk)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=settings.JOB_HEARTBEAT_SECONDS + 30)
