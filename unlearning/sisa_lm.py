"""The SISA learner for causal LMs: each shard is a GPT-2 of the recipe's shape, trained slice by
slice with `unlearning.lm.train_from` on the texts of the shard's records.

Compute: a plain model trains `recipe.epochs` epochs over its records. A shard of r slices trains
slice i on i/r of its records, so it runs 2·epochs/(r+1) epochs per slice (rounded): the same passes
over each record as the plain model makes, which keeps the comparison with plain training fair.
Each slice starts a fresh AdamW and warm-up/decay schedule, so a slice checkpoint (the weights
alone) is a complete resume point: resuming from it retrains exactly what training from scratch
would. Pure ML code: no Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from unlearning.lm import TrainingRecipe, load_causal_lm, new_model, train_from
from unlearning.numerics import PinnedNumerics
from unlearning.sisa import SisaConfig, SliceSchedule, SliceTraining


class CausalLMLearner(PinnedNumerics):
    name = "gpt2-causal-lm"

    def __init__(self, tokenizer, recipe: TrainingRecipe, config: SisaConfig):
        self.tokenizer = tokenizer
        self.recipe = recipe
        self.schedule = SliceSchedule.matching_plain_training(recipe.epochs, recipe.batch_size, config.slices,
                                                              config.epoch_scale)

    def hyperparameters(self) -> dict:
        # The engine seeds every shard and slice; the recipe's own seed plays no part.
        return {name: value for name, value in asdict(self.recipe).items() if name != "seed"}

    def initial_state(self, seed: int):
        return new_model(self.tokenizer, replace(self.recipe, seed=seed))

    def train_slice(self, model, records: Sequence[dict], seed: int) -> SliceTraining:
        log = train_from(model, [r["text"] for r in records], self.tokenizer,
                         replace(self.recipe, epochs=self.schedule.epochs, seed=seed))
        return SliceTraining(frozenset(records[i]["record_id"] for i in log.trained_indices), log.steps)

    def save(self, model, directory: Path) -> None:
        model.save_pretrained(directory)

    def load(self, directory: Path):
        return load_causal_lm(directory)
