"""SISA: isolated shards trained slice by slice (unlearning.sisa). A deletion retrains the shards
holding the records from the checkpoint before the earliest affected slice; the reference retrains
them from their initial models by the same machinery, so the two are byte-identical. Language
models and tabular models alike: the lineage names the learner that retrains it."""

from __future__ import annotations

from collections.abc import Sequence

from unlearning import sisa
from unlearning.regimes import Deletion, ModelState, Trained, Workbench, register


class SisaRegime:
    name = "sisa"
    label = "SISA (isolated shards trained slice by slice: exact deletion by shard retraining)"
    exact = True
    default_method = "sisa_shard_retraining"
    lineage_type = sisa.SisaLineage
    config_type = sisa.SisaConfig
    model_kinds = frozenset({"causal_lm", "classifier", "regressor"})
    trains = True

    def configure(self, *, shards: int, slices: int, seed: int, epoch_scale: float) -> sisa.SisaConfig:
        return sisa.SisaConfig(shards=shards, slices=slices, seed=seed, epoch_scale=epoch_scale)

    def held(self, model: ModelState, record_ids: Sequence[str]) -> list[str]:
        return [record_id for record_id in record_ids if record_id in model.lineage.placements]

    def plan(self, model: ModelState, record_ids: Sequence[str], method: str = default_method) -> sisa.DeletionPlan:
        return sisa.plan_deletion(model.lineage, record_ids)

    def reference_steps(self, model: ModelState, record_ids: Sequence[str]) -> int | None:
        held = self.held(model, record_ids)
        return self.plan(model, held).full_retraining_steps if held else None

    def execute(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        return self._retrain(model, record_ids, bench, from_scratch=False)

    def reference(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        return self._retrain(model, record_ids, bench, from_scratch=True)

    def _retrain(self, model: ModelState, record_ids: Sequence[str], bench: Workbench, *, from_scratch: bool) -> Deletion:
        """Retrain the affected shards: resumed from the planned checkpoints, or `from_scratch`
        (the reference)."""
        lineage = model.lineage
        plan = self.plan(model, record_ids)
        learner = bench.learners.sisa(lineage.config, lineage.learner)
        after = sisa.execute_deletion(lineage, plan, bench.records, learner, bench.store, from_scratch=from_scratch)
        sha256, path = sisa.export_served_model(after, bench.store, bench.learners.tokenizer)
        return Deletion(plan, after, sha256, path, after.steps_of_last_generation())

    def train(self, training: Sequence[dict], bench: Workbench, config: sisa.SisaConfig) -> Trained:
        lineage = sisa.train_sisa(training, bench.learners.sisa(config), config, bench.store)
        return Trained(*sisa.export_served_model(lineage, bench.store, bench.learners.tokenizer), lineage=lineage)


register(SisaRegime())
