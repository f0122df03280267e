"""Build the demo world's governed model: generate people, train tokenizer and LM, write manifests.

Pure ML code (no Django): the management command registers what this returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unlearning import s3t
from unlearning.governed import GovernedModel, train_governed
from unlearning.lm import TrainingRecipe, train_tokenizer
from unlearning.sisa import SisaConfig, SisaLineage
from unlearning.world import World, WorldConfig, tokenizer_corpus


@dataclass(frozen=True)
class DemoScale:
    """How big the demo is: the CPU scale trains in about a minute on two cores; the GPU scale is
    the world generator's largest (1,440 people) and an 11M-parameter GPT-2, which on one H200
    reached 96% QA on the 200-person world in 60 epochs (38 s) and needs 50-60 epochs to memorise
    the largest world (the team's measurements with a plain training loop; this demo has not run on
    a GPU yet: README, "Devices")."""

    people: int | None  # None: the settings' DEMO_WORLD_PEOPLE
    recipe: TrainingRecipe
    name_suffix: str  # keeps its models apart from the CPU demo's in one database
    needs_cuda: bool


DEMO_SCALES = {
    "cpu": DemoScale(None, TrainingRecipe(), "", needs_cuda=False),
    "gpu": DemoScale(1440, TrainingRecipe(n_layer=6, n_head=6, n_embd=384, epochs=60, batch_size=64,
                                          learning_rate=1e-3), "-gpu", needs_cuda=True),
}


@dataclass(frozen=True)
class DemoModel:
    world: World
    recipe: TrainingRecipe
    governed: GovernedModel

    @property
    def checkpoint_sha256(self) -> str:
        return self.governed.sha256

    @property
    def checkpoint_path(self) -> Path:
        return self.governed.path

    @property
    def training_manifest(self) -> Path:
        return self.governed.training_manifest

    @property
    def holdout_manifest(self) -> Path:
        return self.governed.holdout_manifest

    @property
    def lineage(self) -> list[dict]:
        """Per training record: record_id, owner_key, kind, content_sha256."""
        return self.governed.records

    @property
    def training_seconds(self) -> float:
        return self.governed.seconds

    @property
    def placement_lineage(self) -> SisaLineage | s3t.S3TLineage | None:
        """SISA or S3T: where each record went and what each checkpoint or adapter saw."""
        return self.governed.lineage


def build_demo_model(world_config: WorldConfig, recipe: TrainingRecipe, store: Path,
                     on_epoch: Callable[[int, float], None] | None = None,
                     config: SisaConfig | s3t.S3TConfig | None = None) -> DemoModel:
    """One plain model; with a SisaConfig an ensemble of SISA shards (each by the same recipe); with
    an S3TConfig a frozen base (by the recipe, on text about no one) and S3T adapter stacks."""
    world = World.generate(world_config)
    tokenizer = train_tokenizer(tokenizer_corpus(world_config.seed, world_config.detail), recipe.vocab_size)
    return DemoModel(world, recipe, train_governed(
        [record.as_json() for record in world.training_records()], [record.as_json() for record in world.holdout_records()],
        tokenizer, recipe, store, config=config, on_epoch=on_epoch))

