"""Governed training from an operator's own JSONL manifests (`manage.py train_governed_model`):
the model is registered with every record's shard and slice, and a bad manifest is refused with
one line, registering nothing."""

import json

import pytest
from django.core.management import CommandError, call_command

from unlearning.models import ModelAsset, TrainingRecord, TrainingRegime
from unlearning.selectors import version_lineage
from unlearning.world import World, WorldConfig

pytestmark = pytest.mark.django_db


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


@pytest.fixture
def manifests(tmp_path, settings):
    settings.MODEL_STORE_DIR = tmp_path / "models"
    world = World.generate(WorldConfig(people=12, seed=5))
    return (write_jsonl(tmp_path / "train.jsonl", [r.as_json() for r in world.training_records()]),
            write_jsonl(tmp_path / "holdout.jsonl", [r.as_json() for r in world.holdout_records()]))


def test_a_manifest_trains_a_sisa_model_registered_with_its_lineage(manifests):
    train, holdout = manifests
    call_command("train_governed_model", name="own-data", manifest=train, holdout=holdout, regime="sisa",
                 shards=2, slices=2, epochs=2, vocab_size=600)
    asset = ModelAsset.objects.get(name="own-data")
    assert asset.regime == TrainingRegime.SISA and asset.holdout_manifest
    lineage = version_lineage(asset.current_version)
    records = TrainingRecord.objects.filter(asset=asset)
    assert records.count() == sum(1 for line in open(train) if line.strip())
    assert {(r.record_id, r.shard, r.slice) for r in records} == {
        (record_id, place.shard, place.slice) for record_id, place in lineage.placements.items()}


def test_a_bad_manifest_is_refused_with_one_line_and_nothing_is_registered(manifests, tmp_path):
    train, _ = manifests
    lines = open(train).read().splitlines()
    broken = write_jsonl(tmp_path / "broken.jsonl", [json.loads(lines[0]), {**json.loads(lines[1]), "text": ""}])
    with pytest.raises(CommandError, match=r"broken\.jsonl:2: record lacks text$"):
        call_command("train_governed_model", name="broken", manifest=broken)
    with pytest.raises(CommandError, match="no such file|No such file"):
        call_command("train_governed_model", name="missing", manifest=str(tmp_path / "absent.jsonl"))
    with pytest.raises(CommandError, match="at least 1 shard"):
        call_command("train_governed_model", name="zero", manifest=train, regime="sisa", shards=0)
    assert not ModelAsset.objects.exists()
