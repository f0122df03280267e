"""Reads of the unlearning domain: lineage, deletion plans, and which work waits or is stuck."""

from collections.abc import Iterable
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from compliance.errors import NotFound
from compliance.models import ForgetMaterial
from unlearning.models import (JobStatus, ModelAsset, ModelRegistration, ModelVersion, RegistrationStatus, TrainingRecord,
                               UnlearningJob)
from unlearning.regimes import ModelState, Regime, get_regime
from unlearning.manifest import read_manifest
from unlearning.store import load_lineage


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


def assets_to_unlearn(request) -> list[tuple[ModelAsset, int]]:
    """The models an approved request reaches: those holding the subject's records through lineage,
    and those where legal confirmed more records at approval; with the record count of each."""
    holdings = dict(assets_holding(request.subject_key))
    for asset in ModelAsset.objects.filter(name__in=request.confirmed_records).order_by("pk"):
        extra = set(request.confirmed_records[asset.name]) - set(forget_record_ids(asset, [request.subject_key]))
        holdings[asset] = holdings.get(asset, 0) + len(extra)
    return sorted(holdings.items(), key=lambda item: item[0].pk)


def forget_record_ids(asset: ModelAsset, owner_keys: list[str], confirmed: Iterable[str] = ()) -> list[str]:
    """The owners' records in the model's lineage, and the `confirmed` ones legal added."""
    linked = TrainingRecord.objects.filter(asset=asset, owner_key__in=owner_keys).values_list("record_id", flat=True)
    return sorted(set(linked) | set(confirmed))


def confirmed_record_ids(asset: ModelAsset, requests) -> set[str]:
    """What legal confirmed for this model, beyond lineage, when approving these requests."""
    return {record_id for request in requests for record_id in request.confirmed_records.get(asset.name, [])}


def records_beyond_lineage(model: str, record_ids: list[str]) -> str | None:
    """Why these record ids cannot be confirmed for the model (None: they can): every one must be a
    training record of it."""
    asset = ModelAsset.objects.filter(name=model).first()
    if asset is None:
        return f"no governed model is named {model}"
    known = set(TrainingRecord.objects.filter(asset=asset, record_id__in=record_ids).values_list("record_id", flat=True))
    if unknown := [record_id for record_id in record_ids if record_id not in known]:
        return f"{len(unknown)} ids are not training records of {model} (e.g. {unknown[0][:120]})"
    return None


NEAR_MATCHES_SHOWN = 50
SNIPPET_CONTEXT = 60


def forget_review(request) -> list[dict]:
    """For legal before approval, per model: the records linked to the subject through lineage
    (forgotten on approval) and the near matches, records under another owner (or none) whose text
    names the subject's e-mail address or full name (forgotten only if legal confirms them)."""
    if not request.subject_key:
        return []
    needles = {"e-mail": request.subject_key.lower()}
    if len(request.full_name.strip()) >= 6:  # a short name would match everywhere
        needles["name"] = " ".join(request.full_name.lower().split())
    review = []
    for asset in ModelAsset.objects.order_by("name"):
        linked = list(TrainingRecord.objects.filter(asset=asset, owner_key=request.subject_key)
                      .order_by("record_id").values("record_id", "kind"))
        near = near_matches(asset, request.subject_key, needles)
        if linked or near:
            review.append({"model": asset.name, "linked_records": linked, "near_matches": near[:NEAR_MATCHES_SHOWN],
                           "near_matches_total": len(near)})
    return review


def near_matches(asset: ModelAsset, owner_key: str, needles: dict[str, str]) -> list[dict]:
    matches = []
    for record in manifest_records(asset.training_manifest):
        if record.get("owner_key") == owner_key or "text" not in record:
            continue
        text = " ".join(str(record.get(field, "")) for field in ("text", "question", "answer"))
        folded = " ".join(text.lower().split())
        for matched, needle in needles.items():
            at = folded.find(needle)
            if at >= 0:
                start, end = max(0, at - SNIPPET_CONTEXT), at + len(needle) + SNIPPET_CONTEXT
                matches.append({"record_id": record["record_id"], "kind": record["kind"],
                                "owner_key": record.get("owner_key") or "", "matched": matched,
                                "snippet": " ".join(text.split())[start:end]})
                break
    return matches


