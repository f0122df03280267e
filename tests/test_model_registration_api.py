"""ML operators register their own checkpoint over the API (POST /api/v1/models/), a scope of its
own: the web process checks the name and manifests at once, a worker (here the embedded mode's
in-process task) loads the checkpoint and puts it under governance; then one customer's request
goes through the legal team's API to a signed certificate that says suppression."""

import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from audits.models import Comparison
from compliance import services
from compliance.models import AuditEvent
from tests.conftest import CUSTOMERS, one_torch_thread
from unlearning.models import ModelAsset, ModelRegistration, ModelVersion

pytestmark = pytest.mark.django_db


def archived(folder: Path, into: Path, fmt: str = "gztar") -> Path:
    """The folder save_pretrained wrote, archived as an operator would (the folder inside)."""
    return Path(shutil.make_archive(str(into / folder.name), fmt, folder.parent, folder.name))


def post_registration(api, name, manifest, holdout, **checkpoint):
    files = {key: open(value, "rb") if isinstance(value, Path) else value for key, value in checkpoint.items()}
    try:
        return api.post("/api/v1/models/", {"name": name, "manifest": open(manifest, "rb"),
                                            "holdout": open(holdout, "rb"), **files}, format="multipart")
    finally:
        for handle in files.values():
            if hasattr(handle, "close"):
                handle.close()


def incoming(store_dir: Path) -> list[Path]:
    folder = store_dir / "models" / "incoming"
    return list(folder.iterdir()) if folder.exists() else []


def test_an_operator_registers_a_checkpoint_over_the_api_and_a_request_ends_in_a_certificate(
        llama_checkpoint, store, operator_api, legal_api, submit, tmp_path, django_capture_on_commit_callbacks,
        approve_leaving_job_queued):
    from unlearning.store import checkpoint_sha256

    folder, manifest, holdout = llama_checkpoint
    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        response = post_registration(operator_api, "support-llama-api", manifest, holdout,
                                     checkpoint=archived(folder, tmp_path))
    assert response.status_code == 202, response.content
    registration = operator_api.get(response["Location"]).json()
    assert registration["status"] == "registered", registration["error"]
    assert registration["model"]["name"] == "support-llama-api" and registration["requested_by"].endswith("operator-test")
    model = operator_api.get(registration["model"]["url"]).json()
    assert model["regime"] == "external" and model["architecture"].startswith("LlamaForCausalLM")
    assert model["records"] == 3 * CUSTOMERS and model["owners"] == CUSTOMERS
    assert model["current_sha256"] == checkpoint_sha256(folder)  # the operator's bytes, pinned as they are
    assert [m["name"] for m in operator_api.get("/api/v1/models/").json()] == ["support-llama-api"]
    assert incoming(store) == []  # the upload is gone once registered
    assert AuditEvent.objects.filter(action="model.registration_requested", actor__endswith="operator-test").exists()

    # The scopes do not mix: legal tokens cannot register, operator tokens cannot decide requests.
    assert legal_api.get("/api/v1/models/").status_code == 403
    assert operator_api.get("/api/v1/requests/").status_code == 403

    request, code = submit(email="customer-005@support.example", full_name="Customer Five")
    services.verify_identity(request_id=request.pk, code=code)
    queued = approve_leaving_job_queued(request)
    # The operator runs NPO through LoRA on this job instead of the regime's default, GradDiff.
    job_id = ModelAsset.objects.get(name="support-llama-api").jobs.get().pk
    choice = {"lora_rank": 4, "eval_every_steps": 1}
    chosen = operator_api.post(f"/api/v1/jobs/{job_id}/method/", {"method": "npo", "params": choice}, format="json")
    assert chosen.status_code == 200, chosen.content
    assert chosen.json()["method"] == "npo" and chosen.json()["params"] == choice
    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        for task in queued:
            task()
    detail = legal_api.get(f"/api/v1/requests/{request.pk}/").json()
    assert detail["status"] == "certified", f"{detail['failed_step']}: {detail['failure_reason']}"
    # What ran is stored with the version it produced: the method, its resolved parameters, its
    # history from the first evaluation to the last, and the code that ran it.
    job = detail["jobs"][0]
    version = ModelVersion.objects.get(sha256=job["result_sha256"], role="unlearned")
    assert version.details["method"] == "npo" and version.details["params"]["lora_rank"] == 4
    assert version.details["params"]["beta"] == 0.1 and version.details["code_version"]
    assert version.details["history"] == job["history"] and job["history"][0]["step"] == 0
    # The state kept is the evaluated one within the floor whose forget loss is nearest the target.
    target = version.produced_by.outcome["target_forget_loss"]
    within = job["history"][:-1] if job["stopped_because"] == "utility_floor" else job["history"]
    nearest = min(within, key=lambda point: abs(point["forget_loss"] - target))
    assert version.details["best_step"] == nearest["step"]
    run = detail["audits"][0]
    assert run["comparison"] == Comparison.HOLDOUT and run["original_sha256"] == model["current_sha256"]
    loss = next(r for r in run["results"] if r["metric"] == "mia_loss_auc")
    # Three forget records make a coarse AUC: on this machine's CPU (float kernels differ) the kept
    # state left it at 1.0, where another moved it; the forget loss the method raised is the finer sign.
    assert loss["sample_size"] == 3 and abs(loss["unlearned"] - 0.5) <= abs(loss["original"] - 0.5)
    assert nearest["forget_loss"] > job["history"][0]["forget_loss"]
    pdf = legal_api.get(detail["certificate"]["download"])
    text = " ".join(subprocess.run(["pdftotext", "-", "-"], input=b"".join(pdf.streaming_content), capture_output=True,
                                   check=True).stdout.decode().split())
    assert re.search(r"suppression", text, re.IGNORECASE) and "support-llama-api" in text


