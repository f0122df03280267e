"""Reads of the unlearning domain (lineage)."""

from functools import lru_cache
from pathlib import Path

from django.db.models import Count

from unlearning import s3t, sisa
from unlearning.models import JobStatus, ModelAsset, ModelVersion, TrainingRecord, TrainingRegime, UnlearningJob
from unlearning.recipe import TrainingRecipe, training_steps

# What a model's jobs run: an approximate method on a plain model's weights; on SISA and S3T, an
# exact deletion, which is no method applied to weights (unlearning.runner): SISA retrains shards,
# S3T switches adapters off (and retrains a shard only when its orders are exhausted).
METHOD_BY_REGIME = {TrainingRegime.PLAIN: "graddiff", TrainingRegime.SISA: "sisa_shard_retraining",
                    TrainingRegime.S3T: "s3t_adapter_switch_off"}
LINEAGE_TYPES = {TrainingRegime.SISA: sisa.SisaLineage, TrainingRegime.S3T: s3t.S3TLineage}
PLANNERS = {TrainingRegime.SISA: sisa.plan_deletion, TrainingRegime.S3T: s3t.plan_deletion}


def assets_holding(owner_key: str) -> list[tuple[ModelAsset, int]]:
    """Every governed model trained on at least one record of this owner, with the record count."""
    if not owner_key:
        return []
    rows = (
        TrainingRecord.objects.filter(owner_key=owner_key)
        .values("asset").annotate(records=Count("id")).order_by("asset")
    )
    assets = ModelAsset.objects.in_bulk([row["asset"] for row in rows])
    return [(assets[row["asset"]], row["records"]) for row in rows]


def forget_record_ids(asset: ModelAsset, owner_keys: list[str]) -> list[str]:
    return sorted(
        TrainingRecord.objects.filter(asset=asset, owner_key__in=owner_keys).values_list("record_id", flat=True)
    )


def removed_record_ids(asset: ModelAsset, up_to_job=None) -> set[str]:
    """Records removed from this model by its succeeded jobs (and `up_to_job`): what a retrained
    reference for the model's current state must leave out."""
    removed: set[str] = set()
    for ids in asset.jobs.filter(status=JobStatus.SUCCEEDED).values_list("forget_record_ids", flat=True):
        removed.update(ids)
    if up_to_job is not None:
        removed.update(up_to_job.forget_record_ids)
    return removed


def records_removed_by(job: UnlearningJob) -> set[str]:
    """What a succeeded job took out of its model: an exact job, the records its plan deleted (none
    when an earlier job had deleted them all); an approximate one, its whole forget set."""
    if job.outcome.get("method_kind") == "exact":
        return set((job.outcome.get("plan") or {}).get("deleted_record_ids", ()))
    return set(job.forget_record_ids)


def earlier_jobs_that_removed(job: UnlearningJob) -> list[UnlearningJob]:
    """The model's succeeded jobs before this one that removed any of its records, oldest first
    (jobs of one model run one at a time, in the order they were created)."""
    wanted = set(job.forget_record_ids)
    earlier = job.asset.jobs.filter(status=JobStatus.SUCCEEDED, pk__lt=job.pk).order_by("pk")
    return [other for other in earlier if wanted & records_removed_by(other)]


def version_before_removal(job: UnlearningJob) -> ModelVersion:
    """The last version that still held the job's records: its base, unless an earlier job removed
    some of them first (a second request for the same person), then that job's base. The audits
    call it the original: the model whose knowledge of the person the forgetting is measured from."""
    earlier = earlier_jobs_that_removed(job)
    return earlier[0].base_version if earlier else job.base_version


@lru_cache(maxsize=8)
def _stored_lineage(path: str, sha256: str, regime: str):
    return sisa.load_lineage(Path(path), sha256, LINEAGE_TYPES[regime])


def version_lineage(version: ModelVersion):
    """A SISA or S3T version's lineage: immutable for its hash, so read and verified once per process."""
    return _stored_lineage(version.lineage_path, version.lineage_sha256, version.asset.regime)


def still_placed(version: ModelVersion, record_ids: list[str]) -> list[str]:
    """The records this SISA or S3T version still holds (an earlier deletion took out the rest)."""
    placements = version_lineage(version).placements
    return [record_id for record_id in record_ids if record_id in placements]


def exact_plan(version: ModelVersion, record_ids: list[str]):
    """The deletion plan of these records from this version (unlearning.sisa / unlearning.s3t)."""
    return PLANNERS[version.asset.regime](version_lineage(version), record_ids)


def deletion_plan(asset: ModelAsset, owner_keys: list[str]) -> dict:
    """What removing these owners' records from the model's current version will do and cost,
    worked out before any training (shown to legal before approval and to operators in the admin)."""
    record_ids = forget_record_ids(asset, owner_keys)
    version = asset.current_version
    method = METHOD_BY_REGIME[asset.regime]
    model = {"model": asset.name, "model_kind": asset.kind, "regime": asset.regime, "method": method}
    if asset.regime in LINEAGE_TYPES:
        placed = still_placed(version, record_ids)
        if not placed:
            return {**model, "kind": "exact", "records": 0,
                    "summary": "Every record of this owner has already been deleted from this model."}
        plan = exact_plan(version, placed)
        return {**model, "kind": "exact", "records": len(placed), "summary": plan.summary(), "plan": plan.as_dict()}
    recipe = TrainingRecipe(**asset.training_recipe) if asset.training_recipe else None
    kept = asset.records.count() - len(removed_record_ids(asset) | set(record_ids))
    retraining = f"; exact removal would retrain the whole model (~{training_steps(kept, recipe)} optimizer steps)" if recipe else ""
    return {**model, "kind": "approximate", "records": len(record_ids),
            "summary": f"Approximate unlearning ({method}) of {len(record_ids)} records: a suppression of what "
                       f"the model learned, verified by the audits, not a removal{retraining}."}


def deletion_plans(owner_key: str) -> list[dict]:
    return [deletion_plan(asset, [owner_key]) for asset, _ in assets_holding(owner_key)]
