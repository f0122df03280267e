"""Tabular classifiers and regressors under governance (issue 4, deliver 4): trained by
`manage.py train_tabular_model` as SISA shards of small MLPs, their rows' owners file removal
requests like anyone else, the deletion retrains one shard, the audits (membership, fit of the
forgotten rows, held-out utility) are recomputed here independently, and the certificate says
removal. Runs in this process (tasks eager) on scikit-learn's bundled data sets."""

import json
import subprocess

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from scipy.special import softmax
from sklearn.metrics import accuracy_score, roc_auc_score

from audits.models import AuditRun, Comparison
from compliance import services
from compliance.models import RequestStatus
from tests.conftest import one_torch_thread
from unlearning.models import JobStatus, ModelAsset, ModelKind, ModelVersion, TrainingRecord, UnlearningJob, VersionRole
from unlearning.selectors import version_lineage

pytestmark = pytest.mark.django_db
SHARDS, SLICES = 3, 2


@pytest.fixture
def store(settings, tmp_path):
    settings.MODEL_STORE_DIR, settings.VAR_DIR, settings.SIGNING_DIR = tmp_path / "models", tmp_path, tmp_path / "sign"


def train(dataset: str, name: str):
    with one_torch_thread():
        call_command("train_tabular_model", name=name, dataset=dataset, shards=SHARDS, slices=SLICES, epochs=10,
                     hidden=32)
    return ModelAsset.objects.get(name=name)


def verified(submit, email):
    request, code = submit(email=email, full_name="Row Owner")
    return services.verify_identity(request_id=request.pk, code=code)


def certified(legal_user, requests, capture):
    """Approve the requests, all before the worker starts (one job), and see them certified."""
    with capture(execute=True):
        for request in requests:
            services.approve_request(request_id=request.pk, user=legal_user)
    for request in requests:
        request.refresh_from_db()
        assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}"


