"""State changes of governed models and unlearning jobs: atomic, each with its audit event.

What runs next is not decided here: services report what happened (unlearning.signals) and the
pipeline (workers.pipeline) enqueues the follow-up once the transaction commits. A request's own
status changes go through compliance.services.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from compliance import auditlog
from compliance import services as compliance_services
from compliance.db import on_a_live_connection
from compliance.errors import NotFound, ServiceError, TransitionNotAllowed
from compliance.models import RemovalRequest, RequestStatus
from unlearning import intake
from unlearning.manifest import forget_set_sha256, lineage_records, read_manifest, write_manifest
from unlearning.methods import get_method
from unlearning.models import (
    FilterCount, JobStatus, ModelAsset, ModelKind, ModelRegistration, ModelVersion, RegistrationStatus, ServingKey,
    TrainingRecord, UnlearningJob, VersionRole,
)
from unlearning.regimes import REGIMES, get_regime, regime_of_lineage
from unlearning.selectors import (
    assets_to_unlearn, confirmed_record_ids, forget_record_ids, stale_claim, stale_job_claim, stale_jobs,
)
from unlearning.signals import job_fanned_out, job_finished, job_queued, nothing_to_unlearn, registration_queued
from unlearning.store import save_lineage

WORKER = compliance_services.WORKER
log = logging.getLogger(__name__)


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
    lineage=None, kind: str = ModelKind.CAUSAL_LM, regime: str | None = None, question_template: str | None = None,
) -> ModelAsset:
    """Put a trained model under governance, with the lineage of every record it was trained on
    (and, for SISA and S3T, `lineage`: the shard and slice each record was placed in). The regime
    follows from the lineage, unless given (an external checkpoint's)."""
    regime = regime or regime_of_lineage(lineage)
    if kind not in get_regime(regime).model_kinds:
        governs = ", ".join(sorted(r.name for r in REGIMES.values() if kind in r.model_kinds))
        raise ValueError(f"a {kind} cannot be governed as {regime}; it can be as: {governs} "
                         "(one shard of one slice is SISA's plain model)")
    asset = ModelAsset.objects.create(
        name=name, kind=kind, architecture=architecture, training_recipe=training_recipe,
        training_manifest=str(training_manifest), holdout_manifest=str(holdout_manifest or ""), regime=regime,
        **({"question_template": question_template} if question_template else {}),
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


def register_external_model(*, name: str, sha256: str, path: Path, architecture: str, training_manifest: Path,
                            holdout_manifest: Path, training: list[dict], question_template: str | None,
                            actor: str = "operator") -> ModelAsset:
    """A checkpoint the service did not train (stored, pinned), under governance with its training
    records as lineage: no recipe to retrain it by, the "external" regime (manage.py register_model,
    or a worker for the API's registration)."""
    return register_model(name=name, architecture=architecture, training_recipe={}, checkpoint_sha256=sha256,
                          checkpoint_path=path, training_manifest=training_manifest, holdout_manifest=holdout_manifest,
                          records=lineage_records(training), regime="external", actor=actor,
                          question_template=question_template)


@transaction.atomic
def request_registration(*, name: str, checkpoint_source: Path, training: list[dict], holdout: list[dict],
                         question_template: str | None, user) -> ModelRegistration:
    """An ML operator asks to put a checkpoint under governance (the API): what the web process can
    check is checked now (name, manifests, lineage, question template), the manifests are stored,
    and a worker loads the checkpoint (unlearning.runner.run_claimed_registration)."""
    intake.check_name(name)
    template = intake.question_template(question_template)
    intake.check_lineage("manifest", training, holdout)
    registration = ModelRegistration.objects.create(
        name=name, checkpoint_source=str(checkpoint_source), question_template=template or "",
        training_manifest=str(write_manifest(training, settings.MODEL_STORE_DIR)[1]),
        holdout_manifest=str(write_manifest(holdout, settings.MODEL_STORE_DIR)[1]),
        requested_by=compliance_services.user_actor(user),
    )
    auditlog.append(actor=registration.requested_by, action="model.registration_requested", obj=registration, data={
        "name": name, "records": len(training), "holdout_records": len(holdout),
        "owners": len({r["owner_key"] for r in training}), "checkpoint": Path(checkpoint_source).name,
    })
    registration_queued.send(sender=ModelRegistration, registration_id=registration.pk)
    return registration


@transaction.atomic
def claim_registration(registration_id: int) -> ModelRegistration | None:
    """Take a queued registration for this worker, or one whose worker was lost, while attempts
    remain; None when it is taken, finished or out of attempts. Loading and copying a checkpoint is
    safe to repeat: the store is content-addressed."""
    now = timezone.now()
    claimable = ModelRegistration.objects.filter(Q(status=RegistrationStatus.QUEUED) | stale_claim(now),
                                                 pk=registration_id, attempts__lt=settings.JOB_MAX_ATTEMPTS)
    if not claimable.update(status=RegistrationStatus.RUNNING, started_at=now, heartbeat_at=now,
                            attempts=F("attempts") + 1, claimed_by=this_worker()):
        return None
    registration = ModelRegistration.objects.get(pk=registration_id)
    auditlog.append(actor=WORKER, action="model.registration_started", obj=registration,
                    data={"name": registration.name, "attempt": registration.attempts, "worker": registration.claimed_by})
    return registration


def record_registration_heartbeat(registration_id: int, attempt: int) -> None:
    ModelRegistration.objects.filter(pk=registration_id, status=RegistrationStatus.RUNNING,
                                     attempts=attempt).update(heartbeat_at=timezone.now())


@transaction.atomic
def complete_registration(*, registration_id: int, attempt: int, sha256: str, path: Path, architecture: str,
                          chat_question_template: str | None) -> ModelRegistration:
    """The worker loaded and stored the checkpoint: govern it as an external model (if the worker's
    claim, `attempt`, is still the registration's)."""
    registration = ModelRegistration.objects.select_for_update().get(pk=registration_id)
    if registration.status != RegistrationStatus.RUNNING or registration.attempts != attempt:
        return registration
    if ModelAsset.objects.filter(name=registration.name).exists():  # registered meanwhile, by the command line
        return reject_registration(registration_id=registration_id, attempt=attempt,
                                   reason=f"a model named {registration.name} was registered meanwhile")
    registration.asset = register_external_model(
        name=registration.name, sha256=sha256, path=path, architecture=architecture,
        training_manifest=Path(registration.training_manifest), holdout_manifest=Path(registration.holdout_manifest),
        training=read_manifest(Path(registration.training_manifest)),
        question_template=registration.question_template or chat_question_template, actor=registration.requested_by)
    registration.status, registration.finished_at = RegistrationStatus.REGISTERED, timezone.now()
    registration.save(update_fields=["asset", "status", "finished_at"])
    return registration


@transaction.atomic
def reject_registration(*, registration_id: int, reason: str, attempt: int | None = None) -> ModelRegistration:
    """The checkpoint cannot be governed: one line says why. A worker passes its claim (`attempt`)."""
    registration = ModelRegistration.objects.select_for_update().get(pk=registration_id)
    if registration.status not in RegistrationStatus.UNDER_WAY or attempt not in (None, registration.attempts):
        return registration
    registration.status, registration.error, registration.finished_at = (
        RegistrationStatus.REJECTED, reason[:4000], timezone.now())
    registration.save(update_fields=["status", "error", "finished_at"])
    auditlog.append(actor=WORKER, action="model.registration_rejected", obj=registration,
                    data={"name": registration.name, "reason": reason[:500]})
    return registration


def sweep_stale_registrations() -> dict[str, list[int]]:
    """Registrations whose worker was lost: queued again while attempts remain, rejected after."""
    stale = ModelRegistration.objects.filter(stale_claim()).order_by("pk").values_list("pk", flat=True)
    return sweep_each(list(stale), sweep_stale_registration, "model registration")


@transaction.atomic
def sweep_stale_registration(registration_id: int) -> str | None:
    registration = ModelRegistration.objects.select_for_update().filter(stale_claim(), pk=registration_id).first()
    if registration is None:
        return None
    lost = lost_worker(registration)
    if registration.attempts >= settings.JOB_MAX_ATTEMPTS:
        reject_registration(registration_id=registration.pk, reason=f"{lost}; no attempt is left")
        return "failed"
    registration.status = RegistrationStatus.QUEUED
    registration.save(update_fields=["status"])
    auditlog.append(actor=WORKER, action="model.registration_requeued", obj=registration, data={"reason": lost})
    registration_queued.send(sender=ModelRegistration, registration_id=registration.pk)
    return "requeued"


@transaction.atomic
def schedule_request(*, request_id):
    """Resolve an approved request's verified identity to training records through lineage and
    queue one job per model that holds any. Safe to run twice: a request that is no longer
    `approved` is left as it is."""
    request = compliance_services.lock_request(request_id)
    if request.status != RequestStatus.APPROVED:
        return request
    holdings = assets_to_unlearn(request)
    if not holdings:  # the most common answer, not an error: a signed statement completes the request
        nothing_to_unlearn.send(sender=RemovalRequest, request_id=str(request.pk))
        return request
    jobs = [queue_unlearning(asset=asset, request=request) for asset, _ in holdings]
    compliance_services.advance(request, RequestStatus.SCHEDULED, models=[asset.name for asset, _ in holdings],
                                records=sum(count for _, count in holdings), jobs=[job.pk for job in jobs])
    return request


def queue_unlearning(*, asset: ModelAsset, request) -> UnlearningJob:
    """Attach a request to the model's queued job, or queue a new one (call inside a transaction).

    Requests that arrive while a job is still queued are batched into it: one pass over the model
    for all of them.
    """
    job = asset.jobs.select_for_update().filter(status=JobStatus.QUEUED).first()
    created = job is None
    if created:
        job = UnlearningJob.objects.create(asset=asset, method=get_regime(asset.regime).method_for(asset.kind))
        job_queued.send(sender=UnlearningJob, job_id=job.pk)
    job.requests.add(request)
    auditlog.append(actor=WORKER, action="job.queued" if created else "job.request_added",
                    obj=job, data={"model": asset.name, "method": job.method, "request": request.reference})
    return job


def claim_job(job_id: int) -> UnlearningJob | None:
    """Take a job for this worker; None when another worker has it, it is finished, it is out of
    attempts, or another job of the same model is running (that job starts this one when it ends).

    A job is claimable when queued, or when running with a stale claim (its worker stopped
    heartbeating: unlearning.selectors.stale_job_claim); each claim counts an attempt, and a stale job
    out of attempts fails with the reason. The claim is a conditional UPDATE: of two deliveries of
    the same task, exactly one changes a row. The forget set and the base version are frozen at the
    claim, in the same transaction. Jobs of one model run one at a time, because each builds on the
    version the one before produced: two at once would both start from the same base, and the later
    result would bring back what the earlier one removed. The model's row lock makes the check and
    the claim one step.
    """
    with transaction.atomic():
        asset_id = UnlearningJob.objects.filter(pk=job_id).values_list("asset_id", flat=True).first()
        if asset_id is None or model_busy(asset_id, job_id):
            return None
        now = timezone.now()
        claimable = Q(status=JobStatus.QUEUED) | stale_job_claim(now)
        claimed = UnlearningJob.objects.filter(claimable, pk=job_id, attempts__lt=settings.JOB_MAX_ATTEMPTS).update(
            status=JobStatus.RUNNING, attempts=F("attempts") + 1, started_at=now, heartbeat_at=now,
            claimed_by=this_worker(), parts_deadline=None, history=[])
        if not claimed:
            fail_if_out_of_attempts(job_id)
            return None
        job = UnlearningJob.objects.select_for_update().select_related("asset").get(pk=job_id)
        requests = list(job.requests.select_for_update().order_by("pk"))
        job.base_version = job.asset.current_version
        job.forget_record_ids = forget_record_ids(job.asset, [r.subject_key for r in requests],
                                                  confirmed_record_ids(job.asset, requests))
        forget_ids = set(job.forget_record_ids)
        job.forget_set_sha256 = forget_set_sha256(
            r for r in read_manifest(Path(job.asset.training_manifest)) if r["record_id"] in forget_ids
        )
        job.save()
        for request in requests:
            compliance_services.advance(request, RequestStatus.UNLEARNING, job=job.pk)
        auditlog.append(actor=WORKER, action="job.started", obj=job, data={
            "attempt": job.attempts, "worker": job.claimed_by, "base_sha256": job.base_version.sha256,
            "forget_records": len(job.forget_record_ids), "forget_set_sha256": job.forget_set_sha256,
        })
        return job


def this_worker() -> str:
    """Who holds a claim: this host and process (an operator's first question about a stuck job)."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def fail_if_out_of_attempts(job_id: int) -> None:
    """A job whose claim went stale with no attempt left fails, with the reason (call in a transaction)."""
    job = UnlearningJob.objects.filter(stale_job_claim(), pk=job_id, attempts__gte=settings.JOB_MAX_ATTEMPTS).first()
    if job is not None:
        fail_job(job_id=job.pk, step="unlearning", error=f"{lost_worker(job)}; no attempt is left")


def lost_worker(claim) -> str:
    """Why a stale claim (a job's, an audit run's or a model registration's) is taken to have lost its worker."""
    overdue = claim.started_at < timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    why = (f"running past the hard time limit of {settings.CELERY_TASK_TIME_LIMIT} s" if overdue
           else f"no heartbeat since {moment(claim.heartbeat_at)}")
    return (f"WorkerLost: attempt {claim.attempts} of {settings.JOB_MAX_ATTEMPTS} on {claim.claimed_by or 'a worker'}: "
            f"{why}")


def moment(at) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC" if at else "never"


def model_busy(asset_id: int, job_id: int) -> bool:
    """Lock the model's row and say whether another of its jobs is running (call in a transaction)."""
    list(ModelAsset.objects.select_for_update().filter(pk=asset_id).values_list("pk", flat=True))
    return UnlearningJob.objects.filter(asset_id=asset_id, status=JobStatus.RUNNING).exclude(pk=job_id).exists()


def current_claim(job_id: int, attempt: int):
    """The job while `attempt` is its current claim: a worker whose claim was taken over (it went
    stale, and another worker claimed the job again) writes nothing more."""
    return UnlearningJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempts=attempt)


def record_progress(job_id: int, attempt: int, fraction: float, message: str, history: list[dict] | None = None) -> None:
    # Progress lives in the database (not only a result backend) so the API and portal can show it;
    # it is a heartbeat too.
    extra = {} if history is None else {"history": history}
    on_a_live_connection(lambda: current_claim(job_id, attempt).update(
        progress=min(max(fraction, 0.0), 1.0), progress_message=message[:200], heartbeat_at=timezone.now(), **extra))


def record_heartbeat(job_id: int, attempt: int) -> None:
    current_claim(job_id, attempt).update(heartbeat_at=timezone.now())


@transaction.atomic
def fan_out_job(*, job_id: int, attempt: int, parts: list[int], key: str) -> bool:
    """A worker spreads an exact deletion over workers: one task per part, then a join (the
    pipeline sends them). Parts already done for the same plan (`key`) by an earlier attempt are
    kept, and their tasks return at once. False when the claim was taken over meanwhile."""
    job = current_claim(job_id, attempt).select_for_update().first()
    if job is None:
        return False
    if job.parts.get("key") != key:
        job.parts = {"key": key, "parts": parts, "done": {}, "runs": {}}
    done = sorted(int(part) for part in job.parts["done"])
    job.progress_message = parts_progress(job.parts)
    save_parts(job, "progress_message")
    auditlog.append(actor=WORKER, action="job.fanned_out", obj=job,
                    data={"attempt": attempt, "parts": parts, "already_done": done})
    job_fanned_out.send(sender=UnlearningJob, job_id=job.pk, attempt=attempt, parts=parts)
    return True


def save_parts(job: UnlearningJob, *fields: str) -> None:
    """Store the job's parts; each step of them is a sign of life, and the claim waits for the
    parts still queued until parts_deadline (unlearning.selectors.stale_job_claim)."""
    now = timezone.now()
    job.heartbeat_at, job.parts_deadline = now, now + timedelta(seconds=settings.JOB_PARTS_WAIT_SECONDS)
    job.save(update_fields=["parts", "heartbeat_at", "parts_deadline", *fields])


def parts_progress(parts: dict) -> str:
    return f"retraining {len(parts['parts'])} shards on several workers: {len(parts['done'])} done"


@transaction.atomic
def start_job_part(*, job_id: int, attempt: int, part: int) -> bool:
    """A part's task is about to work on it: False when there is nothing to do (the claim was taken
    over, or the part is done: a redelivered task)."""
    job = current_claim(job_id, attempt).select_for_update().first()
    if job is None or str(part) in job.parts.get("done", {}):
        return False
    run = job.parts["runs"].setdefault(str(part), {"attempts": 0})
    run.update(attempts=run["attempts"] + 1, worker=this_worker(), started_at=timezone.now().isoformat())
    save_parts(job)
    auditlog.append(actor=WORKER, action="job.part_started", obj=job,
                    data={"attempt": attempt, "part": part, "part_attempt": run["attempts"], "worker": run["worker"]})
    return True


@transaction.atomic
def finish_job_part(*, job_id: int, attempt: int, part: int, result: dict) -> None:
    job = current_claim(job_id, attempt).select_for_update().first()
    if job is None:
        return
    job.parts["done"][str(part)] = result
    job.parts["runs"][str(part)]["finished_at"] = timezone.now().isoformat()
    job.progress = 0.95 * len(job.parts["done"]) / len(job.parts["parts"])
    job.progress_message = parts_progress(job.parts)
    save_parts(job, "progress", "progress_message")
    auditlog.append(actor=WORKER, action="job.part_finished", obj=job, data={"attempt": attempt, "part": part})


@transaction.atomic
def register_version(*, asset: ModelAsset, sha256: str, path: Path, role: str, parent=None, job=None, details=None,
                     lineage=None) -> ModelVersion:
    version, created = ModelVersion.objects.get_or_create(
        asset=asset, sha256=sha256, role=role,
        defaults={"storage_path": str(path), "parent": parent, "produced_by": job, "details": details or {},
                  **lineage_fields(lineage)},
    )
    if created:
        auditlog.append(actor=WORKER, action="model.version_stored", obj=version,
                        data={"model": asset.name, "sha256": sha256, "role": role, "parent": parent.sha256 if parent else None})
    return version


# What a version produced by a job keeps of how it was made.
VERSION_DETAILS = ("method_kind", "params", "stopped_because", "best_step", "history", "code_version")


@transaction.atomic
def complete_job(*, job_id: int, attempt: int, sha256: str, path: Path, outcome: dict,
                 lineage=None) -> UnlearningJob:
    """Record the worker's result, if its claim (`attempt`) is still the job's current one."""
    job = UnlearningJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.status != JobStatus.RUNNING or job.attempts != attempt:
        return job
    version = register_version(asset=job.asset, sha256=sha256, path=path, role=VersionRole.UNLEARNED,
                               parent=job.base_version, job=job, lineage=lineage, details={
                                   "method": job.method, **{key: outcome[key] for key in VERSION_DETAILS if key in outcome}})
    job.asset.current_version = version  # the next job builds on this one
    job.asset.save(update_fields=["current_version"])
    job.status, job.result_version, job.outcome = JobStatus.SUCCEEDED, version, outcome
    job.history = outcome.get("history", job.history)
    job.progress, job.finished_at = 1.0, timezone.now()
    job.save()
    auditlog.append(actor=WORKER, action="job.succeeded", obj=job, data={
        "result_sha256": sha256, "steps": outcome.get("steps"), "stopped_because": outcome.get("stopped_because"),
    })
    for request in job.requests.select_for_update().order_by("pk"):
        if not request.jobs.exclude(status=JobStatus.SUCCEEDED).exists():
            compliance_services.advance(request, RequestStatus.AUDITING)
    job_finished.send(sender=UnlearningJob, job_id=job.pk, asset_id=job.asset_id, succeeded=True)
    return job


@transaction.atomic
def fail_job(*, job_id: int, step: str, error: str, actor: str = WORKER, attempt: int | None = None,
             outcome: dict | None = None) -> UnlearningJob:
    """The job failed, and so do its requests. A worker passes its claim (`attempt`): a claim that
    was taken over fails nothing. `outcome`: what the failed run did (a method's parameters and history)."""
    job = UnlearningJob.objects.select_for_update().get(pk=job_id)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED) or attempt not in (None, job.attempts):
        return job
    job.status, job.error, job.finished_at = JobStatus.FAILED, error[:4000], timezone.now()
    if outcome is not None:
        job.outcome, job.history = outcome, outcome.get("history", job.history)
    job.save()
    auditlog.append(actor=actor, action="job.failed", obj=job, data={"step": step, "error": error[:500]})
    for request in job.requests.select_for_update().order_by("pk"):
        compliance_services.fail(request, step=step, reason=error)
    job_finished.send(sender=UnlearningJob, job_id=job.pk, asset_id=job.asset_id, succeeded=False)
    return job


@transaction.atomic
def requeue_job(*, job_id: int, reason: str, actor: str = WORKER) -> UnlearningJob:
    """Put a running job whose worker is gone (a stale claim) back in the queue (its attempt stays
    counted); the next claim starts it again from its base version. A job whose worker still
    heartbeats is refused: two workers would run it."""
    job = UnlearningJob.objects.select_for_update().get(pk=job_id)
    if job.status != JobStatus.RUNNING:
        raise TransitionNotAllowed(f"only a running job can be re-queued; job {job.pk} is {job.status}")
    if not UnlearningJob.objects.filter(stale_job_claim(), pk=job.pk).exists():
        raise TransitionNotAllowed(
            f"job {job.pk}'s worker ({job.claimed_by or 'unknown'}) sent a heartbeat at {moment(job.heartbeat_at)}: "
            f"it is working; it can be re-queued once it has been silent for {settings.JOB_STALE_AFTER_SECONDS} s, "
            "or failed now")
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        raise TransitionNotAllowed(f"job {job.pk} has used its {settings.JOB_MAX_ATTEMPTS} attempts: fail it instead")
    job.status, job.progress, job.progress_message = JobStatus.QUEUED, 0.0, ""
    job.save(update_fields=["status", "progress", "progress_message"])
    auditlog.append(actor=actor, action="job.requeued", obj=job, data={"attempts": job.attempts, "reason": reason[:500]})
    job_queued.send(sender=UnlearningJob, job_id=job.pk)
    return job


def operator_fail_job(*, job_id: int, user, reason: str) -> UnlearningJob:
    """An operator gives up on a stuck job: it fails with their reason, and so do its requests."""
    if not reason.strip():
        raise ServiceError("failing a job needs a reason its requests' owners can read")
    job = UnlearningJob.objects.filter(pk=job_id).first()
    if job is None or job.status != JobStatus.RUNNING:
        raise TransitionNotAllowed(f"only a running job can be failed by an operator; job {job_id} is "
                                   f"{job.status if job else 'unknown'}")
    return fail_job(job_id=job_id, step="unlearning", error=f"Stopped by an operator: {reason.strip()}",
                    actor=compliance_services.user_actor(user))


@transaction.atomic
def choose_method(*, job_id: int, user, method: str, params: dict) -> UnlearningJob:
    """An ML operator picks the approximate method and its parameters for a job before it runs;
    both are checked against the method's dataclass here, not when a worker starts it."""
    job = UnlearningJob.objects.select_for_update().select_related("asset").filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"no unlearning job with id {job_id}")
    if job.status != JobStatus.QUEUED:
        raise TransitionNotAllowed(f"job {job.pk} is {job.status}: a method can be chosen only while it is queued")
    if get_regime(job.asset.regime).exact:
        raise TransitionNotAllowed(f"{job.asset.name} is unlearned exactly ({job.asset.regime}): its jobs retrain, "
                                   "they run no approximate method")
    try:
        chosen = get_method(method)
        if job.asset.kind not in chosen.model_kinds:
            raise ValueError(f"{method} does not apply to a {job.asset.kind} model (it applies to "
                             f"{', '.join(sorted(chosen.model_kinds))})")
        resolved = asdict(chosen.params(params))
    except ValueError as invalid:
        raise ServiceError(str(invalid)) from None
    job.method, job.params = method, params
    job.save(update_fields=["method", "params"])
    auditlog.append(actor=compliance_services.user_actor(user), action="job.method_chosen", obj=job,
                    data={"method": method, "params": params, "resolved": resolved})
    return job