def test_a_folder_in_the_import_folder_is_registered_where_it_lies(llama_checkpoint, store, operator_api, settings,
                                                                   django_capture_on_commit_callbacks):
    folder, manifest, holdout = llama_checkpoint
    settings.MODEL_IMPORT_DIR = store / "import"
    shutil.copytree(folder, settings.MODEL_IMPORT_DIR / "team-a" / "llama")
    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        response = post_registration(operator_api, "imported", manifest, holdout, checkpoint_path="team-a/llama")
    assert response.status_code == 202, response.content
    assert ModelRegistration.objects.get().status == "registered"
    assert (settings.MODEL_IMPORT_DIR / "team-a" / "llama" / "config.json").exists()  # the operator's folder stays


@pytest.mark.parametrize("fields, status, message", [
    ({"checkpoint": "not-an-archive"}, 400, "not a zip or tar archive"),
    ({}, 400, "one of the two"),
    ({"checkpoint_path": "../../etc"}, 400, "inside the import folder"),
    ({"checkpoint_path": "absent"}, 400, "no such folder"),
])
def test_what_the_web_process_can_check_is_refused_at_once_and_nothing_is_kept(
        llama_checkpoint, store, operator_api, settings, tmp_path, fields, status, message):
    _, manifest, holdout = llama_checkpoint
    settings.MODEL_IMPORT_DIR = store / "import"
    settings.MODEL_IMPORT_DIR.mkdir()
    if fields.get("checkpoint") == "not-an-archive":
        fields = {"checkpoint": io.BytesIO(b"weights, honestly")}
        fields["checkpoint"].name = "model.zip"
    response = post_registration(operator_api, "refused", manifest, holdout, **fields)
    assert response.status_code == status and response["Content-Type"] == "application/problem+json"
    assert message in json.dumps(response.json())
    assert not ModelRegistration.objects.exists() and incoming(store) == []


def test_bad_manifests_a_taken_name_and_an_oversized_upload_are_refused(llama_checkpoint, store, operator_api,
                                                                       settings, tmp_path):
    folder, manifest, holdout = llama_checkpoint
    archive = archived(folder, tmp_path, "zip")
    records = [json.loads(line) for line in Path(manifest).read_text().splitlines()]
    overlapping = tmp_path / "overlap.jsonl"
    overlapping.write_text(Path(holdout).read_text() + json.dumps({**records[0], "record_id": "copied"}) + "\n")
    refused = post_registration(operator_api, "x", manifest, overlapping, checkpoint=archive)
    assert refused.status_code == 400 and "shares 1 records with the training manifest" in refused.json()["detail"]
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_text('{"record_id": "a"\n')
    refused = post_registration(operator_api, "x", garbled, holdout, checkpoint=archive)
    assert refused.status_code == 400 and refused.json()["detail"].startswith("manifest 'garbled.jsonl'")
    ModelAsset.objects.create(name="taken", architecture="-", training_manifest="-")
    refused = post_registration(operator_api, "taken", manifest, holdout, checkpoint=archive)
    assert refused.status_code == 400 and "already registered" in refused.json()["detail"]
    settings.CHECKPOINT_UPLOAD_MAX_BYTES = 1000
    refused = post_registration(operator_api, "x", manifest, holdout, checkpoint=archive)
    assert refused.status_code == 400 and "MiB allowed" in refused.json()["detail"]
    assert not ModelRegistration.objects.exists() and incoming(store) == []


def with_member(archive: Path, kind: str) -> Path:
    """A tar of the checkpoint plus one hostile member."""
    hostile = archive.with_name(f"{kind}.tar")
    with tarfile.open(archive) as source, tarfile.open(hostile, "w") as target:
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        if kind == "link":
            link = tarfile.TarInfo("support-llama/escape")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            target.addfile(link)
        else:
            data = b"owned"
            escape = tarfile.TarInfo("../escape.txt")
            escape.size = len(data)
            target.addfile(escape, io.BytesIO(data))
    return hostile