def rows(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def member_outputs(version, features) -> np.ndarray:
    """members × rows × outputs, computed here from the stored weights with numpy (not the audit's code)."""
    from safetensors.numpy import load_file

    served = version.storage_path
    manifest = json.load(open(f"{served}/sisa.json"))
    outputs = []
    for shard in manifest["shards"]:
        w = load_file(f"{served}/{shard['path']}/model.safetensors")
        hidden = np.maximum(features @ w["0.weight"].T + w["0.bias"], 0)
        outputs.append(hidden @ w["2.weight"].T + w["2.bias"])
    return np.stack(outputs)


def test_a_digits_classifier_is_registered_with_every_rows_shard_and_slice(store):
    asset = train("digits", "digits-sisa")
    assert (asset.kind, asset.regime) == (ModelKind.CLASSIFIER, "sisa")
    lineage = version_lineage(asset.current_version)
    stored = {r.record_id: (r.shard, r.slice) for r in TrainingRecord.objects.filter(asset=asset)}
    assert len(stored) == len(rows(asset.training_manifest)) == 1437  # digits' training split
    assert stored == {record_id: (p.shard, p.slice) for record_id, p in lineage.placements.items()}
    assert {r.owner_key for r in TrainingRecord.objects.filter(asset=asset, record_id="digits-00017")} == {
        "subject-00017@digits.example"}


def test_row_owners_requests_retrain_only_their_shards_and_the_audits_match_an_independent_computation(
        store, submit, legal_user, legal_api, django_capture_on_commit_callbacks):
    asset = train("digits", "digits-sisa")
    training = rows(asset.training_manifest)
    owners = [training[0]["owner_key"], training[1]["owner_key"]]
    first, code = submit(email=owners[0], full_name="Row Owner")
    owner = Client()  # the first owner confirms the code on the portal, which also signs them in
    assert owner.post(f"/requests/{first.pk}/verify/", {"code": code}).status_code == 302
    first.refresh_from_db()
    requests = [first, verified(submit, owners[1])]
    (plan,) = legal_api.get(f"/api/v1/requests/{requests[0].pk}/").json()["deletion_plans"]
    assert (plan["model"], plan["model_kind"], plan["kind"], plan["records"]) == ("digits-sisa", "classifier", "exact", 1)
    assert "retrain 1 of 3 shards" in plan["summary"]
    certified(legal_user, requests, django_capture_on_commit_callbacks)

    job = UnlearningJob.objects.get()
    assert job.status == JobStatus.SUCCEEDED and job.method == "sisa_shard_retraining" and job.requests.count() == 2
    deleted = {training[0]["record_id"], training[1]["record_id"]}
    assert set(job.forget_record_ids) == deleted
    after = version_lineage(job.result_version)
    assert not deleted & set(after.placements)
    assert all(not deleted & set(c.trained_record_ids) for checkpoints in after.shards for c in checkpoints)
    affected = {s["shard"] for s in job.outcome["plan"]["shards"]}
    before = version_lineage(job.base_version)
    assert affected == {before.placements[record_id].shard for record_id in deleted}
    assert all(after.shards[k] == before.shards[k] for k in range(SHARDS) if k not in affected)

    run = AuditRun.objects.get(job=job)
    reference = ModelVersion.objects.get(role=VersionRole.REFERENCE)
    assert run.policy["version"] == "2026.11-classifier-families" and run.comparison == Comparison.RETRAINED_REFERENCE
    assert reference.sha256 == job.result_version.sha256  # retrained from scratch: byte-identical
    results = {r.metric: r for r in run.results.all()}
    assert set(results) == {"forget_row_accuracy", "row_mia_loss_auc", "row_mia_confidence_auc", "heldout_accuracy"}

    holdout = rows(asset.holdout_manifest)
    forgotten = [r for r in training if r["record_id"] in deleted]
    for role, version in (("original", job.base_version), ("unlearned", job.result_version)):
        def votes(records):
            return member_outputs(version, np.array([r["features"] for r in records])).argmax(-1)

        def majority(records):
            return np.array([np.bincount(column, minlength=10).argmax() for column in votes(records).T])

        def losses(records):
            probabilities = softmax(member_outputs(version, np.array([r["features"] for r in records])), -1).mean(0)
            return -np.log(probabilities[np.arange(len(records)), [r["target"] for r in records]])

        truth = [r["target"] for r in holdout]
        assert getattr(results["heldout_accuracy"], f"{role}_value") == pytest.approx(
            accuracy_score(truth, majority(holdout)), abs=1e-9)
        assert getattr(results["forget_row_accuracy"], f"{role}_value") == pytest.approx(
            np.mean(majority(forgotten) == [r["target"] for r in forgotten]), abs=1e-9)
        expected_auc = roc_auc_score([1] * len(forgotten) + [0] * len(holdout),
                                     -np.concatenate([losses(forgotten), losses(holdout)]))
        assert getattr(results["row_mia_loss_auc"], f"{role}_value") == pytest.approx(expected_auc, abs=1e-6)
    # Two rows: below the policy's minimum sample, so the forget metrics cannot be PASS; never FAIL.
    assert {results[m].verdict for m in ("forget_row_accuracy", "row_mia_loss_auc")} == {"INCONCLUSIVE"}
    assert results["heldout_accuracy"].verdict == "PASS"

    page = " ".join(owner.get(f"/requests/{requests[0].pk}/").content.decode().split())
    assert "(exact removal): done. The part of this model that was trained on your data was trained again without it." in page
    assert job.outcome["plan_summary"] in page

    text = " ".join(subprocess.run(["pdftotext", requests[0].certificate.pdf_path, "-"], capture_output=True,
                                   text=True, check=True).stdout.split())
    assert "Nature of the result: removal." in text and "Held-out accuracy (utility)" in text
    assert "MLP 64→32→10 (classification), SISA 3×2" in text
    assert "byte-identical to the model after deletion" in text and "usually one row" in text
    assert "in-context relearning" not in text  # a language model's limitation, not this model's


def test_a_batch_with_an_already_deleted_owner_deletes_only_what_is_still_there(
        store, submit, legal_user, django_capture_on_commit_callbacks):
    asset = train("digits", "digits-sisa")
    first, second = (row["owner_key"] for row in rows(asset.training_manifest)[:2])
    certified(legal_user, [verified(submit, first)], django_capture_on_commit_callbacks)
    certified(legal_user, [verified(submit, first), verified(submit, second)], django_capture_on_commit_callbacks)

    earlier, batch = UnlearningJob.objects.order_by("pk")
    second_row = TrainingRecord.objects.get(asset=asset, owner_key=second).record_id
    assert set(batch.forget_record_ids) == set(earlier.forget_record_ids) | {second_row}
    assert batch.outcome["plan"]["deleted_record_ids"] == [second_row]  # the first owner's row was gone already
    assert batch.base_version == earlier.result_version != batch.result_version
    # The first owner's row left with the earlier job: forgetting is measured from the model before it.
    assert AuditRun.objects.get(job=batch).original_version == earlier.base_version


def test_a_diabetes_regressor_is_judged_by_squared_errors(store, submit, legal_user, django_capture_on_commit_callbacks):
    asset = train("diabetes", "diabetes-sisa")
    assert asset.kind == ModelKind.REGRESSOR
    owner = rows(asset.training_manifest)[5]
    certified(legal_user, [verified(submit, owner["owner_key"])], django_capture_on_commit_callbacks)
    run = AuditRun.objects.get()
    results = {r.metric: r for r in run.results.all()}
    assert run.policy["version"] == "2026.11-regressor-families"
    assert set(results) == {"forget_row_relative_squared_error", "row_mia_loss_auc", "heldout_relative_squared_error"}
    prediction = member_outputs(run.unlearned_version, np.array([owner["features"]])).mean(0)[0, 0]
    variance = np.var([r["target"] for r in rows(asset.training_manifest)])
    assert results["forget_row_relative_squared_error"].unlearned_value == pytest.approx(
        (prediction - owner["target"]) ** 2 / variance, rel=1e-5)


def test_bad_rows_are_refused_with_one_line_and_nothing_is_registered(store, tmp_path):
    good = {"record_id": "r1", "owner_key": "a@x.example", "kind": "row", "features": [0.1, 0.2], "target": 1}
    other = {**good, "record_id": "r2", "owner_key": "b@x.example", "target": 0}
    held_out = {**good, "record_id": "h1", "owner_key": "c@x.example"}
    cases = {  # name: (training rows, held-out rows, the one line expected)
        "short": ([good, {**other, "features": [0.1]}], [held_out], "row r2: features must be 2 numbers"),
        "flag": ([good, {**other, "features": [True, 0.2]}], [held_out], "row r2: features must be 2 numbers"),
        "huge": ([good, {**other, "features": [10 ** 400, 0.2]}], [held_out], "row r2: features must be 2 numbers"),
        "fraction": ([good, {**other, "target": 0.5}], [held_out], "row r2: a class target is a whole number"),
        "no-target": ([good, {k: v for k, v in other.items() if k != "target"}], [held_out],
                      r":2: record lacks target$"),
        "text": ([{"record_id": "t", "kind": "bio", "text": "hello"}], [held_out],
                 "is of kind 'bio': use train_governed_model"),
        "one-class": ([good, {**other, "target": 1}], [held_out], "hold 1 class: a classifier needs two at least"),
        "unseen-class": ([good, other], [{**held_out, "target": 3}], "row h1: class 3 is in no training row"),
        "both-sides": ([good, other], [good], "row r1 is both a training and a held-out row"),
        "owner": ([good, {**other, "owner_key": "Bob@X.example"}], [held_out],
                  "record r2: owner_key 'Bob@X.example' is not an e-mail address in lower case"),
    }
    for name, (training, holdout, message) in cases.items():
        paths = tmp_path / f"{name}-train.jsonl", tmp_path / f"{name}-holdout.jsonl"
        for path, records in zip(paths, (training, holdout)):
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
        with pytest.raises(CommandError, match=message):
            call_command("train_tabular_model", name=name, manifest=str(paths[0]), holdout=str(paths[1]),
                         task="classification")
    with pytest.raises(CommandError, match="--manifest needs --task and --holdout"):
        call_command("train_tabular_model", name="x", manifest=str(tmp_path / "short-train.jsonl"))
    with pytest.raises(CommandError, match="is of kind 'row': use train_tabular_model"):
        call_command("train_governed_model", name="rows", manifest=str(tmp_path / "short-train.jsonl"))
    assert not ModelAsset.objects.exists()


def test_the_datasets_offered_are_those_the_engine_loads():
    from unlearning.management.commands.train_tabular_model import BUNDLED_DATASETS
    from unlearning.tabular import LOADERS

    assert BUNDLED_DATASETS == tuple(LOADERS)


def test_a_plain_regressor_forgets_a_row_by_its_default_method_and_its_certificate_says_suppression(
        store, submit, legal_user, legal_api, django_capture_on_commit_callbacks):
    """Registered plain (no SISA): a row leaves it by IAU, the regime's default for rows, checked here
    from the stored weights with numpy; the audits compare with a plain MLP retrained without it."""
    from safetensors.numpy import load_file

    with one_torch_thread():
        call_command("train_tabular_model", name="diabetes-plain", dataset="diabetes", regime="plain", epochs=40,
                     hidden=32)
    asset = ModelAsset.objects.get(name="diabetes-plain")
    assert (asset.kind, asset.regime) == (ModelKind.REGRESSOR, "plain") and asset.architecture.endswith("plain")
    training = rows(asset.training_manifest)
    request = verified(submit, training[0]["owner_key"])
    (plan,) = legal_api.get(f"/api/v1/requests/{request.pk}/").json()["deletion_plans"]
    assert (plan["kind"], plan["method"]) == ("approximate", "iau") and "Influence-approximation" in plan["summary"]
    certified(legal_user, [request], django_capture_on_commit_callbacks)

    job = UnlearningJob.objects.get()
    assert job.method == "iau" and job.outcome["method_kind"] == "approximate" and job.history[0]["step"] == 0
    assert job.result_version.details["params"]["learning_rate"] == 100.0

    def squared_error(version, row) -> float:
        w = load_file(f"{version.storage_path}/model.safetensors")
        hidden = np.maximum(np.array(row["features"]) @ w["0.weight"].T + w["0.bias"], 0)
        return float(((hidden @ w["2.weight"].T + w["2.bias"])[0] - row["target"]) ** 2)

    assert squared_error(job.result_version, training[0]) > squared_error(job.base_version, training[0])
    reference = ModelVersion.objects.get(asset=asset, role=VersionRole.REFERENCE)
    assert (reference.storage_path and json.load(open(f"{reference.storage_path}/mlp.json"))["task"] == "regression")
    run = AuditRun.objects.get(job=job)
    assert run.comparison == Comparison.RETRAINED_REFERENCE
    pdf = request.certificate.pdf_path
    text = " ".join(subprocess.run(["pdftotext", pdf, "-"], capture_output=True, check=True).stdout.decode().split())
    assert "suppression" in text.lower() and "iau" in text.lower()
