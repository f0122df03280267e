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
# (unlearning.sisa.SisaConfig.epoch_scale). Measured on the demo world with 4×4 shards and two
# SISA seeds (bench/RESULTS.md): at 1.0 the ensemble answered 86.5–93% of retained people's
# questions against the plain model's 96.5%; at 1.25, 96–96.5%, with a one-person deletion still
# 2.9–3.3× faster than retraining the plain model (1.5: the same QA, 2.5–2.9×; 2.0: 1.8×).
SISA_EPOCH_SCALE = 1.25


def training_steps(texts: int, recipe: TrainingRecipe) -> int:
    """Optimizer steps `train_causal_lm` takes on `texts` texts (length buckets never merge batches)."""
    return math.ceil(texts / recipe.batch_size) * recipe.epochs