@pytest.mark.parametrize("damage, reason", [
    ("no_tokenizer", "has no tokenizer that loads"),
    ("link", "is a link"),
    ("escape", "refused"),
    ("no_config", "holds no config.json"),
])
def test_what_only_a_worker_can_check_rejects_the_registration_with_its_reason(
        llama_checkpoint, store, operator_api, tmp_path, damage, reason, django_capture_on_commit_callbacks):
    folder, manifest, holdout = llama_checkpoint
    copy = tmp_path / "support-llama"
    shutil.copytree(folder, copy)
    for path in copy.iterdir():
        if (damage == "no_tokenizer" and path.name.startswith(("tokenizer", "special_tokens"))) or (
                damage == "no_config" and path.name == "config.json"):
            path.unlink()
    archive = archived(copy, tmp_path)
    if damage in ("link", "escape"):
        archive = with_member(archive, damage)
    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        response = post_registration(operator_api, "damaged", manifest, holdout, checkpoint=archive)
    assert response.status_code == 202
    registration = operator_api.get(response["Location"]).json()
    assert registration["status"] == "rejected" and reason in registration["error"], registration["error"]
    assert not ModelAsset.objects.exists() and incoming(store) == []
    assert AuditEvent.objects.filter(action="model.registration_rejected").exists()


def test_a_registration_whose_worker_was_lost_is_queued_again_by_the_sweep(
        llama_checkpoint, store, operator_api, settings, tmp_path, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from unlearning import services as unlearning_services

    folder, manifest, holdout = llama_checkpoint
    with django_capture_on_commit_callbacks(execute=False):  # the task never reaches a worker
        response = post_registration(operator_api, "lost", manifest, holdout, checkpoint=archived(folder, tmp_path))
    registration = ModelRegistration.objects.get()
    assert unlearning_services.claim_registration(registration.pk).status == "running"  # a worker took it...
    ModelRegistration.objects.update(heartbeat_at=timezone.now() - timedelta(hours=1))  # ...and died
    assert unlearning_services.claim_registration(registration.pk) is not None  # a redelivery may take it over
    ModelRegistration.objects.update(heartbeat_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        assert unlearning_services.sweep_stale_registrations() == {"requeued": [registration.pk], "failed": []}
    registration = operator_api.get(response["Location"]).json()
    assert registration["status"] == "registered" and incoming(store) == []
    actions = list(AuditEvent.objects.filter(object_type="unlearning.ModelRegistration").values_list("action", flat=True))
    assert actions == ["model.registration_requested", "model.registration_started", "model.registration_started",
                       "model.registration_requeued", "model.registration_started"]


def test_an_import_folder_linking_outside_it_is_rejected(llama_checkpoint, store, operator_api, settings, tmp_path,
                                                         django_capture_on_commit_callbacks):
    folder, manifest, holdout = llama_checkpoint
    settings.MODEL_IMPORT_DIR = store / "import"
    linked = settings.MODEL_IMPORT_DIR / "llama"
    shutil.copytree(folder, linked)
    secret = tmp_path / "signing-key.pem"
    secret.write_text("not for the store")
    (linked / "extra.pem").symlink_to(secret)
    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        response = post_registration(operator_api, "linked", manifest, holdout, checkpoint_path="llama")
    registration = operator_api.get(response["Location"]).json()
    assert registration["status"] == "rejected" and "extra.pem links outside the import folder" in registration["error"]
    assert not ModelAsset.objects.exists()


def test_a_manifest_field_of_the_wrong_type_is_a_400(llama_checkpoint, store, operator_api, tmp_path):
    folder, manifest, holdout = llama_checkpoint
    records = [json.loads(line) for line in Path(manifest).read_text().splitlines()]
    typed = tmp_path / "typed.jsonl"
    typed.write_text("\n".join(json.dumps({**r, "owner_key": 42} if i == 2 else r) for i, r in enumerate(records)))
    refused = post_registration(operator_api, "x", typed, holdout, checkpoint=archived(folder, tmp_path))
    assert refused.status_code == 400 and "owner_key is int, not text" in refused.json()["detail"]


def test_one_user_holds_one_scope(operator_api, legal_user, legal_api):
    from django.contrib.auth.models import User
    from django.core.management import CommandError, call_command
    from rest_framework.test import APIClient

    with pytest.raises(CommandError, match="already holds the legal scope"):
        call_command("create_api_user", legal_user.username, scope="ml-operator")
    operator = User.objects.get(username="operator-test")
    operator.is_staff = True  # staff or not, an operator's token never drives requests
    operator.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {operator.auth_token.key}")
    assert client.get("/api/v1/requests/").status_code == 403
