"""Plain: one model trained on every record. A record leaves it by an approximate method
(suppression, verified by the audits); exact removal would retrain the whole model, which is what
its retrained reference does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from unlearning.recipe import TrainingRecipe, training_steps
from unlearning.regimes import Deletion, ModelState, Trained, Workbench, register
from unlearning.store import save_checkpoint


@dataclass(frozen=True)
class ApproximatePlan:
    method: str
    record_ids: tuple[str, ...]
    full_retraining_steps: int | None  # exact removal by retraining the whole model; None without a recipe

    # An approximate method stops when its own measures say (target reached, or the utility floor).
    estimated_steps = None
    estimated_seconds = None

    def summary(self) -> str:
        retraining = (f"; exact removal would retrain the whole model (~{self.full_retraining_steps} optimizer steps)"
                      if self.full_retraining_steps is not None else "")
        return (f"Approximate unlearning ({self.method}) of {len(self.record_ids)} records: a suppression of what "
                f"the model learned, verified by the audits, not a removal{retraining}.")

    def as_dict(self) -> dict:
        return asdict(self)


class PlainRegime:
    name = "plain"
    label = "plain (one model: approximate unlearning, or full retraining)"
    exact = False
    default_method = "graddiff"
    lineage_type = None
    config_type = None
    model_kinds = frozenset({"causal_lm"})  # classifiers and regressors have no approximate method yet
    trains = True

    def configure(self, **options) -> None:
        return None

    def held(self, model: ModelState, record_ids: Sequence[str]) -> list[str]:
        """All of them: an approximate method suppresses records, it never takes them out."""
        return list(record_ids)

    def plan(self, model: ModelState, record_ids: Sequence[str], method: str) -> ApproximatePlan:
        return ApproximatePlan(method, tuple(record_ids), self.reference_steps(model, record_ids))

    def reference_steps(self, model: ModelState, record_ids: Sequence[str]) -> int | None:
        if not model.recipe:
            return None  # trained outside the service: nothing to retrain it by
        kept = model.training_records - len(model.removed_record_ids | set(record_ids))
        return training_steps(kept, TrainingRecipe(**model.recipe))

    def execute(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        raise ValueError("a plain model has no exact deletion: its jobs run an approximate method")

    def parts(self, plan) -> list[int]:
        return []  # nothing to spread over workers: one job, one worker

    def reference(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        """The whole model retrained by the original's recipe and tokenizer without every record
        removed so far."""
        removed = model.removed_record_ids | set(record_ids)
        kept = [record["text"] for record in bench.records if record["record_id"] not in removed]
        sha256, path = save_checkpoint(bench.learners.plain(kept), bench.learners.tokenizer, bench.store)
        return Deletion(self.plan(model, record_ids, self.default_method), None, sha256, path,
                        training_steps(len(kept), TrainingRecipe(**model.recipe)))

    def train(self, training: Sequence[dict], bench: Workbench, config: None) -> Trained:
        model = bench.learners.plain([record["text"] for record in training])
        return Trained(*save_checkpoint(model, bench.learners.tokenizer, bench.store), lineage=None)


register(PlainRegime())
