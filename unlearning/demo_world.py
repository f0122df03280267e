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


def build_demo_model(world_config: WorldConfig, recipe: TrainingRecipe, store: Path,
                     on_epoch: Callable[[int, float], None] | None = None) -> DemoModel:
    world = World.generate(world_config)
    training = [record.as_json() for record in world.training_records()]
    holdout = [record.as_json() for record in world.holdout_records()]
    _, training_manifest = write_manifest(training, store)
    _, holdout_manifest = write_manifest(holdout, store)
    tokenizer = train_tokenizer(tokenizer_corpus(world_config.seed), recipe.vocab_size)
    started = time.perf_counter()
    model = train_causal_lm([r["text"] for r in training], tokenizer, recipe, on_epoch=on_epoch)
    elapsed = time.perf_counter() - started
    sha256, path = save_checkpoint(model, tokenizer, store)
    lineage = [{"record_id": r["record_id"], "owner_key": r.get("owner_key"), "kind": r["kind"],
                "content_sha256": record_sha256(r)} for r in training]
    return DemoModel(world, recipe, sha256, path, training_manifest, holdout_manifest, lineage, elapsed)


def recipe_dict(recipe: TrainingRecipe) -> dict:
    return asdict(recipe)
