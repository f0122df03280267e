"""A training recipe and what it costs, without torch: the web process plans deletions with it."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingRecipe:
    """Everything that decides a trained model; the retrained reference reuses it unchanged."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 128
    vocab_size: int = 3000
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    seed: int = 0


# A SISA language model's training compute per shard, relative to plain training's on its records
# (unlearning.sisa.SisaConfig.epoch_scale): the smallest that kept retained people's QA at the plain
# model's while a one-person deletion stays well over twice as fast as full retraining
# (bench/RESULTS.md, "SISA's epoch scale on the demo world LM").
SISA_EPOCH_SCALE = 1.25


def training_steps(texts: int, recipe: TrainingRecipe) -> int:
    """Optimizer steps `train_causal_lm` takes on `texts` texts (length buckets never merge batches)."""
    return math.ceil(texts / recipe.batch_size) * recipe.epochs
