"""Build the demo world's governed model: generate people, train tokenizer and LM, write manifests.

Pure ML code (no Django): the management command registers what this returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from unlearning.lm import TrainingRecipe, save_checkpoint, train_causal_lm, train_tokenizer
from unlearning.manifest import record_sha256, write_manifest
from unlearning import s3t
from unlearning.sisa import SisaConfig, SisaLineage, export_served_model, train_sisa
from unlearning.sisa_lm import CausalLMLearner
from unlearning.world import World, WorldConfig, tokenizer_corpus


@dataclass(frozen=True)
class DemoModel:
    world: World
    recipe: TrainingRecipe
    checkpoint_sha256: str
    checkpoint_path: Path
    training_manifest: Path
    holdout_manifest: Path
    lineage: list[dict]
    training_seconds: float
    sisa_lineage: SisaLineage | None = None  # trained as SISA shards: where each record went, what each checkpoint saw
    s3t_lineage: s3t.S3TLineage | None = None  # trained as S3T: base, adapters per slice and order, what each saw


def build_demo_model(world_config: WorldConfig, recipe: TrainingRecipe, store: Path,
                     on_epoch: Callable[[int, float], None] | None = None, sisa: SisaConfig | None = None,
                     s3t_config: s3t.S3TConfig | None = None) -> DemoModel:
    """One plain model; with `sisa` an ensemble of SISA shards (each by the same recipe); with
    `s3t_config` a frozen base (by the recipe, on text about no one) and S3T adapter stacks."""
    world = World.generate(world_config)
    training = [record.as_json() for record in world.training_records()]
    holdout = [record.as_json() for record in world.holdout_records()]
    _, training_manifest = write_manifest(training, store)
    _, holdout_manifest = write_manifest(holdout, store)
    tokenizer = train_tokenizer(tokenizer_corpus(world_config.seed), recipe.vocab_size)
    started = time.perf_counter()
    sisa_lineage = s3t_lineage = None
    if sisa is not None:
        sisa_lineage = train_sisa(training, CausalLMLearner(tokenizer, recipe, sisa.slices), sisa, store)
        sha256, path = export_served_model(sisa_lineage, store, tokenizer)
    elif s3t_config is not None:
        base = s3t.train_base_model(training, tokenizer, recipe, store)
        s3t_lineage = s3t.train_s3t(training, base, s3t_config, store)
        sha256, path = s3t.export_served_model(s3t_lineage, store)
    else:
        model = train_causal_lm([r["text"] for r in training], tokenizer, recipe, on_epoch=on_epoch)
        sha256, path = save_checkpoint(model, tokenizer, store)
    elapsed = time.perf_counter() - started
    lineage = [{"record_id": r["record_id"], "owner_key": r.get("owner_key"), "kind": r["kind"],
                "content_sha256": record_sha256(r)} for r in training]
    return DemoModel(world, recipe, sha256, path, training_manifest, holdout_manifest, lineage, elapsed, sisa_lineage,
                     s3t_lineage)


def recipe_dict(recipe: TrainingRecipe) -> dict:
    return asdict(recipe)
