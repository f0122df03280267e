"""What trains, handed to the training regimes (unlearning.regimes), which decide on which records.
Pure ML code (torch): workers and the training commands build these; the regimes never import them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from unlearning.lm import TrainingRecipe, load_tokenizer, train_causal_lm
from unlearning.s3t import FrozenBase, S3TConfig
from unlearning.s3t_lm import S3TAdapterTrainer, train_base_model
from unlearning.sisa import SisaConfig
from unlearning.sisa_lm import CausalLMLearner
from unlearning.store import PLAIN_MLP, checkpoint_format, save_checkpoint
from unlearning.tabular import PLAIN_CONFIG, MLPRecipe, TabularDataset, TabularLearner, plain_mlp_learner, save_plain_mlp

CAUSAL_LM = "causal_lm"  # unlearning.models.ModelKind's values; the others are tabular


class CausalLMLearners:
    """GPT-2 style causal LMs on one tokenizer, by one recipe: the whole model (plain), SISA shards,
    an S3T base and its adapter stacks. The tokenizer is given, or read from a checkpoint folder
    when first needed (an S3T stack keeps its own with its base, and its trainer reads it there)."""

    def __init__(self, tokenizer, recipe: TrainingRecipe, on_epoch: Callable[[int, float], None] | None = None):
        self._tokenizer, self.recipe, self.on_epoch = tokenizer, recipe, on_epoch  # on_epoch: a plain model's

    @property
    def tokenizer(self):
        if isinstance(self._tokenizer, Path):
            self._tokenizer = load_tokenizer(self._tokenizer)
        return self._tokenizer

    def plain(self, records: Sequence[dict]):
        return train_causal_lm([record["text"] for record in records], self.tokenizer, self.recipe, on_epoch=self.on_epoch)

    def save(self, model, store: Path) -> tuple[str, Path]:
        return save_checkpoint(model, self.tokenizer, store)

    def sisa(self, config: SisaConfig, described: dict | None = None) -> CausalLMLearner:
        return CausalLMLearner(self.tokenizer, self.recipe, config)

    def s3t_base(self, records: Sequence[dict], store: Path) -> FrozenBase:
        return train_base_model(records, self.tokenizer, self.recipe, store)

    def s3t(self, base: FrozenBase, config: S3TConfig, store: Path) -> S3TAdapterTrainer:
        return S3TAdapterTrainer(base, config, store)


@dataclass
class TabularLearners:
    """MLP classifiers and regressors: SISA shards, or one plain MLP. `dataset` and `recipe` for a
    first training; a deletion or a retrained reference rebuilds the learner its lineage (SISA) or
    its stored model (plain, `trained_as`) describes."""

    dataset: TabularDataset | None = None
    recipe: MLPRecipe | None = None
    trained_as: Path | None = None  # a stored plain MLP, whose learner retrains its reference
    seed: int = 0  # a first plain training's (a stored one's is read from it)
    tokenizer = None

    def sisa(self, config: SisaConfig, described: dict | None = None) -> TabularLearner:
        if described is not None:
            return TabularLearner.from_hyperparameters(described["hyperparameters"], config)
        return TabularLearner.for_dataset(self.dataset, self.recipe, config)

    @property
    def plain_learner(self) -> tuple[TabularLearner, int]:
        if self.trained_as is not None:
            return plain_mlp_learner(self.trained_as)
        return TabularLearner.for_dataset(self.dataset, self.recipe, PLAIN_CONFIG), self.seed

    def plain(self, records: Sequence[dict]):
        learner, seed = self.plain_learner
        return learner.train_plain(records, seed)

    def save(self, model, store: Path) -> tuple[str, Path]:
        learner, seed = self.plain_learner
        return save_plain_mlp(model, learner, seed, store)

    def s3t_base(self, *_):
        raise ValueError("a tabular model is governed plain or as SISA shards, not by S3T")

    s3t = s3t_base


def learners_for(kind: str, path: Path, recipe: dict) -> CausalLMLearners | TabularLearners:
    """The learners that retrain a stored model of this kind: for a language model, its own
    tokenizer (read from the checkpoint) and the recipe it was trained by."""
    if kind == CAUSAL_LM:
        return CausalLMLearners(Path(path), TrainingRecipe(**recipe))
    return TabularLearners(trained_as=Path(path) if checkpoint_format(path) == PLAIN_MLP else None)
