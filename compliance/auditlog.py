"""The tamper-evident audit log: append one event, verify the chain.

Appends are serialised (a transaction-scoped advisory lock on PostgreSQL; SQLite has one writer
at a time anyway), and `prev_hash` is unique, so concurrent writers can never fork the chain.
Call `append` inside the transaction of the state change it records: both commit or neither does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from compliance.models import AuditEvent

GENESIS_HASH = "0" * 64
_CHAIN_LOCK_KEY = 0x5EC0A0D1  # arbitrary, fixed: the one advisory lock that guards the chain


def subject_ref(email: str) -> str:
    """A pseudonymous, salted reference to a data subject: stable, but not reversible without the salt."""
    key = settings.SUBJECT_HASH_SALT.encode()
    return "subj_" + hmac.new(key, email.strip().lower().encode(), hashlib.sha256).hexdigest()[:24]


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(prev_hash: str, entry: dict) -> str:
    return hashlib.sha256((prev_hash + canonical_json(entry)).encode()).hexdigest()


def _entry(event: AuditEvent) -> dict:
    return {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "data": event.data,
    }


def append(*, actor: str, action: str, obj, data: dict | None = None) -> AuditEvent:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit events are written inside the transaction of the change they record")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
    last = AuditEvent.objects.order_by("-seq").only("seq", "entry_hash").first()
    event = AuditEvent(
        seq=(last.seq + 1) if last else 1,
        at=timezone.now(),
        actor=actor,
        action=action,
        object_type=type(obj)._meta.label,
        object_id=str(obj.pk),
        # Round-trip through JSON so the stored value hashes exactly as the verifier will read it.
        data=json.loads(canonical_json(data or {})),
        prev_hash=last.entry_hash if last else GENESIS_HASH,
    )
    event.entry_hash = entry_hash(event.prev_hash, _entry(event))
    event.save()
    return event


@dataclass(frozen=True)
class ChainCheck:
    events: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


def verify_chain() -> ChainCheck:
    """Recompute every link from the first event; report the first one that does not hold."""
    expected_prev, expected_seq, count = GENESIS_HASH, 1, 0
    for event in AuditEvent.objects.order_by("seq").iterator():
        count += 1
        if event.seq != expected_seq:
            return ChainCheck(count, expected_prev, event.seq, f"sequence gap: expected {expected_seq}")
        if event.prev_hash != expected_prev:
            return ChainCheck(count, expected_prev, event.seq, "prev_hash does not match the previous entry")
        if entry_hash(event.prev_hash, _entry(event)) != event.entry_hash:
            return ChainCheck(count, expected_prev, event.seq, "entry_hash does not match the entry's content")
        expected_prev, expected_seq = event.entry_hash, expected_seq + 1
    return ChainCheck(count, expected_prev)