def operator_requeue_job(*, job_id: int, user, reason: str = "") -> UnlearningJob:
    return requeue_job(job_id=job_id, reason=reason.strip() or "re-queued by an operator",
                       actor=compliance_services.user_actor(user))


def sweep_stale_jobs() -> dict[str, list[int]]:
    """Running jobs whose worker is gone: re-queued while attempts remain, failed with the reason
    after. Safe to run at any time and from several places (each job is locked and checked again);
    one job that cannot be swept is logged and does not stop the others."""
    return sweep_each(stale_jobs(), sweep_stale_job, "unlearning job")


def sweep_each(ids: Iterable[int], sweep_one: Callable[[int], str | None], what: str) -> dict[str, list[int]]:
    """`sweep_one(id)` for each stale claim (jobs' or audit runs'), its outcome ("requeued",
    "failed" or None) collected; one that cannot be swept is logged and does not stop the others."""
    swept: dict[str, list[int]] = {"requeued": [], "failed": []}
    for pk in ids:
        try:
            outcome = sweep_one(pk)
        except Exception:
            log.exception("could not sweep %s %s", what, pk)
            continue
        if outcome:
            swept[outcome].append(pk)
    return swept


@transaction.atomic
def sweep_stale_job(job_id: int) -> str | None:
    job = UnlearningJob.objects.select_for_update().filter(stale_job_claim(), pk=job_id).first()
    if job is None:
        return None  # it heartbeated or finished meanwhile
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        fail_job(job_id=job.pk, step="unlearning", error=f"{lost_worker(job)}; no attempt is left")
        return "failed"
    requeue_job(job_id=job.pk, reason=lost_worker(job))
    return "requeued"


