"""Database connections of long-running work (unlearning, audits): a worker computes for minutes
between writes, and meanwhile a database restart, a failover or an idle timeout may cut its
connection. Django reconnects only between requests (or tasks), so work renews its connection
before it writes again, retries a lost idempotent write once, and never takes a lost connection
for its own failure: such work is left to its claim, which the sweep re-queues."""

from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

# What a cut connection raises: OperationalError on the first use, InterfaceError ("connection
# already closed") after. Also deadlocks and serialization failures: transient, worth another attempt.
LOST_CONNECTION = (OperationalError, InterfaceError)
T = TypeVar("T")


def renew_connection() -> None:
    """A new connection for the writes that follow minutes of computation (not inside a
    transaction: that is the caller's, to commit or roll back)."""
    if not connection.in_atomic_block:
        connection.close()


def on_a_live_connection(write: Callable[[], T]) -> T:
    """`write()` (idempotent, outside a transaction), tried again once on a new connection when
    the connection was lost: a progress report does not cost the training under way."""
    try:
        return write()
    except LOST_CONNECTION:
        if connection.in_atomic_block:
            raise
        connection.close()
        return write()
