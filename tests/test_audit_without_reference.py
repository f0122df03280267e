"""Audits when no retrained reference is affordable (retraining by the model's recipe costs more
than AUDIT_REFERENCE_MAX_STEPS): nothing is retrained, the forget metrics are compared with
never-trained people, and the run, the API and the signed certificate say so. The same run
prepares the runtime filters the unlearned version is served with, measures them, and activates
them at certification. The whole pipeline runs in this process (tasks eager), on the tiny model,
once: one test, in four parts."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from audits.certificates import signing_identity
from audits.models import AuditRun, Comparison
from audits.signing import validate_pdf
from compliance import services
from compliance.models import RequestStatus
from tests.conftest import register_tiny_model
from unlearning.models import ModelVersion, VersionRole

pytestmark = pytest.mark.django_db


@pytest.fixture
def certified_without_reference(tiny_model, submit, legal_user, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.VAR_DIR, settings.MODEL_STORE_DIR, settings.SIGNING_DIR = tmp_path, tmp_path / "models", tmp_path / "signing"
    settings.AUDIT_REFERENCE_MAX_STEPS = 0
    register_tiny_model(tiny_model)
    subject = tiny_model.world.trained_people[0]
    request, code = submit(email=subject.email, full_name=subject.name)
    services.verify_identity(request_id=request.pk, code=code)
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(request_id=request.pk, user=legal_user)
    request.refresh_from_db()
    assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}"
    return request, AuditRun.objects.get(job__requests=request)


@pytest.mark.runtime_filters
def test_without_an_affordable_reference_the_audits_compare_with_never_trained_people_and_say_so(
        certified_without_reference, legal_api):
    request, run = certified_without_reference
    nothing_is_retrained_and_the_run_says_what_it_compared(run)
    forget_metrics_are_gaps_to_never_trained_people_recomputed_from_the_stored_items(run)
    the_api_and_the_signed_certificate_state_the_weaker_comparison(request, legal_api)
    the_runtime_filters_were_measured_activated_and_certified(request, run)


def nothing_is_retrained_and_the_run_says_what_it_compared(run):
    assert run.comparison == Comparison.HOLDOUT and run.reference_version is None
    assert not ModelVersion.objects.filter(role=VersionRole.REFERENCE).exists()
    assert run.verdict in ("PASS", "FAIL", "INCONCLUSIVE")


def forget_metrics_are_gaps_to_never_trained_people_recomputed_from_the_stored_items(run):
    results = {result.metric: result for result in run.results.all()}
    qa = results["forget_qa_accuracy"]
    unlearned = qa.per_item["unlearned"]
    assert len(unlearned["holdout_items"]) > len(unlearned["items"]) > 0
    assert qa.reference_value == pytest.approx(np.mean(unlearned["holdout_items"]))
    assert qa.difference_low <= np.mean(unlearned["items"]) - np.mean(unlearned["holdout_items"]) <= qa.difference_high
    original = qa.per_item["original"]
    assert qa.power_low <= np.mean(original["items"]) - np.mean(original["holdout_items"]) <= qa.power_high
    assert qa.power_low > qa.margin  # the original still answers its subject's questions: the audit has power
    assert qa.details["comparison"] == "holdout"

    loss = results["mia_loss_auc"]
    sides = loss.per_item["unlearned"]
    auc = roc_auc_score([1] * len(sides["forget"]) + [0] * len(sides["holdout"]), sides["forget"] + sides["holdout"])
    assert loss.unlearned_value == pytest.approx(auc) and loss.reference_value == 0.5
    assert loss.difference_low <= auc - 0.5 <= loss.difference_high
    assert "privleak" not in loss.details  # never against an assumed 0.5
    assert results["mia_reference_auc"].verdict == "N/A"


def the_api_and_the_signed_certificate_state_the_weaker_comparison(request, legal_api):
    audit = legal_api.get(f"/api/v1/requests/{request.pk}/").json()["audits"][0]
    assert audit["comparison"] == "holdout" and audit["reference_sha256"] is None
    path = request.certificate.pdf_path
    check = validate_pdf(Path(path).read_bytes(), signing_identity().ca_file.read_bytes())
    assert check.intact and check.valid and check.trusted
    text = " ".join(subprocess.run(["pdftotext", path, "-"], capture_output=True, text=True, check=True).stdout.split())
    assert "No retrained reference was affordable for tiny-world." in text
    assert "never-trained people (no retrained reference)" in text


def the_runtime_filters_were_measured_activated_and_certified(request, run):
    from compliance.auditlog import AuditEvent
    from unlearning.serving.targets import ForgetTargets
    from unlearning.store import read_verified_file

    prepared = run.runtime_filters
    assert sorted(prepared["filters"]) == ["eco", "guard", "output_filter", "prompt_classifier"]
    assert prepared["filters"]["eco"]["strength"] > 0  # tuned
    targets = ForgetTargets.from_json(read_verified_file(Path(prepared["targets_path"]), prepared["targets_sha256"]).decode())
    assert [t.subject for t in targets.targets] == [request.full_name]
    measured = prepared["measured"]
    assert measured["leakage_on"]["hits"] == 0 and measured["leakage_on"]["interval"][1] < 0.15
    assert measured["fact_in_context_on"]["hits"] <= measured["fact_in_context_off"]["hits"]
    assert abs(measured["retain_accuracy_on"]["rate"] - measured["retain_accuracy_off"]["rate"]) <= 0.01
    gate = measured["filters"]["prompt_classifier"]
    assert gate["block"]["rate"] == 1.0 and gate["false_positive"]["rate"] <= 0.02  # calibrated on other people
    assert prepared["calibration"]["false_positive_rate"] == 0
    version = run.unlearned_version
    version.refresh_from_db()
    assert version.runtime_filters["requests"] == [str(request.pk)]
    assert version.runtime_filters["targets_sha256"] == prepared["targets_sha256"]
    assert AuditEvent.objects.filter(action="filters.activated").count() == 1
    text = " ".join(subprocess.run(["pdftotext", request.certificate.pdf_path, "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "Runtime filters served with the unlearned model" in text
    assert "Prompt classifier (gate)" in text and "In-context relearning probes" in text
