"""Serving keys of the OpenAI-compatible endpoint: created by the command (shown once, stored as a
hash, scoped to named language models), revoked in the admin, both in the audit log."""

import io

import pytest
from django.core.management import CommandError, call_command

from compliance.auditlog import AuditEvent
from unlearning.models import ModelAsset, ModelKind, ServingKey
from unlearning.services import serving_key_sha256

pytestmark = pytest.mark.django_db


@pytest.fixture
def language_model():
    return ModelAsset.objects.create(name="support-lm", architecture="GPT-2", training_manifest="train.jsonl")


def test_a_key_is_printed_once_stored_as_its_hash_and_scoped_to_its_models(language_model):
    out = io.StringIO()
    call_command("create_serving_key", "support bot", "--model", "support-lm", stdout=out)
    key = out.getvalue().strip()
    stored = ServingKey.objects.get()
    assert stored.key_sha256 == serving_key_sha256(key) and key not in str(list(ServingKey.objects.values()))
    assert list(stored.assets.values_list("name", flat=True)) == ["support-lm"]
    event = AuditEvent.objects.get(action="serving_key.created")
    assert event.data["models"] == ["support-lm"] and key not in str(event.data)


def test_a_key_for_an_unknown_or_tabular_model_is_refused_and_nothing_is_stored(language_model):
    ModelAsset.objects.create(name="digits", kind=ModelKind.CLASSIFIER, architecture="MLP", training_manifest="t.jsonl")
    for name in ("no-such-model", "digits"):
        with pytest.raises(CommandError, match="no served language model named"):
            call_command("create_serving_key", "bot", "--model", name, stdout=io.StringIO())
    assert not ServingKey.objects.exists()


def test_an_admin_revokes_keys(language_model, admin_client):
    call_command("create_serving_key", "support bot", "--model", "support-lm", stdout=io.StringIO())
    key = ServingKey.objects.get()
    response = admin_client.post("/admin/unlearning/servingkey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEvent.objects.filter(action="serving_key.revoked").count() == 1
