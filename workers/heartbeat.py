"""A heartbeat for a claimed job or audit run: a thread that records one every
`JOB_HEARTBEAT_SECONDS` while the task works. It dies with its worker process, so a claim whose
heartbeat stopped belongs to a lost worker (unlearning.selectors.stale_claim) and is claimed again.

When the task runs inside a caller's open transaction (in-process tasks under a test's
transaction) no thread is started: its own database connection would wait on that transaction's
row locks. There, the claim and every progress report record the heartbeat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import close_old_connections, connection

log = logging.getLogger(__name__)


@contextmanager
def heartbeat(record: Callable[[], None], name: str) -> Iterator[None]:
    """Call `record()` every JOB_HEARTBEAT_SECONDS while the block runs."""
    if connection.in_atomic_block:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.JOB_HEARTBEAT_SECONDS):
                # A connection that broke (a database restart, a failover) is replaced, not reused.
                close_old_connections()
                try:
                    record()
                except Exception:  # one missed beat, not the rest: a silent claim would be taken over
                    log.warning("heartbeat of %s missed", name, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat {name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=settings.JOB_HEARTBEAT_SECONDS + 30)
