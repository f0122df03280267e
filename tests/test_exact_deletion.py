"""Exact deletion through the service (issue 4): a SISA-trained model under governance, its
deletion plan on the API before approval, the shard retraining the plan names, lineage that
proves no kept checkpoint saw a deleted record, audits against a reference retrained from
scratch by the same machinery, and a certificate that says "removal" and carries the plan.
Runs in this process (tasks eager) on a tiny world."""

import subprocess

import pytest

from audits.models import AuditRun, Comparison
from compliance import services
from compliance.models import AuditEvent, RequestStatus
from tests.conftest import one_torch_thread
from unlearning.models import JobStatus, ModelVersion, TrainingRecord, TrainingRegime, UnlearningJob, VersionRole
from unlearning.sisa import SisaLineage
from unlearning.store import load_lineage

pytestmark = pytest.mark.django_db
SHARDS, SLICES = 3, 2


@pytest.fixture(scope="module")
def sisa_model(tmp_path_factory):
    """The tiny world trained as SISA shards (trained once for this module)."""
    from unlearning.demo_world import build_demo_model
    from unlearning.lm import TrainingRecipe
    from unlearning.sisa import SisaConfig
    from unlearning.world import WorldConfig

    with one_torch_thread():
        return build_demo_model(WorldConfig(people=24, seed=3), TrainingRecipe(epochs=40, seed=3),
                                tmp_path_factory.mktemp("sisa-store"), config=SisaConfig(SHARDS, SLICES, seed=3))


@pytest.fixture
def governed(sisa_model, settings):
    from unlearning.services import register_model

    settings.MODEL_STORE_DIR = sisa_model.checkpoint_path.parent
    return register_model(
        name="tiny-sisa", architecture="GPT-2 (tiny) SISA ensemble", training_recipe=vars(sisa_model.recipe),
        checkpoint_sha256=sisa_model.checkpoint_sha256, checkpoint_path=sisa_model.checkpoint_path,
        training_manifest=sisa_model.training_manifest, holdout_manifest=sisa_model.holdout_manifest,
        records=sisa_model.lineage, lineage=sisa_model.placement_lineage,
    )


def verified(submit, person):
    request, code = submit(email=person.email, full_name=person.name)
    return services.verify_identity(request_id=request.pk, code=code)


def trained_ids(lineage, shard) -> set[str]:
    return {record_id for checkpoint in lineage.shards[shard] for record_id in checkpoint.trained_record_ids}


def test_registration_stores_each_records_shard_and_slice(governed, sisa_model):
    assert governed.regime == TrainingRegime.SISA
    placements = sisa_model.placement_lineage.placements
    stored = {r.record_id: (r.shard, r.slice) for r in TrainingRecord.objects.filter(asset=governed)}
    assert stored == {record_id: (p.shard, p.slice) for record_id, p in placements.items()}
    version = governed.current_version
    assert load_lineage(version.lineage_path, version.lineage_sha256, SisaLineage) == sisa_model.placement_lineage


def test_legal_sees_the_exact_deletion_plan_before_approving(governed, sisa_model, submit, legal_api):
    person = sisa_model.world.trained_people[0]
    request = verified(submit, person)
    plans = legal_api.get(f"/api/v1/requests/{request.pk}/").json()["deletion_plans"]
    assert [(p["model"], p["kind"], p["regime"]) for p in plans] == [("tiny-sisa", "exact", "sisa")]
    plan, lineage = plans[0]["plan"], sisa_model.placement_lineage
    ids = {r.record_id for r in sisa_model.world.person_records(person, include_canary=person.canary_inserted)}
    place = {lineage.placements[record_id] for record_id in ids}
    assert len(place) == 1  # a person's records share one shard and one slice
    (shard, slice_index), = {(p.shard, p.slice) for p in place}
    (retraining,) = plan["shards"]
    assert retraining["shard"] == shard and retraining["first_slice"] == slice_index
    expected_resume = lineage.shards[shard][slice_index - 1].sha256 if slice_index else None
    assert retraining["resume_from_sha256"] == expected_resume
    assert sorted(plan["unaffected_shards"]) == sorted(set(range(SHARDS)) - {shard})
    assert 0 < plan["estimated_steps"] < plan["full_retraining_steps"]
    assert set(plan["deleted_record_ids"]) == ids and "retrain 1 of 3 shards" in plans[0]["summary"]


