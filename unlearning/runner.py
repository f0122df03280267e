"""Worker side of an unlearning job: load the data and model, call the method, store the result.

Imported only by worker tasks (it pulls in torch); state changes go through unlearning.services.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings

from unlearning import s3t, services, sisa
from unlearning.governed import sisa_learner
from unlearning.lm import load_checkpoint, mean_text_loss, save_checkpoint
from unlearning.manifest import read_manifest
from unlearning.methods import UnlearningData, get_method
from unlearning.models import TrainingRegime
from unlearning.selectors import earlier_jobs_that_removed, still_placed, version_lineage

log = logging.getLogger(__name__)


def run_job(job_id: int) -> None:
    job = services.claim_job(job_id)
    if job is None:
        log.info("unlearning job %s is not claimable (taken, finished or out of attempts)", job_id)
        return
    try:
        if job.asset.regime in EXACT_DELETIONS:
            delete_exactly(job)
            return
        forget_ids = set(job.forget_record_ids)
        manifest = read_manifest(Path(job.asset.training_manifest))
        data = UnlearningData(
            forget_texts=[r["text"] for r in manifest if r["record_id"] in forget_ids],
            retain_texts=[r["text"] for r in manifest if r["record_id"] not in forget_ids],
        )
        model, tokenizer = load_checkpoint(Path(job.base_version.storage_path))
        if job.asset.holdout_manifest:
            holdout = [r["text"] for r in read_manifest(Path(job.asset.holdout_manifest))]
            data = UnlearningData(data.forget_texts, data.retain_texts, mean_text_loss(model, tokenizer, holdout))
        method = get_method(job.method)
        params = method.params(job.params)
        outcome = method.unlearn(model, tokenizer, data, params,
                                 progress=lambda fraction, message: services.record_progress(job.pk, fraction, message))
        sha256, path = save_checkpoint(outcome.model, tokenizer, settings.MODEL_STORE_DIR)
        services.complete_job(job_id=job.pk, sha256=sha256, path=path, outcome={
            # What actually ran, defaults resolved: the certificate cites this, not today's defaults.
            "method_kind": method.kind, "params": asdict(params), "steps": outcome.steps, "stopped_because": outcome.stopped_because, "history": outcome.history,
            "target_forget_loss": data.target_forget_loss,
        })
    except Exception as exc:  # the failure is recorded on the job and its requests, then logged
        log.exception("unlearning job %s failed", job_id)
        services.fail_job(job_id=job.pk, step="unlearning", error=f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class ExactDeletion:
    plan: object  # unlearning.sisa.DeletionPlan or unlearning.s3t.S3TDeletionPlan
    lineage: object  # the lineage after it
    sha256: str
    path: Path
    steps: int  # optimizer steps it took (0: S3T only switched adapters off)


def sisa_deletion(version, record_ids, *, as_reference: bool = False) -> ExactDeletion:
    """Retrain the shards holding the records from the checkpoint before the earliest affected
    slice; as the audits' reference, retrain them from their initial models instead."""
    lineage = version_lineage(version)
    plan = sisa.plan_deletion(lineage, record_ids)
    learner = sisa_learner(version.asset.kind, lineage, Path(version.storage_path), version.asset.training_recipe)
    manifest = read_manifest(Path(version.asset.training_manifest))
    after = sisa.execute_deletion(lineage, plan, manifest, learner, settings.MODEL_STORE_DIR, from_scratch=as_reference)
    sha256, path = sisa.export_served_model(after, settings.MODEL_STORE_DIR, getattr(learner, "tokenizer", None))
    return ExactDeletion(plan, after, sha256, path, after.steps_of_last_generation())


def s3t_deletion(version, record_ids, *, as_reference: bool = False) -> ExactDeletion:
    """Switch off the adapters trained on the records' slices and after them (retraining a shard
    only when its orders are exhausted); as the audits' reference, retrain the affected shards'
    adapter stacks from the base."""
    lineage = version_lineage(version)
    plan = s3t.plan_deletion(lineage, record_ids)
    manifest = read_manifest(Path(version.asset.training_manifest))
    if as_reference:
        after = s3t.retrain_without(lineage, record_ids, manifest, settings.MODEL_STORE_DIR)
        affected = {shard_plan.shard for shard_plan in plan.shards}
        steps = sum(shard.training_steps for shard in after.shards if shard.shard in affected)
    else:
        after = s3t.execute_deletion(lineage, plan, manifest, settings.MODEL_STORE_DIR)
        steps = after.deletions[-1].training_steps
    sha256, path = s3t.export_served_model(after, settings.MODEL_STORE_DIR)
    return ExactDeletion(plan, after, sha256, path, steps)


EXACT_DELETIONS = {TrainingRegime.SISA: sisa_deletion, TrainingRegime.S3T: s3t_deletion}


def delete_exactly(job) -> None:
    """One exact deletion for every request batched in the job, as its plan says. Records an
    earlier job already deleted are not in the base version's lineage any more: they need nothing."""
    services.record_progress(job.pk, 0.0, "exact deletion")
    placed = still_placed(job.base_version, job.forget_record_ids)
    if not placed:
        complete_unchanged(job)
        return
    done = EXACT_DELETIONS[job.asset.regime](job.base_version, placed)
    services.complete_job(job_id=job.pk, sha256=done.sha256, path=done.path, lineage=done.lineage, outcome={
        "method_kind": "exact", "params": asdict(done.lineage.config), "steps": done.steps,
        "stopped_because": "deletion plan executed", "plan": done.plan.as_dict(), "plan_summary": done.plan.summary(),
    })


def complete_unchanged(job) -> None:
    """Every record was deleted before: the job succeeds with the base version as its result."""
    base, earlier = job.base_version, earlier_jobs_that_removed(job)
    by = f"job {', '.join(str(other.pk) for other in earlier)}" if earlier else "an earlier job"
    summary = (f"Nothing left to delete: the {len(job.forget_record_ids)} records were deleted from this model by "
               f"{by}; the model is unchanged (no training).")
    lineage = version_lineage(base)
    services.complete_job(job_id=job.pk, sha256=base.sha256, path=Path(base.storage_path), lineage=lineage, outcome={
        "method_kind": "exact", "params": asdict(lineage.config), "steps": 0,
        "stopped_because": "already deleted", "plan": None, "plan_summary": summary,
    })
