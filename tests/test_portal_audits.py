"""The request page's audit figures and downloads: its owner gets them, anyone else a 404."""

import csv
import io
import json
import re

import pytest
from django.test import Client

from audits.models import AuditStatus

pytestmark = pytest.mark.django_db
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def owner_of(request, code) -> Client:
    owner = Client()
    owner.post(f"/requests/{request.pk}/verify/", {"code": code})
    return owner


def figure_and_download_urls(page: str) -> tuple[list[str], list[str]]:
    return re.findall(r'<img src="([^"]+\.png)"', page), re.findall(r'class="download" href="([^"]+)"', page)


def test_the_owner_sees_the_figures_and_downloads_the_numbers(audited_request):
    request, code, run = audited_request
    owner = owner_of(request, code)
    page = owner.get(f"/requests/{request.pk}/").content.decode()
    figures, downloads = figure_and_download_urls(page)
    assert figures[0] == f"/requests/{request.pk}/audits/{run.pk}/figures/roc-mia_loss_auc.png"
    assert len(figures) == 6 and "dashed diagonal means they look like" in page
    for url in figures:
        response = owner.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert response.content.startswith(PNG_SIGNATURE)

    assert [url.rsplit("/", 1)[1] for url in downloads] == ["results.json", "results.csv", "items.csv"]
    document = owner.get(downloads[0])
    assert document["Content-Type"] == "application/json"
    assert f'filename="audit-run-{run.pk}-results.json"' in document["Content-Disposition"]
    assert json.loads(document.content)["model_sha256"]["unlearned"] == run.unlearned_version.sha256
    for url in downloads[1:]:
        response = owner.get(url)
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert next(csv.reader(io.StringIO(response.content.decode())))[0] == "metric"


def test_another_owner_or_anyone_else_gets_404_for_every_figure_and_download(audited_request, submit):
    request, code, _ = audited_request
    figures, downloads = figure_and_download_urls(owner_of(request, code).get(f"/requests/{request.pk}/").content.decode())
    another_owner = owner_of(*submit(email="bram@mail.example", full_name="Bram"))
    for client in (another_owner, Client()):
        assert all(client.get(url).status_code == 404 for url in figures + downloads)


def test_unknown_figures_files_and_unfinished_runs_are_404(audited_request):
    request, code, run = audited_request
    owner = owner_of(request, code)
    base = f"/requests/{request.pk}/audits/{run.pk}"
    assert owner.get(f"{base}/figures/roc-canary_exposure.png").status_code == 404  # no scores, no figure
    assert owner.get(f"{base}/figures/roc-unknown.png").status_code == 404
    assert owner.get(f"{base}/secrets.txt").status_code == 404
    assert owner.get(f"/requests/{request.pk}/audits/{run.pk + 1}/results.csv").status_code == 404
    run.status = AuditStatus.RUNNING
    run.save()
    assert owner.get(f"{base}/results.json").status_code == 404
    assert owner.get(f"{base}/figures/roc-mia_loss_auc.png").status_code == 404
    assert "/figures/" not in owner.get(f"/requests/{request.pk}/").content.decode()


@pytest.mark.parametrize("after, sentence", [
    ({"rank": 18, "p_member": 0.35, "p_over": 0.67},
     "now you are number 18 of 51: this test finds no sign that it knows you better than people it never saw"),
    ({"rank": 1, "p_member": 0.0196, "p_over": 1.0}, "it still knows you better than almost everyone it never saw"),
    ({"rank": 51, "p_member": 1.0, "p_over": 0.0196}, "less familiar to it than almost everyone it never saw"),
])
def test_the_owner_reads_where_they_rank_among_people_the_model_never_saw(audited_request, after, sentence):
    """The combined person-level statistic (audits.persons), for this owner's pseudonym, in words."""
    from audits.models import AuditResult
    from compliance.auditlog import subject_ref

    request, code, run = audited_request
    ranks = {"original": {"rank": 1, "p_member": 0.02, "p_over": 1.0}, "unlearned": after}
    AuditResult.objects.create(
        run=run, audit="membership_inference", metric="mia_person_rank", verdict="PASS", margin=0.025, sample_size=1,
        per_item={}, details={role: {"population": 50, "subjects": {subject_ref(request.email): {
            "p_member": 1.0, "p_over": 1.0, "attacks": 7, "combined": {**rank, "population": 50, "score": 0.5}}}}
            for role, rank in ranks.items()})
    page = " ".join(owner_of(request, code).get(f"/requests/{request.pk}/").content.decode().split())
    assert "Among you and the 50 people this model was never trained on" in page
    assert "before unlearning you were number 1;" in page and sentence in page


def test_in_a_job_of_several_people_the_owner_sees_their_own_verdict_not_the_worst_one(audited_request):
    from audits.models import AuditResult
    from compliance.auditlog import subject_ref

    request, code, run = audited_request
    mine, other = subject_ref(request.email), subject_ref("someone.else@mail.example")
    run.verdict = "FAIL"  # the other subject's
    family = {"family": "membership", "label": "Membership: does the model treat you as someone it was trained on?",
              "counted": True, "basis": "person"}
    run.subjects = {mine: {"verdict": "PASS", "families": [{**family, "verdict": "PASS", "explanation": "ranked 18 of 51"}]},
                    other: {"verdict": "FAIL", "families": [{**family, "verdict": "FAIL", "explanation": "ranked 1 of 51"}]}}
    run.save()
    combined = {name: {"rank": 1, "p_member": 0.02, "p_over": 1.0, "population": 50} for name in (mine, other)}
    AuditResult.objects.create(
        run=run, audit="membership_inference", metric="mia_person_rank", verdict="FAIL", margin=0.025, sample_size=2,
        explanation="1 of 2 subjects inside the band; first FAIL: ranked 1 of 51", per_item={},
        details={"unlearned": {"combined": combined},  # the row's subjects, sorted as its verdicts are
                 "subject_verdicts": [{mine: ["PASS", "mine: ranked 18 of 51"],
                                       other: ["FAIL", "theirs: ranked 1 of 51"]}[name] for name in sorted(combined)]})
    page = " ".join(owner_of(request, code).get(f"/requests/{request.pk}/").content.decode().split())
    assert 'Tests: <span class="PASS">passed</span> (PASS)' in page
    assert "ranked 18 of 51" in page and "mine: ranked 18 of 51" in page
    assert "theirs" not in page and "first FAIL" not in page