# Serving: keys of the OpenAI-compatible endpoint, the filters a version is served with, and what they did.

SERVING_KEY_PREFIX = "uck-"


def serving_key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def create_serving_key(*, name: str, asset_names: Iterable[str], created_by: str) -> tuple[ServingKey, str]:
    """A new endpoint key for these models; returns the key itself, which is stored only as its hash."""
    names = sorted(set(asset_names))
    assets = list(ModelAsset.objects.filter(name__in=names, kind=ModelKind.CAUSAL_LM))
    missing = sorted(set(names) - {a.name for a in assets})
    if not names or missing:
        raise ServiceError(f"no served language model named {', '.join(missing)}" if missing
                           else "name at least one model the key may call")
    key = SERVING_KEY_PREFIX + secrets.token_urlsafe(32)
    serving_key = ServingKey.objects.create(name=name, prefix=key[:12], key_sha256=serving_key_sha256(key),
                                            created_by=created_by)
    serving_key.assets.set(assets)
    auditlog.append(actor=created_by, action="serving_key.created", obj=serving_key,
                    data={"name": name, "prefix": serving_key.prefix, "models": names})
    return serving_key, key


@transaction.atomic
def revoke_serving_key(*, key_id: int, revoked_by: str) -> ServingKey:
    serving_key = ServingKey.objects.select_for_update().filter(pk=key_id).first()
    if serving_key is None:
        raise NotFound(f"no serving key {key_id}")
    if serving_key.revoked_at is None:
        serving_key.revoked_at = timezone.now()
        serving_key.save(update_fields=["revoked_at"])
        auditlog.append(actor=revoked_by, action="serving_key.revoked", obj=serving_key, data={"prefix": serving_key.prefix})
    return serving_key


