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
# (unlearning.sisa.SisaConfig.epoch_scale). Measured on the demo world (bench/RESULTS.md): 4×4
# SISA shards answered 96.5% of retained people's questions at 1.5, as the plain model did,
# against 92.5% at 1.0, and a one-person deletion stayed 2.5× faster than retraining the plain model.
SISA_EPOCH_SCALE = 1.5


def training_steps(texts: int, recipe: TrainingRecipe) -> int:
    """Optimizer steps `train_causal_lm` takes on `texts` texts (length buckets never merge batches)."""
    return math.ceil(texts / recipe.batch_size) * recipe.epochs
