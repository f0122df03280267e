"""SISA: isolated shards trained slice by slice (unlearning.sisa). A deletion retrains the shards
holding the records from the checkpoint before the earliest affected slice; the reference retrains
them from their initial models by the same machinery, so the two are byte-identical. Language
models and tabular models alike: the lineage names the learner that retrains it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict

from unlearning import sisa
from unlearning.regimes import Deletion, ModelState, Trained, Workbench, register
from unlearning.store import verified_folder


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

    def method_for(self, kind: str) -> str:
        return self.default_method

    def plan(self, model: ModelState, record_ids: Sequence[str], method: str = default_method,
             params: dict | None = None) -> sisa.DeletionPlan:
        return sisa.plan_deletion(model.lineage, record_ids)

    def reference_steps(self, model: ModelState, record_ids: Sequence[str]) -> int | None:
        held = self.held(model, record_ids)
        return self.plan(model, held).full_retraining_steps if held else None

    def execute(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        return self._retrain(model, record_ids, bench, from_scratch=False)

    def reference(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        return self._retrain(model, record_ids, bench, from_scratch=True)

    def parts(self, plan: sisa.DeletionPlan) -> list[int]:
        return [s.shard for s in plan.shards]

    def execute_part(self, model: ModelState, record_ids: Sequence[str], part: int, bench: Workbench) -> dict:
        """One affected shard retrained (on whichever worker took it): its checkpoints, stored."""
        lineage = model.lineage
        learner = bench.learners.sisa(lineage.config, lineage.learner)
        checkpoints = sisa.retrain_shard(lineage, self.plan(model, record_ids), part, bench.records, learner,
                                         bench.store)
        return {"checkpoints": [asdict(c) for c in checkpoints]}

    def join(self, model: ModelState, record_ids: Sequence[str], done: Mapping[int, dict], bench: Workbench) -> Deletion:
        """The shards retrained by `execute_part` (on any workers), put together and exported: the
        same lineage and served model `execute` gives."""
        plan = self.plan(model, record_ids)
        after = sisa.assemble_deletion(model.lineage, plan, {
            int(shard): tuple(sisa.checkpoint_from_dict(c) for c in result["checkpoints"])
            for shard, result in done.items()})
        for shard in done:  # written by other workers: served only as the lineage names them
            final = after.shards[int(shard)][-1]
            verified_folder(bench.store / final.path, final.sha256)
        sha256, path = sisa.export_served_model(after, bench.store, bench.learners.tokenizer)
        return Deletion(plan, after, sha256, path, after.steps_of_last_generation())

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
