"""Worker side of an audit run: obtain the retrained reference (when it is affordable), score the
hash-pinned models, judge, and hand the results to audits.services. Imported only by worker tasks
(torch)."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from audits import services
from audits.checks import per_item_by_role, person_row_subjects, score_models
from audits.runtime_filters import prepare_runtime_filters
from audits.sets import audit_sets, row_audit_sets
from audits.verdicts import (
    AGAINST_HOLDOUT,
    AGAINST_REFERENCE,
    PASS,
    PROVEN_BY_IDENTITY,
    VerdictPolicy,
    family_verdicts,
    judge,
    run_verdict,
    subject_verdicts,
)
from compliance.auditlog import subject_ref
from compliance.db import LOST_CONNECTION, renew_connection
from compliance.models import RemovalRequest
from unlearning import services as unlearning_services
from unlearning.loading import load_model
from unlearning.manifest import forget_set_sha256, read_manifest
from unlearning.models import JobStatus, ModelKind, ModelVersion, VersionRole
from unlearning.runner import workbench
from unlearning.serving.encoder import sentence_encoder
from unlearning.serving.targets import targets_from_records
from unlearning.selectors import model_state, regime, removed_record_ids, version_before_removal
from unlearning.store import verified_folder

log = logging.getLogger(__name__)

# Where each stage of an audit starts, as a share of the run, for the owner's status page: preparing
# the sets is quick; retraining the reference (when one is needed and not kept from an earlier run)
# and scoring the models take minutes each, scoring split evenly between the models; the runtime
# filters' calibration comes last. The stages' names are audits.wording.AUDIT_STAGES' keys.
REFERENCE_AT, SCORING_AT, FILTERS_AT = 0.03, 0.30, 0.90


def report(run, fraction: float, stage: str) -> None:
    services.record_audit_progress(run.pk, run.attempts, fraction, stage)


def reporting_turns(run, loaders: dict) -> dict:
    """The loaders of score_models, each reporting as it is called that scoring has reached its
    model (in whatever order score_models takes them)."""
    turns = iter(range(len(loaders)))

    def reporting(role, load):
        def load_and_report():
            turn = next(turns)
            report(run, SCORING_AT + (FILTERS_AT - SCORING_AT) * turn / len(loaders),
                   f"scoring the {role} model ({turn + 1} of {len(loaders)})")
            return load()
        return load_and_report

    return {role: reporting(role, load) for role, load in loaders.items()}


def reference_version(job, manifest: list[dict], removed_ids: set[str]) -> ModelVersion | None:
    """The model retrained without every record removed so far, by the model's own regime, recipe
    and tokenizer (SISA: the affected shards from their initial models; S3T: their adapter stacks
    from the base; plain: the whole model); reused when one exists for the same removed set. None
    when retraining is over the audit budget (`AUDIT_REFERENCE_MAX_STEPS`), when the service did
    not train the model (no recipe), or when an earlier job deleted every record (the shards that
    held them are not in this lineage)."""
    excluded_sha = forget_set_sha256(r for r in manifest if r["record_id"] in removed_ids)
    existing = ModelVersion.objects.filter(asset=job.asset, role=VersionRole.REFERENCE,
                                           details__excluded_set_sha256=excluded_sha).first()
    if existing:
        return existing
    training = regime(job.asset)
    # An exact regime retrains from the version it deleted from (earlier removals are out of its
    # lineage already); a plain model from scratch, by the original's tokenizer.
    version = job.base_version if training.exact else job.asset.versions.get(role=VersionRole.ORIGINAL)
    state = model_state(version)
    records = training.held(state, job.forget_record_ids)
    bound = training.reference_steps(state, records) if records else None
    if bound is None or bound > settings.AUDIT_REFERENCE_MAX_STEPS:
        return None
    done = training.reference(state, records, workbench(version))
    retrained = (f"the affected {job.asset.regime} shards, from scratch ({done.steps} steps)" if training.exact
                 else f"the whole model, by its recipe ({done.steps} steps)")
    renew_connection()  # retraining took minutes
    return unlearning_services.register_version(
        asset=job.asset, sha256=done.sha256, path=done.path, role=VersionRole.REFERENCE, job=job, lineage=done.lineage,
        details={"excluded_set_sha256": excluded_sha, "excluded_records": len(removed_ids), "retrained": retrained},
    )


def per_subject(judgements, per_item: dict, unlearned_scores: dict, policy: VerdictPolicy, basis: str) -> dict:
    """Each subject's own verdict and families, for a job of several subjects (one subject's are the
    run's); a removal proven by identity is proven for every one of them."""
    subjects = person_row_subjects(unlearned_scores)
    if len({name for names in subjects.values() for name in names}) < 2:
        return {}
    verdicts = subject_verdicts(judgements, per_item, subjects, policy)
    return ({subject: {**entry, "verdict": PASS} for subject, entry in verdicts.items()}
            if basis == PROVEN_BY_IDENTITY else verdicts)


