"""State changes of governed models and unlearning jobs: atomic, each with its audit event."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from compliance import auditlog
from compliance import services as compliance_services
from compliance.models import RequestStatus
from unlearning.manifest import forget_set_sha256, read_manifest
from unlearning.models import (
    JobStatus,
    ModelAsset,
    ModelKind,
    ModelVersion,
    TrainingRecord,
    TrainingRegime,
    UnlearningJob,
    VersionRole,
)
from unlearning.selectors import LINEAGE_TYPES, METHOD_BY_REGIME, forget_record_ids
from unlearning.sisa import save_lineage


def regime_of(lineage) -> str:
    return next((regime for regime, kind in LINEAGE_TYPES.items() if isinstance(lineage, kind)), TrainingRegime.PLAIN)


def lineage_fields(lineage) -> dict:
    """A version's pointer to its stored lineage (nothing for a plain model)."""
    if lineage is None:
        return {}
    sha256, path = save_lineage(lineage, settings.MODEL_STORE_DIR)
    return {"lineage_sha256": sha256, "lineage_path": str(path)}


@transaction.atomic
def register_model(
    *, name: str, architecture: str, training_recipe: dict, checkpoint_sha256: str, checkpoint_path: Path,
    training_manifest: Path, holdout_manifest: Path | None, records: list[dict], actor: str = "operator",
    lineage=None, kind: str = ModelKind.CAUSAL_LM,
) -> ModelAsset:
    """Put a trained model under governance, with the lineage of every record it was trained on
    (and, for SISA and S3T, `lineage`: the shard and slice each record was placed in)."""
    regime = regime_of(lineage)
    if kind != ModelKind.CAUSAL_LM and regime != TrainingRegime.SISA:
        # Classifiers and regressors have no approximate method here: only SISA's exact deletion.
        raise ValueError(f"a {kind} is governed as SISA shards (one shard of one slice for a plain model)")
    asset = ModelAsset.objects.create(
        name=name, kind=kind, architecture=architecture, training_recipe=training_recipe,
        training_manifest=str(training_manifest), holdout_manifest=str(holdout_manifest or ""), regime=regime,
    )
    version = ModelVersion.objects.create(
        asset=asset, sha256=checkpoint_sha256, storage_path=str(checkpoint_path), role=VersionRole.ORIGINAL,
        **lineage_fields(lineage),
    )
    asset.current_version = version
    asset.save(update_fields=["current_version"])
    placements = lineage.placements if lineage else {}
    TrainingRecord.objects.bulk_create(
        TrainingRecord(asset=asset, record_id=r["record_id"], owner_key=r.get("owner_key") or "",
                       kind=r["kind"], content_sha256=r["content_sha256"],
                       shard=getattr(placements.get(r["record_id"]), "shard", None),
                       slice=getattr(placements.get(r["record_id"]), "slice", None))
        for r in records
    )
    auditlog.append(actor=actor, action="model.registered", obj=asset, data={
        "name": name, "kind": kind, "sha256": checkpoint_sha256, "records": len(records), "regime": asset.regime,
        "owners": len({r.get("owner_key") for r in records if r.get("owner_key")}),
        **({"config": asdict(lineage.config), "lineage_sha256": version.lineage_sha256} if lineage else {}),
    })
    return asset


def queue_unlearning(*, asset: ModelAsset, request) -> UnlearningJob:
    """Attach a request to the model's queued job, or queue a new one (call inside a transaction).

    Requests that arrive while a job is still queued are batched into it: one pass over the model
    for all of them.
    """
    job = asset.jobs.select_for_update().filter(status=JobStatus.QUEUED).first()
    created = job is None
    if created:
        job = UnlearningJob.objects.create(asset=asset, method=METHOD_BY_REGIME[asset.regime])
        from workers import tasks

        transaction.on_commit(lambda: tasks.run_unlearning_job.delay(job.pk))
    job.requests.add(request)
    auditlog.append(actor=compliance_services.WORKER, action="job.queued" if created else "job.request_added",
                    obj=job, data={"model": asset.name, "method": job.method, "request": request.reference})
    return job


