"""Plain: one model trained on every record. A record leaves it by an approximate method
(suppression, verified by the audits); exact removal would retrain the whole model, which is what
its retrained reference does."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from unlearning.methods import get_method
from unlearning.recipe import TrainingRecipe, training_steps
from unlearning.regimes import Deletion, ModelState, Trained, Workbench, register


@dataclass(frozen=True)
class ApproximatePlan:
    method: str
    record_ids: tuple[str, ...]
    full_retraining_steps: int | None  # exact removal by retraining the whole model; None without a recipe
    method_label: str = ""
    params: dict = field(default_factory=dict)  # the method's parameters, defaults resolved
    # Measured on this model by its latest job of the same method (else of any method): None before any.
    seconds_per_step: float | None = None

    @property
    def estimated_steps(self) -> int | None:
        """At most: a language-model method's step budget (it stops earlier at its target or its utility
        floor). None for a tabular method, whose budget is in epochs (seconds, on these models)."""
        return self.params.get("max_steps")

    @property
    def estimated_seconds(self) -> float | None:
        if self.seconds_per_step is None or self.estimated_steps is None:
            return None
        return round(self.estimated_steps * self.seconds_per_step, 1)

    def summary(self) -> str:
        lora = f", LoRA rank {self.params['lora_rank']}" if self.params.get("lora_rank") else ""
        if self.estimated_steps is not None:
            cost = f"at most {self.estimated_steps} steps"
        elif "step_halvings" in self.params:
            cost = f"one step, of at most {self.params['step_halvings'] + 1} sizes tried"
        else:
            cost = f"at most {self.params['max_epochs']} epochs"
        if self.estimated_seconds is not None:
            cost += f" (at most ~{duration(self.estimated_seconds)} at {self.seconds_per_step:.2f} s a step, as measured on this model)"
        retraining = (f"; exact removal would retrain the whole model (~{self.full_retraining_steps} optimizer steps)"
                      if self.full_retraining_steps is not None else "")
        return (f"Approximate unlearning by {self.method_label} (learning rate {self.params['learning_rate']:g}{lora}) "
                f"of {len(self.record_ids)} records, {cost}: a suppression of what the model learned, verified by the "
                f"audits, not a removal{retraining}.")

    def as_dict(self) -> dict:
        return asdict(self)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def retraining_steps(model: ModelState, records: int) -> int:
    """Optimizer steps of training the whole model by its recipe on `records` records: a language
    model's (unlearning.recipe), or a tabular MLP's (epochs of mini-batches, unlearning.tabular.MLPRecipe)."""
    if model.kind == "causal_lm":
        return training_steps(records, TrainingRecipe(**model.recipe))
    return model.recipe["epochs"] * math.ceil(records / model.recipe["batch_size"])


class PlainRegime:
    name = "plain"
    label = "plain (one model: approximate unlearning, or full retraining)"
    exact = False
    # Per model kind. IAU for rows: one step, the cheapest, and the guard's step-size halving keeps it
    # within the floor (bench/RESULTS.md, "Approximate unlearning of tabular models").
    default_methods = {"causal_lm": "graddiff", "classifier": "iau", "regressor": "iau"}
    lineage_type = None
    config_type = None
    model_kinds = frozenset({"causal_lm", "classifier", "regressor"})
    trains = True

    def configure(self, **options) -> None:
        return None

    def method_for(self, kind: str) -> str:
        return self.default_methods[kind]

    def held(self, model: ModelState, record_ids: Sequence[str]) -> list[str]:
        """All of them: an approximate method suppresses records, it never takes them out."""
        return list(record_ids)

    def plan(self, model: ModelState, record_ids: Sequence[str], method: str, params: dict | None = None) -> ApproximatePlan:
        chosen = get_method(method)
        return ApproximatePlan(method, tuple(record_ids), self.reference_steps(model, record_ids), chosen.label,
                               asdict(chosen.params(params)), model.seconds_per_step.get(method,
                                                                                         model.seconds_per_step.get("")))

    def reference_steps(self, model: ModelState, record_ids: Sequence[str]) -> int | None:
        if not model.recipe:
            return None  # trained outside the service: nothing to retrain it by
        return retraining_steps(model, model.training_records - len(model.removed_record_ids | set(record_ids)))

    def execute(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        raise ValueError("a plain model has no exact deletion: its jobs run an approximate method")

    def parts(self, plan) -> list[int]:
        return []  # nothing to spread over workers: one job, one worker

    def reference(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        """The whole model retrained by the original's recipe and tokenizer without every record
        removed so far."""
        removed = model.removed_record_ids | set(record_ids)
        kept = [record for record in bench.records if record["record_id"] not in removed]
        sha256, path = bench.learners.save(bench.learners.plain(kept), bench.store)
        return Deletion(self.plan(model, record_ids, self.method_for(model.kind)), None, sha256, path,
                        retraining_steps(model, len(kept)))

    def train(self, training: Sequence[dict], bench: Workbench, config: None) -> Trained:
        return Trained(*bench.learners.save(bench.learners.plain(training), bench.store), lineage=None)


register(PlainRegime())