@lru_cache(maxsize=4)
def manifest_records(path: str) -> list[dict]:
    """A training manifest's records: content-addressed, so read once per process."""
    return read_manifest(Path(path)) if path and Path(path).exists() else []


def confirmed_material_texts(job) -> list[str]:
    """The texts of what the job's owners handed in and legal confirmed for forgetting."""
    return list(ForgetMaterial.objects.filter(request__in=job.requests.filter(material_confirmed=True))
                .order_by("pk").values_list("text", flat=True))


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


def regime(asset: ModelAsset) -> Regime:
    return get_regime(asset.regime)


@lru_cache(maxsize=8)
def _stored_lineage(path: str, sha256: str, regime_name: str):
    return load_lineage(Path(path), sha256, get_regime(regime_name).lineage_type)


def version_lineage(version: ModelVersion):
    """A SISA or S3T version's lineage (None for a plain one): immutable for its hash, so read and
    verified once per process."""
    if not version.lineage_sha256:
        return None
    return _stored_lineage(version.lineage_path, version.lineage_sha256, version.asset.regime)


def model_state(version: ModelVersion) -> ModelState:
    """The version as its regime sees it."""
    asset = version.asset
    return ModelState(kind=asset.kind, path=Path(version.storage_path), sha256=version.sha256,
                      lineage=version_lineage(version), recipe=asset.training_recipe,
                      training_records=asset.records.count(), removed_record_ids=frozenset(removed_record_ids(asset)),
                      seconds_per_step=measured_seconds_per_step(asset))


def measured_seconds_per_step(asset: ModelAsset) -> dict[str, float]:
    """Per method, what a step cost on this model in its latest succeeded job of that method ("": of any)."""
    measured: dict[str, float] = {}
    jobs = (UnlearningJob.objects.filter(asset=asset, status=JobStatus.SUCCEEDED, outcome__has_key="seconds_per_step")
            .order_by("-finished_at").values_list("method", "outcome"))
    for method, outcome in jobs[:50]:
        measured.setdefault(method, outcome["seconds_per_step"])
        measured.setdefault("", outcome["seconds_per_step"])
    return measured


def deletion_plan(asset: ModelAsset, owner_keys: list[str], confirmed: Iterable[str] = (), job=None) -> dict:
    """What removing these owners' records (and the `confirmed` ones) from the model's current
    version will do and cost, worked out before any training (shown to legal before approval and
    to operators in the admin): by the method an operator chose for the queued `job`, else by the
    regime's default."""
    training = regime(asset)
    state = model_state(asset.current_version)
    held = training.held(state, forget_record_ids(asset, owner_keys, confirmed))
    method, params = (job.method, job.params) if job is not None else (training.method_for(asset.kind), {})
    model = {"model": asset.name, "model_kind": asset.kind, "regime": asset.regime, "method": method,
             "kind": "exact" if training.exact else "approximate", "records": len(held)}
    if not held:
        return {**model, "summary": "Every record of this owner has already been deleted from this model."}
    plan = training.plan(state, held, method, params)
    return {**model, "summary": plan.summary(), "estimated_steps": plan.estimated_steps,
            "estimated_seconds": plan.estimated_seconds, **({"plan": plan.as_dict()} if training.exact else {})}


def governed_models_searched() -> list[dict]:
    """Every governed model with a served version: what a search for a person's records covers
    (audits.certificate_pdf.SearchedModel's fields)."""
    assets = ModelAsset.objects.exclude(current_version=None).select_related("current_version").order_by("name")
    counts = dict(TrainingRecord.objects.values("asset").annotate(records=Count("id")).values_list("asset", "records"))
    return [{"name": asset.name, "kind": asset.get_kind_display(), "version_sha256": asset.current_version.sha256,
             "training_records": counts.get(asset.pk, 0)} for asset in assets]


