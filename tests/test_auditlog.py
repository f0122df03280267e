import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from compliance.auditlog import GENESIS_HASH, entry_hash, subject_ref, verify_chain
from compliance.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_each_event_hashes_its_predecessor(verified_request):
    events = list(AuditEvent.objects.order_by("seq"))
    assert events[0].prev_hash == GENESIS_HASH
    for previous, current in zip(events, events[1:]):
        assert current.prev_hash == previous.entry_hash and current.seq == previous.seq + 1
    assert verify_chain().ok
    call_command("verify_audit_log")


def test_events_cannot_be_changed_or_deleted_through_the_model(verified_request):
    event = AuditEvent.objects.first()
    event.action = "rewritten"
    with pytest.raises(RuntimeError, match="append-only"):
        event.save()
    with pytest.raises(RuntimeError, match="append-only"):
        event.delete()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
def test_the_database_refuses_updates_and_deletes(verified_request):
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.update(action="rewritten")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.all().delete()
    with pytest.raises(Exception, match="TRUNCATE refused"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE compliance_auditevent")
    assert verify_chain().ok


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
def test_tampering_behind_the_triggers_back_is_detected(verified_request):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE compliance_auditevent DISABLE TRIGGER compliance_auditevent_append_only")
        cursor.execute("UPDATE compliance_auditevent SET data = '{\"from\": \"forged\"}' WHERE seq = 2")
        cursor.execute("ALTER TABLE compliance_auditevent ENABLE TRIGGER compliance_auditevent_append_only")
    check = verify_chain()
    assert not check.ok and check.first_bad_seq == 2 and "content" in check.problem
    with pytest.raises(CommandError, match="broken at event 2"):
        call_command("verify_audit_log")


def test_entry_hash_is_sha256_of_previous_hash_and_canonical_json():
    import hashlib
    import json

    entry = {"b": 1, "a": "é"}
    expected = hashlib.sha256((GENESIS_HASH + json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)).encode()).hexdigest()
    assert entry_hash(GENESIS_HASH, entry) == expected


def test_subject_references_are_salted_stable_and_case_insensitive(settings):
    first = subject_ref("alma@mail.example")
    assert subject_ref("Alma@Mail.Example ") == first and "alma" not in first
    settings.SUBJECT_HASH_SALT = "another salt"
    assert subject_ref("alma@mail.example") != first