def confirmed_owners(job) -> dict[str, str]:
    """The records legal confirmed for this model at approval (near matches under another owner, or
    none), each counted as its requester's in the person-level tests."""
    return {record_id: request.subject_key for request in job.requests.order_by("pk")
            for record_id in request.confirmed_records.get(job.asset.name, []) if request.subject_key}


def verify_pinned(version: ModelVersion) -> Path:
    """Audit exactly the bytes the database names: refuse a checkpoint whose files changed."""
    return verified_folder(Path(version.storage_path), version.sha256)


def prepared_filters(job, sets, manifest: list[dict], removed: set[str]) -> dict:
    """The runtime filters for the unlearned version, over every request removed from the model so
    far (the requests' full names added to their records' names), calibrated and measured. A
    failure here (an unreachable ALU endpoint, say) leaves the version unfiltered and says why on
    the certificate; it does not throw away the audit's verdict."""
    try:
        return filters_for(job, sets, manifest, removed)
    except LOST_CONNECTION:
        raise
    except Exception as exc:
        log.exception("runtime filters for job %s could not be prepared", job.pk)
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def filters_for(job, sets, manifest: list[dict], removed: set[str]) -> dict:
    names = {request.subject_key: [request.full_name] for request in
             RemovalRequest.objects.filter(jobs__asset=job.asset, jobs__status__in=[JobStatus.SUCCEEDED]).distinct()
             if request.subject_key} | {r.subject_key: [r.full_name] for r in job.requests.all() if r.subject_key}
    targets = targets_from_records([r for r in manifest if r["record_id"] in removed], names)
    model, tokenizer = load_model(job.asset.kind, verify_pinned(job.result_version))
    alu = ({"endpoint": settings.SERVING_ALU_ENDPOINT, "model": settings.SERVING_ALU_MODEL}
           if settings.SERVING_ALU_ENDPOINT else None)
    return prepare_runtime_filters(model, tokenizer, sets, targets, sentence_encoder(settings.SERVING_ENCODER_PATH),
                                   settings.MODEL_STORE_DIR, alu)


def run_claimed_audit(run) -> None:
    """Audit a job whose run this worker claimed (audits.services.claim_audit); a failure is
    recorded on the run and its requests, then logged."""
    try:
        report(run, 0.0, "preparing the audit sets")
        job = run.job
        manifest = read_manifest(Path(job.asset.training_manifest))
        holdout = read_manifest(Path(job.asset.holdout_manifest))
        removed = removed_record_ids(job.asset, up_to_job=job)
        sets = (audit_sets(manifest, holdout, set(job.forget_record_ids), removed, job.asset.question_template,
                           person_ref=subject_ref, owners=confirmed_owners(job))
                if job.asset.kind == ModelKind.CAUSAL_LM
                else row_audit_sets(manifest, holdout, set(job.forget_record_ids)))
        versions = {"original": version_before_removal(job), "unlearned": job.result_version}
        report(run, REFERENCE_AT, "retraining the reference model")
        reference = reference_version(job, manifest, removed)
        if reference is not None:
            versions["reference"] = reference
        comparison = AGAINST_REFERENCE if reference is not None else AGAINST_HOLDOUT
        scores = score_models(reporting_turns(run, {role: lambda v=version: load_model(job.asset.kind, verify_pinned(v))
                                                    for role, version in versions.items()}), sets,
                              compare_with_never_trained=comparison == AGAINST_HOLDOUT)
        policy = VerdictPolicy.from_dict(run.policy)
        per_item = per_item_by_role(scores)
        judgements = judge(per_item, policy, comparison)
        verdict, basis = run_verdict(judgements, policy, comparison, versions["unlearned"].sha256,
                                     reference.sha256 if reference is not None else None,
                                     exact=job.outcome.get("method_kind") == "exact")
        renew_connection()  # scoring took minutes
        filters = {}
        if job.asset.kind == ModelKind.CAUSAL_LM and settings.AUDIT_RUNTIME_FILTERS:
            report(run, FILTERS_AT, "preparing runtime filters")
            filters = prepared_filters(job, sets, manifest, removed)
        services.complete_audit(run_id=run.pk, attempt=run.attempts, versions=versions, comparison=comparison,
                                judgements=judgements, scores=scores, verdict=verdict, basis=basis,
                                families=([family.as_dict() for family in family_verdicts(judgements, policy)]
                                          if policy.family_rule else []),
                                subjects=per_subject(judgements, per_item, scores["unlearned"], policy, basis),
                                runtime_filters=filters)
    except LOST_CONNECTION:
        raise  # the database's trouble, not the audit's: the claim goes stale and is re-queued
    except Exception as exc:
        log.exception("audit of job %s failed", run.job_id)
        services.fail_audit(run_id=run.pk, error=f"{type(exc).__name__}: {exc}", attempt=run.attempts)