def claim_job(job_id: int) -> UnlearningJob | None:
    """Take a queued job for this worker; None when another worker has it, it is finished, or
    another job of the same model is running (that job starts this one when it ends).

    The claim is a conditional UPDATE: of two deliveries of the same task, exactly one changes a row.
    The forget set and the base version are frozen at the claim, in the same transaction. Jobs of
    one model run one at a time, because each builds on the version the one before produced: two
    at once would both start from the same base, and the later result would bring back what the
    earlier one removed. The model's row lock makes the check and the claim one step.
    """
    with transaction.atomic():
        asset_id = UnlearningJob.objects.filter(pk=job_id).values_list("asset_id", flat=True).first()
        if asset_id is None or model_busy(asset_id, job_id):
            return None
        claimed = UnlearningJob.objects.filter(
            pk=job_id, status=JobStatus.QUEUED, attempts__lt=settings.JOB_MAX_ATTEMPTS
        ).update(status=JobStatus.RUNNING, attempts=F("attempts") + 1, started_at=timezone.now())
        if not claimed:
            return None
        job = UnlearningJob.objects.select_for_update().select_related("asset").get(pk=job_id)
        requests = list(job.requests.select_for_update().order_by("pk"))
        job.base_version = job.asset.current_version
        job.forget_record_ids = forget_record_ids(job.asset, [r.subject_key for r in requests])
        forget_ids = set(job.forget_record_ids)
        job.forget_set_sha256 = forget_set_sha256(
            r for r in read_manifest(Path(job.asset.training_manifest)) if r["record_id"] in forget_ids
        )
        job.save()
        for request in requests:
            compliance_services.advance(request, RequestStatus.UNLEARNING, job=job.pk)
        auditlog.append(actor=compliance_services.WORKER, action="job.started", obj=job, data={
            "attempt": job.attempts, "base_sha256": job.base_version.sha256,
            "forget_records": len(job.forget_record_ids), "forget_set_sha256": job.forget_set_sha256,
        })
        return job


def model_busy(asset_id: int, job_id: int) -> bool:
    """Lock the model's row and say whether another of its jobs is running (call in a transaction)."""
    list(ModelAsset.objects.select_for_update().filter(pk=asset_id).values_list("pk", flat=True))
    return UnlearningJob.objects.filter(asset_id=asset_id, status=JobStatus.RUNNING).exclude(pk=job_id).exists()


def start_next_job(asset: ModelAsset) -> None:
    """Once a job of the model ends, send its queued job (if any) to the workers (call in a transaction)."""
    queued = asset.jobs.filter(status=JobStatus.QUEUED).order_by("pk").first()
    if queued is not None:
        from workers import tasks

        transaction.on_commit(lambda: tasks.run_unlearning_job.delay(queued.pk))


def record_progress(job_id: int, fraction: float, message: str) -> None:
    # Progress lives in the database (not only a result backend) so the API and portal can show it.
    UnlearningJob.objects.filter(pk=job_id).update(progress=min(max(fraction, 0.0), 1.0), progress_message=message[:200])


@transaction.atomic
def register_version(*, asset: ModelAsset, sha256: str, path: Path, role: str, parent=None, job=None, details=None,
                     lineage=None) -> ModelVersion:
    version, created = ModelVersion.objects.get_or_create(
        asset=asset, sha256=sha256, role=role,
        defaults={"storage_path": str(path), "parent": parent, "produced_by": job, "details": details or {},
                  **lineage_fields(lineage)},
    )
    if created:
        auditlog.append(actor=compliance_services.WORKER, action="model.version_stored", obj=version,
                        data={"model": asset.name, "sha256": sha256, "role": role, "parent": parent.sha256 if parent else None})
    return version


@transaction.atomic
def complete_job(*, job_id: int, sha256: str, path: Path, outcome: dict,
                 lineage=None) -> UnlearningJob:
    job = UnlearningJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.status != JobStatus.RUNNING:
        return job
    version = register_version(asset=job.asset, sha256=sha256, path=path, role=VersionRole.UNLEARNED,
                               parent=job.base_version, job=job, details={"method": job.method},
                               lineage=lineage)
    job.asset.current_version = version  # the next job builds on this one
    job.asset.save(update_fields=["current_version"])
    job.status, job.result_version, job.outcome = JobStatus.SUCCEEDED, version, outcome
    job.progress, job.finished_at = 1.0, timezone.now()
    job.save()
    auditlog.append(actor=compliance_services.WORKER, action="job.succeeded", obj=job, data={
        "result_sha256": sha256, "steps": outcome.get("steps"), "stopped_because": outcome.get("stopped_because"),
    })
    for request in job.requests.select_for_update().order_by("pk"):
        if not request.jobs.exclude(status=JobStatus.SUCCEEDED).exists():
            compliance_services.advance(request, RequestStatus.AUDITING)
    from workers import tasks

    transaction.on_commit(lambda: tasks.run_audit.delay(job.pk))
    start_next_job(job.asset)
    return job


@transaction.atomic
def fail_job(*, job_id: int, step: str, error: str) -> None:
    job = UnlearningJob.objects.select_for_update().get(pk=job_id)
    job.status, job.error, job.finished_at = JobStatus.FAILED, error[:4000], timezone.now()
    job.save()
    auditlog.append(actor=compliance_services.WORKER, action="job.failed", obj=job, data={"step": step, "error": error[:500]})
    for request in job.requests.select_for_update().order_by("pk"):
        compliance_services.fail(request, step=step, reason=error)
    start_next_job(job.asset)
