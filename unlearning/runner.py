"""Worker side of an unlearning job: load the data and model, call the method, store the result.

Imported only by worker tasks (it pulls in torch); state changes go through unlearning.services.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from django.conf import settings

from unlearning import services
from unlearning.lm import TrainingRecipe, load_checkpoint, mean_text_loss, save_checkpoint
from unlearning.manifest import read_manifest
from unlearning.methods import UnlearningData, get_method
from unlearning.models import TrainingRegime
from unlearning.sisa import execute_deletion, export_served_model, load_lineage, plan_deletion
from unlearning.sisa_lm import CausalLMLearner

log = logging.getLogger(__name__)


def run_job(job_id: int) -> None:
    job = services.claim_job(job_id)
    if job is None:
        log.info("unlearning job %s is not claimable (taken, finished or out of attempts)", job_id)
        return
    try:
        if job.asset.regime == TrainingRegime.SISA:
            delete_from_shards(job)
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


def sisa_learner(version, lineage):
    """The learner that trained a SISA version, rebuilt from the asset's recipe and the version's tokenizer."""
    _, tokenizer = load_checkpoint(Path(version.storage_path))
    return CausalLMLearner(tokenizer, TrainingRecipe(**version.asset.training_recipe), lineage.config.slices)


def retrain_without(version, record_ids, *, from_scratch: bool = False):
    """Exact deletion from a SISA version: the plan, and the lineage and served model after it.
    `from_scratch` retrains the affected shards from their initial models (the audits' reference)."""
    lineage = load_lineage(Path(version.lineage_path), version.lineage_sha256)
    plan = plan_deletion(lineage, record_ids)
    learner = sisa_learner(version, lineage)
    manifest = read_manifest(Path(version.asset.training_manifest))
    retrained = execute_deletion(lineage, plan, manifest, learner, settings.MODEL_STORE_DIR, from_scratch=from_scratch)
    sha256, path = export_served_model(retrained, settings.MODEL_STORE_DIR, learner.tokenizer)
    return plan, retrained, sha256, path


def delete_from_shards(job) -> None:
    """SISA: retrain only the shards holding the job's records, from the checkpoint before the
    earliest affected slice (several requests batched in the job are one deletion)."""
    services.record_progress(job.pk, 0.0, "retraining the affected shards")
    plan, lineage, sha256, path = retrain_without(job.base_version, job.forget_record_ids)
    executed_steps = sum(c.steps for shard in lineage.shards for c in shard if c.generation == lineage.generation)
    services.complete_job(job_id=job.pk, sha256=sha256, path=path, sisa_lineage=lineage, outcome={
        "method_kind": "exact", "params": {"shards": lineage.config.shards, "slices": lineage.config.slices},
        "steps": executed_steps, "stopped_because": "deletion plan executed", "plan": plan.as_dict(),
        "plan_summary": plan.summary(),
    })
