"""ML operators choose the approximate method and its parameters for a job before it runs (API):
checked against the method's dataclass at once, named by the deletion plan; a choice that
collapses the model fails the job with its history instead of certifying a broken model."""

import pytest
from django.core.management import call_command

from compliance import services
from compliance.models import AuditEvent, RequestStatus
from tests.conftest import one_torch_thread
from unlearning.methods import METHODS
from unlearning.models import JobStatus, ModelAsset, ModelVersion, VersionRole
from unlearning.selectors import deletion_plan

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"


@pytest.fixture
def queued_job(llama_checkpoint, store, submit, approve_leaving_job_queued):
    """An approved request whose job waits in the queue, with the tasks approval would have started."""
    folder, manifest, holdout = llama_checkpoint
    call_command("register_model", name="support-llama", checkpoint=str(folder), manifest=str(manifest),
                 holdout=str(holdout))
    request, code = submit(email="customer-007@support.example", full_name="Customer Seven")
    services.verify_identity(request_id=request.pk, code=code)
    tasks = approve_leaving_job_queued(request)
    request.refresh_from_db()
    job = ModelAsset.objects.get(name="support-llama").jobs.get()
    assert job.status == JobStatus.QUEUED and job.method == "graddiff"  # the external regime's default
    return request, job, tasks


def test_operators_see_every_method_with_its_defaults(operator_api, legal_api):
    listed = {m["name"]: m for m in operator_api.get("/api/v1/methods/").json()}
    assert set(listed) == set(METHODS)
    assert listed["npo"]["defaults"]["beta"] == 0.1 and listed["simnpo"]["defaults"]["retain_weight"] == 0.125
    assert listed["undial"]["defaults"]["beta"] == 10.0 and "Dong et al." in listed["undial"]["citation"]
    assert legal_api.get("/api/v1/methods/").status_code == 403


@pytest.mark.parametrize("choice, message", [
    ({"method": "npo", "params": {"beta": "high"}}, "npo.beta must be float, not 'high'"),
    ({"method": "npo", "params": {"temperature": 1}}, "unknown parameters for npo: temperature"),
    ({"method": "forget-everything"}, "unknown unlearning method 'forget-everything'"),
    ({"method": "rmu", "params": {"learning_rate": 0}}, "learning_rate must be positive"),
    ({"params": {}}, "method"),
])
def test_a_choice_the_methods_dataclass_refuses_is_a_problem_and_changes_nothing(
        queued_job, operator_api, choice, message):
    _, job, _ = queued_job
    response = operator_api.post(f"/api/v1/jobs/{job.pk}/method/", choice, format="json")
    assert response.status_code == 400 and response["Content-Type"].startswith(PROBLEM)
    assert message in response.content.decode()
    job.refresh_from_db()
    assert (job.method, job.params) == ("graddiff", {})
    assert not AuditEvent.objects.filter(action="job.method_chosen").exists()


def test_a_learning_rate_far_too_high_fails_the_job_with_its_history(
        queued_job, operator_api, legal_api, django_capture_on_commit_callbacks):
    request, job, tasks = queued_job
    assert legal_api.post(f"/api/v1/jobs/{job.pk}/method/", {"method": "graddiff"}, format="json").status_code == 403
    response = operator_api.post(f"/api/v1/jobs/{job.pk}/method/",
                                 {"method": "graddiff", "params": {"learning_rate": 1.0}}, format="json")
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(action="job.method_chosen")
    assert event.data["resolved"]["learning_rate"] == 1.0 and event.data["resolved"]["retain_weight"] == 5.0
    job.refresh_from_db()
    plan = deletion_plan(job.asset, [request.subject_key], job=job)
    assert plan["method"] == "graddiff" and plan["estimated_steps"] == 300
    assert "Gradient difference (GradDiff) (learning rate 1)" in plan["summary"] and "at most 300 steps" in plan["summary"]

    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        for task in tasks:
            task()
    job.refresh_from_db()
    request.refresh_from_db()
    assert job.status == JobStatus.FAILED and "already crossed the utility floor" in job.error
    assert request.status == RequestStatus.FAILED
    assert not ModelVersion.objects.filter(asset=job.asset, role=VersionRole.UNLEARNED).exists()  # nothing certified
    detail = legal_api.get(f"/api/v1/jobs/{job.pk}/").json()
    start, first = detail["history"]
    assert (start["step"], first["step"]) == (0, 1) and detail["stopped_because"] == "failed"
    assert first["retain_loss"] > start["retain_loss"] * 1.25 or first.get("retained_qa", 1) < start.get("retained_qa", 1) - 0.1
    assert detail["resolved_params"]["learning_rate"] == 1.0


def test_a_running_job_takes_no_method_and_an_unknown_job_is_not_found(queued_job, operator_api):
    _, job, _ = queued_job
    type(job).objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    response = operator_api.post(f"/api/v1/jobs/{job.pk}/method/", {"method": "npo"}, format="json")
    assert response.status_code == 409 and "only while it is queued" in response.json()["detail"]
    assert operator_api.post("/api/v1/jobs/999999/method/", {"method": "npo"}, format="json").status_code == 404


def test_an_operator_chooses_the_method_in_the_admin_with_the_same_checks(queued_job, admin_client):
    _, job, _ = queued_job
    url = f"/admin/unlearning/unlearningjob/{job.pk}/method/"
    page = admin_client.get(url)
    assert page.status_code == 200 and b"Simple NPO (SimNPO)" in page.content
    refused = admin_client.post(url, {"method": "simnpo", "params": '{"beta": "x"}'})
    assert refused.status_code == 200 and b"simnpo.beta must be float" in refused.content
    job.refresh_from_db()
    assert job.method == "graddiff"
    chosen = admin_client.post(url, {"method": "simnpo", "params": '{"beta": 3.5}'})
    assert chosen.status_code == 302
    job.refresh_from_db()
    assert (job.method, job.params) == ("simnpo", {"beta": 3.5})
    assert b"choose another method" in admin_client.get(f"/admin/unlearning/unlearningjob/{job.pk}/change/").content