def test_approval_retrains_only_the_planned_shard_and_the_lineage_proves_it(
        governed, sisa_model, submit, legal_user, legal_api, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.VAR_DIR, settings.SIGNING_DIR = tmp_path, tmp_path / "signing"
    first, second = sisa_model.world.trained_people[:2]
    requests = [verified(submit, first), verified(submit, second)]
    planned = [legal_api.get(f"/api/v1/requests/{r.pk}/").json()["deletion_plans"][0]["plan"] for r in requests]
    with django_capture_on_commit_callbacks(execute=True):  # both approved before the worker starts: one job
        for request in requests:
            services.approve_request(request_id=request.pk, user=legal_user)

    job = UnlearningJob.objects.get()
    assert job.status == JobStatus.SUCCEEDED and job.method == "sisa_shard_retraining" and job.requests.count() == 2
    executed = job.outcome["plan"]
    deleted = set(executed["deleted_record_ids"])
    assert deleted == set(planned[0]["deleted_record_ids"]) | set(planned[1]["deleted_record_ids"])
    assert job.outcome["method_kind"] == "exact" and job.outcome["steps"] == executed["estimated_steps"]

    before = sisa_model.placement_lineage
    after_version = job.result_version
    after = load_lineage(after_version.lineage_path, after_version.lineage_sha256, SisaLineage)
    assert not deleted & set(after.placements)
    for shard in range(SHARDS):  # from the learners' own logs of every kept checkpoint
        assert not deleted & trained_ids(after, shard)
    affected = {s["shard"] for s in executed["shards"]}
    for shard in set(range(SHARDS)) - affected:
        assert after.shards[shard] == before.shards[shard]  # not retrained: the same checkpoints, same hashes
    for shard_plan in executed["shards"]:
        kept = after.shards[shard_plan["shard"]][: shard_plan["first_slice"]]
        assert kept == before.shards[shard_plan["shard"]][: shard_plan["first_slice"]]  # resumed, not restarted
        assert all(c.generation == 1 for c in after.shards[shard_plan["shard"]][shard_plan["first_slice"]:])

    for request in requests:
        request.refresh_from_db()
        assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}"
    run = AuditRun.objects.get(job=job)
    reference = ModelVersion.objects.get(role=VersionRole.REFERENCE)
    # Retrained from scratch without the records, the affected shards come out byte-identical to the
    # resumed ones: the deletion is exact, and the audits cannot tell the two apart.
    assert run.comparison == Comparison.RETRAINED_REFERENCE and run.reference_version == reference
    assert reference.sha256 == after_version.sha256 and reference.storage_path != "" and reference.lineage_sha256
    forget = [r for r in run.results.all() if r.reference_value is not None and r.audit != "utility"
              and r.metric != "retain_qa_accuracy"]
    assert forget and all(r.unlearned_value == r.reference_value for r in forget)
    # Removal proven by identity: PASS on that ground, whatever the audits' sample sizes allow.
    assert run.verdict == "PASS" and run.verdict_basis == "identity"
    assert AuditEvent.objects.get(action="audit.completed").data["basis"] == "identity"

    text = " ".join(subprocess.run(["pdftotext", requests[0].certificate.pdf_path, "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "Nature of the result: removal." in text
    assert "Deletion plan executed" in text and "retrain" in text
    assert "byte-identical to the model after deletion" in text
    assert "Overall verdict: PASS Removal proven by identity (tiny-sisa)" in text


def test_a_second_request_for_an_already_deleted_person_completes_without_training(
        governed, sisa_model, submit, legal_user, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.VAR_DIR, settings.SIGNING_DIR = tmp_path, tmp_path / "signing"
    person = sisa_model.world.trained_people[0]
    requests = []
    for _ in range(2):
        request = verified(submit, person)
        with django_capture_on_commit_callbacks(execute=True):
            services.approve_request(request_id=request.pk, user=legal_user)
        request.refresh_from_db()
        assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}"
        requests.append(request)

    first, second = UnlearningJob.objects.order_by("pk")
    assert second.forget_record_ids == first.forget_record_ids
    assert second.base_version == second.result_version == first.result_version  # unchanged: no new version
    assert second.outcome["steps"] == 0 and second.outcome["stopped_because"] == "already deleted"
    assert ModelVersion.objects.filter(role=VersionRole.UNLEARNED).count() == 1
    run = AuditRun.objects.get(job=second)
    # Forgetting is measured from the model that still knew the person, and against the same reference.
    assert run.original_version == first.base_version
    assert run.reference_version == AuditRun.objects.get(job=first).reference_version

    text = " ".join(subprocess.run(["pdftotext", requests[1].certificate.pdf_path, "-"], capture_output=True,
                                   text=True, check=True).stdout.split())
    assert f"deleted from this model by job {first.pk}; the model is unchanged" in text


def people_in_different_shards(sisa_model, count: int = 2):
    placements, people, shards = sisa_model.placement_lineage.placements, [], set()
    for person in sisa_model.world.trained_people:
        shard = next(p.shard for record_id, p in placements.items()
                     if record_id in {r["record_id"] for r in sisa_model.lineage if r["owner_key"] == person.email})
        if shard not in shards:
            people.append(person)
            shards.add(shard)
        if len(people) == count:
            return people
    raise AssertionError("the tiny world's people sit in fewer shards")


def test_a_deletion_over_several_shards_runs_one_task_per_shard_and_joins_them_into_the_same_model(
        governed, sisa_model, submit, legal_user, settings, tmp_path, django_capture_on_commit_callbacks):
    """Fan-out (here the embedded mode runs the chord's tasks in this process; the integration test
    runs them on two worker processes): each affected shard is its own task, the join assembles the
    lineage, and the model is byte-identical to the reference retrained from scratch."""
    settings.VAR_DIR, settings.SIGNING_DIR = tmp_path, tmp_path / "signing"
    settings.EXACT_DELETION_FAN_OUT = True
    requests = [verified(submit, person) for person in people_in_different_shards(sisa_model)]
    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        for request in requests:
            services.approve_request(request_id=request.pk, user=legal_user)

    job = UnlearningJob.objects.get()
    assert job.status == JobStatus.SUCCEEDED, job.error
    shards = sorted(s["shard"] for s in job.outcome["plan"]["shards"])
    assert len(shards) == 2 and job.parts["parts"] == shards and sorted(map(int, job.parts["done"])) == shards
    assert all(job.parts["runs"][str(shard)]["attempts"] == 1 for shard in shards)  # each shard trained once
    assert job.outcome["parts"] == job.parts["runs"]
    assert len(job.outcome["plan"]["estimated_seconds_by_workers"]) == 2
    fanned = AuditEvent.objects.get(action="job.fanned_out")
    assert fanned.data == {"attempt": 1, "parts": shards, "already_done": []}
    reference = ModelVersion.objects.get(role=VersionRole.REFERENCE)
    assert reference.sha256 == job.result_version.sha256  # joined shards = retrained from scratch, byte for byte
    for request in requests:
        request.refresh_from_db()
        assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}"


# --- S3T: deletion by switching adapters off

@pytest.fixture(scope="module")
def s3t_model(tmp_path_factory):
    """A tiny world as S3T: a frozen base on text about no one, two shards of three slices, three orders."""
    from unlearning.demo_world import build_demo_model
    from unlearning.lm import TrainingRecipe
    from unlearning.s3t import S3TConfig
    from unlearning.world import WorldConfig

    with one_torch_thread():
        return build_demo_model(
            WorldConfig(people=20, seed=3), TrainingRecipe(n_layer=2, n_embd=64, epochs=10, seed=3),
            tmp_path_factory.mktemp("s3t-store"),
            config=S3TConfig(shards=2, slices=3, orders_per_shard=3, epochs_per_slice=3, batch_size=16, seed=3))


def test_an_s3t_deletion_switches_adapters_off_without_training_and_is_audited_against_a_retrained_stack(
        s3t_model, submit, legal_user, legal_api, settings, tmp_path, django_capture_on_commit_callbacks):
    from unlearning.s3t import S3TLineage
    from unlearning.services import register_model

    settings.VAR_DIR, settings.SIGNING_DIR = tmp_path, tmp_path / "signing"
    settings.MODEL_STORE_DIR = s3t_model.checkpoint_path.parent
    asset = register_model(
        name="tiny-s3t", architecture="GPT-2 (tiny) base + LoRA adapters", training_recipe=vars(s3t_model.recipe),
        checkpoint_sha256=s3t_model.checkpoint_sha256, checkpoint_path=s3t_model.checkpoint_path,
        training_manifest=s3t_model.training_manifest, holdout_manifest=s3t_model.holdout_manifest,
        records=s3t_model.lineage, lineage=s3t_model.placement_lineage)
    assert asset.regime == TrainingRegime.S3T
    request = verified(submit, s3t_model.world.trained_people[0])
    (planned,) = legal_api.get(f"/api/v1/requests/{request.pk}/").json()["deletion_plans"]
    assert planned["kind"] == "exact" and "no retraining" in planned["summary"]
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(request_id=request.pk, user=legal_user)
    request.refresh_from_db()
    assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}"

    job = UnlearningJob.objects.get()
    assert job.method == "s3t_adapter_switch_off" and job.outcome["steps"] == 0  # no training at all
    assert job.outcome["plan"] == planned["plan"]
    deleted = set(planned["plan"]["deleted_record_ids"])
    after = load_lineage(job.result_version.lineage_path, job.result_version.lineage_sha256, S3TLineage)
    for shard in after.shards:  # what every served adapter's training loop fed it
        assert not deleted & {i for adapter in shard.served_adapters for i in adapter.trained_record_ids}
    (shard_plan,) = planned["plan"]["shards"]
    switched_off = {a["sha256"] for a in shard_plan["switched_off"]}
    assert switched_off and not switched_off & {a.sha256 for a in after.shards[shard_plan["shard"]].served_adapters}

    reference = ModelVersion.objects.get(role=VersionRole.REFERENCE)
    retrained = load_lineage(reference.lineage_path, reference.lineage_sha256, S3TLineage)
    stack = retrained.shards[shard_plan["shard"]]
    assert stack.active_adapters == len(stack.orders[stack.served_order].adapters)  # a full stack, retrained
    assert not deleted & {i for order in stack.orders for a in order.adapters for i in a.trained_record_ids}
    assert reference.sha256 != job.result_version.sha256
    assert AuditRun.objects.get(job=job).reference_version == reference

    text = " ".join(subprocess.run(["pdftotext", request.certificate.pdf_path, "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "Nature of the result: removal." in text and "switched off, no retraining" in text
    assert "byte-identical" not in text  # S3T's reference is a retrained stack: another model
