"""The legal team's audit endpoints: runs with their results, and each run's exports."""

import csv
import io
import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.test_api import assert_problem

pytestmark = pytest.mark.django_db
FILES = {"results.json": "application/json", "results.csv": "text/csv; charset=utf-8", "items.csv": "text/csv; charset=utf-8"}


def test_the_list_shows_each_run_with_its_models_and_results(legal_api, audited_request):
    request, _, run = audited_request
    [listed] = legal_api.get(f"/api/v1/requests/{request.pk}/audits/").json()
    assert (listed["id"], listed["model"], listed["verdict"]) == (run.pk, "tiny-world", "INCONCLUSIVE")
    assert listed["unlearned_sha256"] == run.unlearned_version.sha256
    assert [result["metric"] for result in listed["results"]] == ["forget_qa_accuracy", "mia_zlib_auc", "mia_loss_auc", "canary_exposure"]
    canary = listed["results"][-1]
    assert canary["verdict"] == "N/A" and canary["original"] is None
    assert legal_api.get(f"/api/v1/requests/{request.pk}/").json()["audits"][0]["id"] == run.pk


@pytest.mark.parametrize("filename", FILES)
def test_a_legal_user_downloads_each_export(legal_api, audited_request, filename):
    request, _, run = audited_request
    response = legal_api.get(f"/api/v1/requests/{request.pk}/audits/{run.pk}/{filename}")
    assert response.status_code == 200 and response["Content-Type"] == FILES[filename]
    if filename == "results.json":
        assert response.json()["run"] == run.pk
    else:
        assert len(list(csv.DictReader(io.StringIO(response.content.decode())))) > 1


def test_without_a_legal_token_the_exports_are_refused(audited_request):
    request, _, run = audited_request
    url = f"/api/v1/requests/{request.pk}/audits/{run.pk}/results.csv"
    assert_problem(APIClient().get(url), 401)
    outsider = APIClient()
    outsider.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=get_user_model().objects.create(username='outsider')).key}")
    assert_problem(outsider.get(url), 403)
    assert_problem(outsider.get(f"/api/v1/requests/{request.pk}/audits/"), 403)


def test_unknown_runs_and_requests_are_404_problems(legal_api, audited_request, submit):
    request, _, run = audited_request
    other, _ = submit(email="bram@mail.example")
    for url in (f"/api/v1/requests/{request.pk}/audits/{run.pk + 1}/results.json",
                f"/api/v1/requests/{request.pk}/audits/not-a-number/items.csv",
                f"/api/v1/requests/{other.pk}/audits/{run.pk}/results.csv",  # a run of another request
                f"/api/v1/requests/{uuid.uuid4()}/audits/",
                f"/api/v1/requests/{uuid.uuid4()}/audits/{run.pk}/results.csv"):
        assert_problem(legal_api.get(url), 404, "not_found")
    assert legal_api.get(f"/api/v1/requests/{other.pk}/audits/").json() == []


def test_the_openapi_schema_lists_the_audit_endpoints():
    response = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    paths = response.json()["paths"]
    assert "/api/v1/requests/{request_id}/audits/" in paths
    for filename, content_type in FILES.items():
        operation = paths[f"/api/v1/requests/{{request_id}}/audits/{{run_id}}/{filename}"]["get"]
        assert list(operation["responses"]["200"]["content"]) == [content_type.split(";")[0]]