def deletion_plans(owner_key: str, confirmed: dict[str, list[str]] | None = None) -> list[dict]:
    """The plan of every model holding the owner's records or named in `confirmed` (per model, the
    records a reviewer adds: near matches)."""
    confirmed = confirmed or {}
    assets = {asset.pk: asset for asset, _ in assets_holding(owner_key)}
    assets.update(ModelAsset.objects.filter(name__in=confirmed).in_bulk())
    return [deletion_plan(asset, [owner_key], confirmed.get(asset.name, ())) for _, asset in sorted(assets.items())]


def job_detail(job_id) -> UnlearningJob:
    job = (UnlearningJob.objects.select_related("asset", "base_version", "result_version").filter(pk=int(job_id)).first()
           if str(job_id).isdecimal() else None)
    if job is None:
        raise NotFound(f"no unlearning job with id {job_id}")
    return job


def next_queued_job(asset_id: int) -> UnlearningJob | None:
    """The model's oldest job waiting for a worker (jobs of one model run one at a time, in order)."""
    return UnlearningJob.objects.filter(asset_id=asset_id, status=JobStatus.QUEUED).order_by("pk").first()


def stale_claim(now=None) -> Q:
    """A RUNNING claim whose worker is gone: no heartbeat for `JOB_STALE_AFTER_SECONDS`, or running
    past the task's hard time limit (Celery has killed it by then). For jobs, audit runs and model
    registrations alike (their statuses share the value "running"). A claim with no heartbeat at all was taken by a
    worker from before heartbeats: only the time limit can tell that it is lost."""
    now = now or timezone.now()
    silent = now - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)
    return Q(status=JobStatus.RUNNING) & (Q(heartbeat_at__lt=silent) | overdue_claim(now))


def overdue_claim(now) -> Q:
    return Q(status=JobStatus.RUNNING, started_at__lt=now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT))


def stale_job_claim(now=None) -> Q:
    """A job's stale claim: as stale_claim, except that a job waiting for its fanned-out parts (the
    tasks of its shards may wait in the gpu queue behind other jobs, sending no heartbeat) is
    given until its parts_deadline, which every part's start and finish moves on."""
    now = now or timezone.now()
    return stale_claim(now) & (Q(parts_deadline=None) | Q(parts_deadline__lt=now))


def stale_jobs() -> list[int]:
    return list(UnlearningJob.objects.filter(stale_job_claim()).order_by("pk").values_list("pk", flat=True))


def idle_queued_jobs(cutoff) -> list[int]:
    """Queued jobs nothing has touched since `cutoff` whose model is free to run them: their task's
    message is lost (a broker restarted without persistence, a send that failed after its commit)."""
    busy = UnlearningJob.objects.filter(status=JobStatus.RUNNING).values("asset_id")
    return untouched_since(UnlearningJob.objects.filter(status=JobStatus.QUEUED).exclude(asset_id__in=busy), cutoff)


def idle_queued_registrations(cutoff) -> list[int]:
    """As idle_queued_jobs, for checkpoint registrations."""
    return untouched_since(ModelRegistration.objects.filter(status=RegistrationStatus.QUEUED), cutoff)


def untouched_since(claims, cutoff) -> list[int]:
    """The ids of these rows whose last heartbeat (or, never claimed, their creation) is before `cutoff`."""
    return list(claims.alias(touched=Coalesce("heartbeat_at", "created_at")).filter(touched__lt=cutoff)
                .order_by("pk").values_list("pk", flat=True))


def governed_models():
    """The models under governance, with how many records and owners their lineage holds."""
    return (ModelAsset.objects.select_related("current_version")
            .annotate(record_count=Count("records"), owner_count=Count("records__owner_key", distinct=True))
            .order_by("name"))


def governed_model(name: str) -> ModelAsset:
    model = governed_models().filter(name=name).first()
    if model is None:
        raise NotFound(f"no governed model is named {name}")
    return model


def registration_of_source(source) -> ModelRegistration | None:
    return ModelRegistration.objects.filter(checkpoint_source=str(source)).first()


def registration_detail(registration_id) -> ModelRegistration:
    registration = (ModelRegistration.objects.select_related("asset").filter(pk=registration_id).first()
                    if str(registration_id).isdecimal() else None)
    if registration is None:
        raise NotFound(f"no model registration {registration_id}")
    return registration
