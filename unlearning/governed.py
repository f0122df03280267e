"""Governed training: the service trains the models it governs, so that every training record's
place in the model is known (DESIGN §8) — for a causal LM one plain model, SISA shards, or an S3T
base with adapter stacks; for a tabular classifier or regressor, SISA shards of small MLPs (one
shard of one slice is the plain model, deleted from exactly by full retraining). Pure ML code (no
Django): the management commands register what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from unlearning import s3t
from unlearning.lm import TrainingRecipe, load_checkpoint, load_tokenizer, save_checkpoint, train_causal_lm
from unlearning.manifest import record_sha256, write_manifest
from unlearning.sisa import SisaConfig, SisaLineage, export_served_model, train_sisa
from unlearning.sisa_lm import CausalLMLearner
from unlearning.tabular import MLPRecipe, TabularDataset, TabularLearner, load_tabular_ensemble

CAUSAL_LM = "causal_lm"  # unlearning.models.ModelKind's values; the others are tabular


@dataclass(frozen=True)
class GovernedModel:
    sha256: str
    path: Path  # the served model, content-addressed
    training_manifest: Path
    holdout_manifest: Path | None
    records: list[dict]  # per training record: record_id, owner_key, kind, content_sha256
    seconds: float
    lineage: SisaLineage | s3t.S3TLineage | None  # where each record went (SISA, S3T); None for a plain model


def train_governed(training: Sequence[dict], holdout: Sequence[dict], tokenizer, recipe: TrainingRecipe, store: Path, *,
                   sisa: SisaConfig | None = None, s3t_config: s3t.S3TConfig | None = None,
                   on_epoch: Callable[[int, float], None] | None = None) -> GovernedModel:
    """Store the manifests, train by the regime (`sisa`, `s3t_config`, or neither: plain) and store
    the served model. `on_epoch` reports a plain model's epochs."""
    if sisa is not None and s3t_config is not None:
        raise ValueError("a model is trained as SISA or as S3T, not both")
    _, training_manifest = write_manifest(training, store)
    holdout_manifest = write_manifest(holdout, store)[1] if holdout else None
    started = time.perf_counter()
    lineage = None
    if sisa is not None:
        lineage = train_sisa(training, CausalLMLearner(tokenizer, recipe, sisa), sisa, store)
        sha256, path = export_served_model(lineage, store, tokenizer)
    elif s3t_config is not None:
        lineage = s3t.train_s3t(training, s3t.train_base_model(training, tokenizer, recipe, store), s3t_config, store)
        sha256, path = s3t.export_served_model(lineage, store)
    else:
        model = train_causal_lm([r["text"] for r in training], tokenizer, recipe, on_epoch=on_epoch)
        sha256, path = save_checkpoint(model, tokenizer, store)
    return GovernedModel(sha256, path, training_manifest, holdout_manifest, lineage_records(training),
                         time.perf_counter() - started, lineage)


def train_governed_rows(dataset: TabularDataset, recipe: MLPRecipe, sisa: SisaConfig, store: Path) -> GovernedModel:
    """A tabular data set's training rows as SISA shards of MLPs; its test rows are the holdout."""
    _, training_manifest = write_manifest(dataset.train, store)
    _, holdout_manifest = write_manifest(dataset.test, store)
    started = time.perf_counter()
    lineage = train_sisa(dataset.train, TabularLearner.for_dataset(dataset, recipe, sisa), sisa, store)
    sha256, path = export_served_model(lineage, store)
    return GovernedModel(sha256, path, training_manifest, holdout_manifest, lineage_records(dataset.train),
                         time.perf_counter() - started, lineage)


def load_governed(kind: str, path: Path) -> tuple:
    """(model, tokenizer) of a stored model of this kind; a tabular ensemble has no tokenizer."""
    if kind == CAUSAL_LM:
        return load_checkpoint(path)
    return load_tabular_ensemble(path), None


def sisa_learner(kind: str, lineage: SisaLineage, path: Path, recipe: dict):
    """The learner that retrains a SISA lineage's shards: the one its lineage names."""
    if kind == CAUSAL_LM:
        return CausalLMLearner(load_tokenizer(path), TrainingRecipe(**recipe), lineage.config)
    return TabularLearner.from_hyperparameters(lineage.learner["hyperparameters"], lineage.config)


def lineage_records(training: Sequence[dict]) -> list[dict]:
    """Per training record what the service registers: id, owner, kind and content hash."""
    return [{"record_id": r["record_id"], "owner_key": r.get("owner_key"), "kind": r["kind"],
             "content_sha256": record_sha256(r)} for r in training]