@transaction.atomic
def activate_runtime_filters(*, version: ModelVersion, prepared: dict, request_id: str) -> ModelVersion:
    """Serve `version` with the filters its audit prepared (covering every request removed up to it),
    once a request they cover is certified. Safe to run twice: a second request of the same run adds
    itself to the list."""
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    current = version.runtime_filters
    requests = sorted(set(current.get("requests", [])) | {str(request_id)})
    if current.get("targets_sha256") == prepared["targets_sha256"] and current.get("filters") == prepared["filters"]:
        if requests != current.get("requests"):
            version.runtime_filters = {**current, "requests": requests}
            version.save(update_fields=["runtime_filters"])
        return version
    version.runtime_filters = {**prepared, "requests": requests}
    version.save(update_fields=["runtime_filters"])
    auditlog.append(actor=WORKER, action="filters.activated", obj=version, data={
        "model": version.asset.name, "sha256": version.sha256, "filters": sorted(prepared["filters"]),
        "targets_sha256": prepared["targets_sha256"], "targets": prepared.get("targets", 0),
    })
    return version


def count_filter_events(*, version_id: int, events: Iterable[tuple[str, str, str]]) -> None:
    """Add what the filters did on one served request to the day's counts (no text is ever stored)."""
    today = timezone.localdate()
    tally: dict[tuple[str, str, str], int] = {}
    for event in events:
        tally[tuple(event)] = tally.get(tuple(event), 0) + 1
    for (name, action, reason), count in sorted(tally.items()):
        with transaction.atomic():
            row, _ = FilterCount.objects.select_for_update().get_or_create(
                version_id=version_id, filter=name, action=action, reason=reason, day=today)
            FilterCount.objects.filter(pk=row.pk).update(count=F("count") + count)
