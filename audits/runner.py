"""Worker side of an audit run: obtain the retrained reference (when it is affordable), score the
hash-pinned models, judge, and hand the results to audits.services. Imported only by worker tasks
(torch)."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from audits import services
from audits.checks import per_item_by_role, score_models
from audits.sets import audit_sets, row_audit_sets
from audits.verdicts import AGAINST_HOLDOUT, AGAINST_REFERENCE, VerdictPolicy, judge, overall
from unlearning import services as unlearning_services
from unlearning.governed import load_governed
from unlearning.lm import TrainingRecipe, checkpoint_sha256, load_tokenizer, save_checkpoint, train_causal_lm, training_steps
from unlearning.manifest import forget_set_sha256, read_manifest
from unlearning.models import ModelKind, ModelVersion, VersionRole
from unlearning.runner import EXACT_DELETIONS
from unlearning.s3t import S3TLineage
from unlearning.selectors import removed_record_ids, still_placed, version_before_removal, version_lineage
from unlearning.sisa import plan_deletion

log = logging.getLogger(__name__)


def affordable_recipe(asset, texts: int) -> TrainingRecipe | None:
    """The original's recipe, if retraining by it fits the audit budget (settings.AUDIT_REFERENCE_MAX_STEPS)."""
    if not asset.training_recipe:
        return None  # trained outside the service: nothing to retrain it by
    recipe = TrainingRecipe(**asset.training_recipe)
    return recipe if training_steps(texts, recipe) <= settings.AUDIT_REFERENCE_MAX_STEPS else None


def reference_version(job, manifest: list[dict], removed_ids: set[str]) -> ModelVersion | None:
    """The model retrained without every record removed so far, by the original's own recipe and
    tokenizer; reused when one exists for the same removed set. None when retraining is not affordable."""
    excluded_sha = forget_set_sha256(r for r in manifest if r["record_id"] in removed_ids)
    existing = ModelVersion.objects.filter(asset=job.asset, role=VersionRole.REFERENCE,
                                           details__excluded_set_sha256=excluded_sha).first()
    if existing:
        return existing
    if job.asset.regime in EXACT_DELETIONS:
        return exact_reference(job, excluded_sha, len(removed_ids))
    kept = [r["text"] for r in manifest if r["record_id"] not in removed_ids]
    recipe = affordable_recipe(job.asset, len(kept))
    if recipe is None:
        return None
    original = job.asset.versions.get(role=VersionRole.ORIGINAL)
    tokenizer = load_tokenizer(Path(original.storage_path))
    model = train_causal_lm(kept, tokenizer, recipe)
    sha256, path = save_checkpoint(model, tokenizer, settings.MODEL_STORE_DIR)
    return unlearning_services.register_version(
        asset=job.asset, sha256=sha256, path=path, role=VersionRole.REFERENCE, job=job,
        details={"excluded_set_sha256": excluded_sha, "excluded_records": len(removed_ids)},
    )


def exact_reference(job, excluded_sha: str, excluded_records: int) -> ModelVersion | None:
    """SISA's or S3T's oracle from the same machinery: the affected shards retrained from their
    initial models (SISA) or from the base (S3T), never from a checkpoint or by switching adapters
    off. None when retraining every shard (the bound the lineage gives) is over the audit budget, or
    when an earlier job deleted every record (the shards that held them are not in this lineage)."""
    base = job.base_version
    placed = still_placed(base, job.forget_record_ids)
    if not placed or exact_plan_bound(base, placed) > settings.AUDIT_REFERENCE_MAX_STEPS:
        return None
    done = EXACT_DELETIONS[job.asset.regime](base, placed, as_reference=True)
    return unlearning_services.register_version(
        asset=job.asset, sha256=done.sha256, path=done.path, role=VersionRole.REFERENCE, job=job, lineage=done.lineage,
        details={"excluded_set_sha256": excluded_sha, "excluded_records": excluded_records,
                 "retrained": f"the affected {job.asset.regime} shards, from scratch ({done.steps} steps)"},
    )


def exact_plan_bound(version, record_ids) -> int:
    """Optimizer steps that retraining every shard without the records would take, at most."""
    lineage = version_lineage(version)
    if isinstance(lineage, S3TLineage):
        return sum(shard.training_steps for shard in lineage.shards)
    return plan_deletion(lineage, record_ids).full_retraining_steps


def verify_pinned(version: ModelVersion) -> Path:
    """Audit exactly the bytes the database names: refuse a checkpoint whose files changed."""
    path = Path(version.storage_path)
    actual = checkpoint_sha256(path)
    if actual != version.sha256:
        raise RuntimeError(f"checkpoint {path} hashes to {actual}, not the pinned {version.sha256}")
    return path


def run_audit(job_id: int) -> None:
    run = services.claim_audit(job_id)
    if run is None:
        log.info("audit of job %s is not claimable (taken, finished or out of attempts)", job_id)
        return
    try:
        job = run.job
        manifest = read_manifest(Path(job.asset.training_manifest))
        holdout = read_manifest(Path(job.asset.holdout_manifest))
        removed = removed_record_ids(job.asset, up_to_job=job)
        sets = (audit_sets(manifest, holdout, set(job.forget_record_ids), removed) if job.asset.kind == ModelKind.CAUSAL_LM
                else row_audit_sets(manifest, holdout, set(job.forget_record_ids)))
        versions = {"original": version_before_removal(job), "unlearned": job.result_version}
        reference = reference_version(job, manifest, removed)
        if reference is not None:
            versions["reference"] = reference
        comparison = AGAINST_REFERENCE if reference is not None else AGAINST_HOLDOUT
        scores = score_models({role: lambda v=version: load_governed(job.asset.kind, verify_pinned(v))
                               for role, version in versions.items()}, sets,
                              compare_with_never_trained=comparison == AGAINST_HOLDOUT)
        judgements = judge(per_item_by_role(scores), VerdictPolicy.from_dict(run.policy), comparison)
        services.complete_audit(run_id=run.pk, versions=versions, comparison=comparison, judgements=judgements,
                                scores=scores, verdict=overall([j.verdict for j in judgements]))
    except Exception as exc:  # the failure is recorded on the run and its requests, then logged
        log.exception("audit of job %s failed", job_id)
        services.fail_audit(run_id=run.pk, error=f"{type(exc).__name__}: {exc}")
