"""Governed training: the service trains the models it governs, so that every training record's
place in the model is known: for a causal LM one plain model, SISA shards, or an S3T base with
adapter stacks (the regime is the one whose config is given, unlearning.regimes); for a tabular
classifier or regressor, SISA shards of small MLPs (one shard of one slice is the plain model,
deleted from exactly by full retraining). Pure ML code (no Django): the management commands
register what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearning.learners import CausalLMLearners, TabularLearners
from unlearning.lm import TrainingRecipe
from unlearning.manifest import lineage_records, write_manifest
from unlearning.regimes import REGIMES, Workbench
from unlearning.sisa import SisaConfig
from unlearning.tabular import MLPRecipe, TabularDataset


@dataclass(frozen=True)
class GovernedModel:
    sha256: str
    path: Path  # the served model, content-addressed
    training_manifest: Path
    holdout_manifest: Path | None
    records: list[dict]  # per training record: record_id, owner_key, kind, content_sha256
    seconds: float
    lineage: Any  # where each record went (SISA, S3T); None for a plain model


def regime_for_config(config) -> str:
    """The regime whose training hyperparameters `config` is (None: plain)."""
    if config is None:
        return "plain"
    for regime in REGIMES.values():
        if regime.config_type is not None and isinstance(config, regime.config_type):
            return regime.name
    raise ValueError(f"no training regime is configured by a {type(config).__name__}")


def train_governed(training: Sequence[dict], holdout: Sequence[dict], tokenizer, recipe: TrainingRecipe, store: Path, *,
                   config=None, on_epoch: Callable[[int, float], None] | None = None) -> GovernedModel:
    """Store the manifests, train by the regime `config` configures (a SisaConfig, an S3TConfig, or
    None: plain) and store the served model. `on_epoch` reports a plain model's epochs."""
    learners = CausalLMLearners(tokenizer, recipe, on_epoch=on_epoch)
    return _train(training, holdout, store, learners, regime_for_config(config), config)


def train_governed_rows(dataset: TabularDataset, recipe: MLPRecipe, sisa: SisaConfig | None, store: Path,
                        seed: int = 0) -> GovernedModel:
    """A tabular data set's training rows as SISA shards of MLPs, or (`sisa` None) one plain MLP
    initialised from `seed`; its test rows are the holdout."""
    return _train(dataset.train, dataset.test, store, TabularLearners(dataset, recipe, seed=seed),
                  regime_for_config(sisa), sisa)


def _train(training: Sequence[dict], holdout: Sequence[dict], store: Path, learners, regime: str, config) -> GovernedModel:
    _, training_manifest = write_manifest(training, store)
    holdout_manifest = write_manifest(holdout, store)[1] if holdout else None
    started = time.perf_counter()
    trained = REGIMES[regime].train(training, Workbench(Path(store), training, learners), config)
    return GovernedModel(trained.sha256, trained.path, training_manifest, holdout_manifest, lineage_records(training),
                         time.perf_counter() - started, trained.lineage)
