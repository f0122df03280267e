"""S3T: a frozen base with LoRA adapter stacks per shard (unlearning.s3t). A deletion switches off
the adapters trained on the records' slices and after them, retraining a shard only when its
orders are exhausted; the reference retrains the affected shards' stacks from the base (a
different model from the switched-off one: the audits decide)."""

from __future__ import annotations

from collections.abc import Sequence

from unlearning import s3t
from unlearning.regimes import Deletion, ModelState, Trained, Workbench, register


class S3TRegime:
    name = "s3t"
    label = "S3T (frozen base, LoRA adapters per slice: exact deletion by switching adapters off)"
    exact = True
    default_method = "s3t_adapter_switch_off"
    lineage_type = s3t.S3TLineage
    config_type = s3t.S3TConfig
    model_kinds = frozenset({"causal_lm"})  # LoRA adapters on a language model's base
    trains = True

    def configure(self, *, seed: int, **options) -> s3t.S3TConfig:
        """S3TConfig's defaults (its shards and slices suit the demo world), seeded."""
        return s3t.S3TConfig(seed=seed)

    def held(self, model: ModelState, record_ids: Sequence[str]) -> list[str]:
        return [record_id for record_id in record_ids if record_id in model.lineage.placements]

    def method_for(self, kind: str) -> str:
        return self.default_method

    def plan(self, model: ModelState, record_ids: Sequence[str], method: str = default_method,
             params: dict | None = None) -> s3t.S3TDeletionPlan:
        return s3t.plan_deletion(model.lineage, record_ids)

    def reference_steps(self, model: ModelState, record_ids: Sequence[str]) -> int | None:
        """At most every shard's stacks retrained."""
        if not self.held(model, record_ids):
            return None
        return sum(shard.training_steps for shard in model.lineage.shards)

    def execute(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        lineage = model.lineage
        plan = self.plan(model, record_ids)
        trainer = bench.learners.s3t(lineage.base, lineage.config, bench.store) if plan.retraining_needed else None
        after = s3t.execute_deletion(lineage, plan, bench.records, trainer)
        sha256, path = s3t.export_served_model(after, bench.store)
        return Deletion(plan, after, sha256, path, after.deletions[-1].training_steps)

    def parts(self, plan) -> list[int]:
        return []  # nothing to spread over workers: one job, one worker

    def reference(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion:
        lineage = model.lineage
        plan = self.plan(model, record_ids)
        after = s3t.retrain_without(lineage, record_ids, bench.records,
                                    bench.learners.s3t(lineage.base, lineage.config, bench.store))
        affected = {shard_plan.shard for shard_plan in plan.shards}
        sha256, path = s3t.export_served_model(after, bench.store)
        return Deletion(plan, after, sha256, path,
                        sum(shard.training_steps for shard in after.shards if shard.shard in affected))

    def train(self, training: Sequence[dict], bench: Workbench, config: s3t.S3TConfig) -> Trained:
        base = bench.learners.s3t_base(training, bench.store)
        lineage = s3t.train_s3t(training, base, config, bench.learners.s3t(base, config, bench.store))
        return Trained(*s3t.export_served_model(lineage, bench.store), lineage=lineage)


register(S3TRegime())
