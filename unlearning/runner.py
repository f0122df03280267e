"""Worker side of an unlearning job: load the data and model, run the regime's exact deletion or
an approximate method, store the result. Imported only by worker tasks (it pulls in torch); state
changes go through unlearning.services.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from django.conf import settings

from compliance.db import LOST_CONNECTION, renew_connection
from config.version import code_version

from unlearning import intake, services
from unlearning.checkpoints import CheckpointRejected, checkpoint_folder, import_checkpoint, refuse_links_outside
from unlearning.learners import learners_for
from unlearning.loading import CAUSAL_LM, load_model
from unlearning.lm import mean_text_loss
from unlearning.manifest import read_manifest
from unlearning.methods import QA, RowData, UnlearningData, UnlearningFailed, get_method
from unlearning.models import RegistrationStatus, VersionRole
from unlearning.regimes import Workbench
from unlearning.selectors import (
    confirmed_material_texts, earlier_jobs_that_removed, model_state, regime, removed_record_ids, version_lineage,
)
from unlearning.store import save_adapter_checkpoint, save_checkpoint
from unlearning.tabular import plain_mlp_learner, save_plain_mlp

log = logging.getLogger(__name__)


def run_claimed_job(job) -> None:
    """Carry out a job this worker claimed (unlearning.services.claim_job); a failure is recorded
    on the job and its requests, then logged."""
    try:
        if regime(job.asset).exact:
            delete_exactly(job)
        else:
            unlearn_approximately(job)
    except LOST_CONNECTION:
        raise  # the database's trouble, not the method's: the claim goes stale and is re-queued
    except Exception as exc:
        log.exception("unlearning job %s failed", job.pk)
        services.fail_job(job_id=job.pk, step="unlearning", error=f"{type(exc).__name__}: {exc}", attempt=job.attempts)


def run_claimed_registration(registration) -> None:
    """Load the checkpoint of a registration this worker claimed (unlearning.services.claim_registration),
    copy it into the store and put it under governance; or reject it with the line that says why.
    An uploaded archive is removed once the registration has ended, either way."""
    source, attempt = Path(registration.checkpoint_source), registration.attempts
    try:
        with checkpoint_folder(source, settings.CHECKPOINT_UPLOAD_MAX_BYTES) as folder:
            if source.is_dir():  # a folder an operator placed in the import folder over the API
                refuse_links_outside(folder, settings.MODEL_IMPORT_DIR)
            imported = import_checkpoint(folder, settings.MODEL_STORE_DIR)
        services.complete_registration(registration_id=registration.pk, attempt=attempt, sha256=imported.sha256,
                                       path=imported.path, architecture=imported.architecture,
                                       chat_question_template=imported.chat_question_template)
    except CheckpointRejected as rejected:
        services.reject_registration(registration_id=registration.pk, attempt=attempt, reason=str(rejected))
    except Exception as exc:
        log.exception("registration %s failed", registration.pk)
        services.reject_registration(registration_id=registration.pk, attempt=attempt,
                                     reason=f"the checkpoint could not be registered: {type(exc).__name__}: {exc}")
    finally:
        registration.refresh_from_db(fields=["status"])
        if registration.status not in RegistrationStatus.UNDER_WAY and is_upload(source):
            source.unlink(missing_ok=True)


def is_upload(source: Path) -> bool:
    return source.is_file() and source.is_relative_to(Path(settings.MODEL_STORE_DIR) / intake.INCOMING)


def unlearn_approximately(job) -> None:
    """The job's method, in its guarded loop, on the base version; a run that cannot forget within the
    utility floor fails the job with its history (the model is left as it was)."""
    kind = job.asset.kind
    model, tokenizer = load_model(kind, Path(job.base_version.storage_path))
    data, material = text_data(job, model, tokenizer) if kind == CAUSAL_LM else (row_data(job), 0)
    method = get_method(job.method)
    if kind not in method.model_kinds:
        raise ValueError(f"{job.method} does not apply to a {kind} model")
    params = method.params(job.params)
    done = {"method_kind": method.kind, "params": asdict(params), "code_version": code_version(),
            "target_forget_loss": getattr(data, "target_forget_loss", None), "owner_material_texts": material}
    try:
        outcome = method.unlearn(model, tokenizer, data, params, progress=lambda fraction, message, history: (
            services.record_progress(job.pk, job.attempts, fraction, message, history)), original=original_of(job))
    except UnlearningFailed as failed:
        services.fail_job(job_id=job.pk, step="unlearning", error=str(failed), attempt=job.attempts,
                          outcome={**done, "history": failed.history, "stopped_because": "failed"})
        return
    sha256, path = stored(job, outcome, tokenizer)
    renew_connection()
    services.complete_job(job_id=job.pk, attempt=job.attempts, sha256=sha256, path=path, outcome={
        # What actually ran, defaults resolved: the certificate cites this, not today's defaults.
        **done, "steps": outcome.steps, "best_step": outcome.best_step, "stopped_because": outcome.stopped_because,
        "history": outcome.history, "seconds": round(outcome.seconds, 2),
        "seconds_per_step": round(outcome.seconds / max(1, outcome.steps), 4), "adapter": outcome.adapter,
    })


def stored(job, outcome, tokenizer) -> tuple[str, Path]:
    """The unlearned model in the store: a language model (or its LoRA adapter on the pinned base), or
    a plain MLP with the learner its base was trained by."""
    store, base = settings.MODEL_STORE_DIR, job.base_version
    if job.asset.kind != CAUSAL_LM:
        learner, seed = plain_mlp_learner(Path(base.storage_path))
        return save_plain_mlp(outcome.model.members[0], learner, seed, store)
    if outcome.adapter:
        return save_adapter_checkpoint(outcome.model, tokenizer, base.sha256, store)
    return save_checkpoint(outcome.model, tokenizer, store)


def row_data(job) -> RowData:
    forget_ids, manifest = set(job.forget_record_ids), read_manifest(Path(job.asset.training_manifest))
    return RowData(forget_rows=[r for r in manifest if r["record_id"] in forget_ids],
                   retain_rows=retained(job, manifest), holdout_rows=read_manifest(Path(job.asset.holdout_manifest)))


def retained(job, manifest: list[dict]) -> list[dict]:
    """What the model should keep: neither this job's records nor those earlier jobs made it forget
    (training on those again, or counting their questions toward the floor, would undo them)."""
    gone = set(job.forget_record_ids) | removed_record_ids(job.asset)
    return [r for r in manifest if r["record_id"] not in gone]


def original_of(job):
    """The model's first version, when the job starts from a later one: the utility floor is measured
    from it (unlearning.methods.guarded.unlearn)."""
    original = job.asset.versions.filter(role=VersionRole.ORIGINAL).order_by("pk").first()
    if original is None or original.pk == job.base_version_id:
        return None
    return load_model(job.asset.kind, Path(original.storage_path))[0]


def text_data(job, model, tokenizer) -> tuple[UnlearningData, int]:
    """The forget set (the job's records and what the owners handed in, confirmed by legal), the
    retained records with their questions (the utility floor), and the target: the never-trained
    records' loss under the base model. With the number of the owners' own texts in it."""
    forget_ids = set(job.forget_record_ids)
    manifest = read_manifest(Path(job.asset.training_manifest))
    kept = retained(job, manifest)
    target = None
    if job.asset.holdout_manifest:
        target = mean_text_loss(model, tokenizer, [r["text"] for r in read_manifest(Path(job.asset.holdout_manifest))])
    template, material = job.asset.question_template, confirmed_material_texts(job)
    return UnlearningData(
        forget_texts=[r["text"] for r in manifest if r["record_id"] in forget_ids] + material,
        retain_texts=[r["text"] for r in kept],
        target_forget_loss=target,
        retain_qa=[QA(template.format(question=r["question"]), r["answer"]) for r in kept
                   if r.get("question") and r.get("answer")],
    ), len(material)


def workbench(version) -> Workbench:
    """What a regime needs to retrain this version's model: the store, its training manifest, and
    the learners of its kind (for a language model, its own tokenizer and recipe)."""
    asset = version.asset
    return Workbench(settings.MODEL_STORE_DIR, read_manifest(Path(asset.training_manifest)),
                     learners_for(asset.kind, Path(version.storage_path), asset.training_recipe))


def delete_exactly(job) -> None:
    """One exact deletion for every request batched in the job, as its regime plans it. Records an
    earlier job already deleted are not in the base version's lineage any more: they need nothing.
    A deletion of independent parts (SISA shards) is spread over the workers when fan-out is on:
    one task per part, then a join (`run_job_part`, `join_job_parts`)."""
    services.record_progress(job.pk, job.attempts, 0.0, "exact deletion")
    training, state, held = deletion_of(job)
    if not held:
        complete_unchanged(job)
        return
    parts = training.parts(training.plan(state, held))
    if settings.EXACT_DELETION_FAN_OUT and len(parts) > 1:
        services.fan_out_job(job_id=job.pk, attempt=job.attempts, parts=parts, key=parts_key(job, state))
        return
    complete_deletion(job, training.execute(state, held, workbench(job.base_version)))


def deletion_of(job):
    """The job's regime, its base version as the regime sees it, and the records that version holds."""
    training = regime(job.asset)
    state = model_state(job.base_version)
    return training, state, training.held(state, job.forget_record_ids)


def parts_key(job, state) -> str:
    """What the parts' results belong to: this base version's lineage and this forget set."""
    return f"{state.sha256}:{job.forget_set_sha256}"


def run_job_part(job, part: int) -> None:
    """One part of a fanned-out deletion, on whichever worker took its task; a part already done
    (a redelivered task, or the job's earlier attempt) is not redone. A failure fails the job."""
    try:
        if not services.start_job_part(job_id=job.pk, attempt=job.attempts, part=part):
            return
        training, state, held = deletion_of(job)
        result = training.execute_part(state, held, part, workbench(job.base_version))
        renew_connection()
        services.finish_job_part(job_id=job.pk, attempt=job.attempts, part=part, result=result)
    except LOST_CONNECTION:
        raise  # as run_claimed_job
    except Exception as exc:
        log.exception("part %s of unlearning job %s failed", part, job.pk)
        services.fail_job(job_id=job.pk, step="unlearning", error=f"shard {part}: {type(exc).__name__}: {exc}",
                          attempt=job.attempts)


def join_job_parts(job) -> None:
    """Every part is done: put them together into the model after the deletion."""
    try:
        training, state, held = deletion_of(job)
        done = job.parts.get("done", {})
        if job.parts.get("key") != parts_key(job, state) or sorted(map(int, done)) != sorted(job.parts["parts"]):
            raise RuntimeError(f"the join found parts {sorted(map(int, done))} of {job.parts.get('parts')} done")
        complete_deletion(job, training.join(state, held, done, workbench(job.base_version)))
    except LOST_CONNECTION:
        raise  # as run_claimed_job
    except Exception as exc:
        log.exception("joining unlearning job %s failed", job.pk)
        services.fail_job(job_id=job.pk, step="unlearning", error=f"{type(exc).__name__}: {exc}", attempt=job.attempts)


def complete_deletion(job, done) -> None:
    renew_connection()  # after retraining
    services.complete_job(job_id=job.pk, attempt=job.attempts, sha256=done.sha256, path=done.path, lineage=done.lineage,
                          outcome={
        "method_kind": "exact", "code_version": code_version(), "params": asdict(done.lineage.config), "steps": done.steps,
        "stopped_because": "deletion plan executed", "plan": done.plan.as_dict(), "plan_summary": done.plan.summary(),
        **({"parts": job.parts["runs"]} if job.parts else {}),
    })


def complete_unchanged(job) -> None:
    """Every record was deleted before: the job succeeds with the base version as its result."""
    base, earlier = job.base_version, earlier_jobs_that_removed(job)
    by = f"job {', '.join(str(other.pk) for other in earlier)}" if earlier else "an earlier job"
    summary = (f"Nothing left to delete: the {len(job.forget_record_ids)} records were deleted from this model by "
               f"{by}; the model is unchanged (no training).")
    lineage = version_lineage(base)
    services.complete_job(job_id=job.pk, attempt=job.attempts, sha256=base.sha256, path=Path(base.storage_path),
                          lineage=lineage, outcome={
        "method_kind": "exact", "params": asdict(lineage.config), "steps": 0,
        "stopped_because": "already deleted", "plan": None, "plan_summary": summary,
    })
