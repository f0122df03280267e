"""Reads of the unlearning domain (lineage)."""

from django.db.models import Count

from unlearning.models import JobStatus, ModelAsset, TrainingRecord


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
