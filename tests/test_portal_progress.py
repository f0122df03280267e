"""The owner's request page: the result in one sentence first, live progress while work runs (a
fragment the page polls), and no operator's words (model names, method slugs, loss values, stop
reasons, failed-step codes) anywhere an owner reads."""

import hashlib
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audits import wording
from audits.models import AuditRun, AuditStatus
from compliance.models import RemovalRequest, RequestStatus
from tests.conftest import owner_session
from unlearning.methods import LOOP_SHARE, progress_fraction
from unlearning.models import JobStatus, ModelAsset, ModelVersion, TrainingRecord, UnlearningJob

pytestmark = pytest.mark.django_db
ASSET = "demo-world-lm"
OPERATORS_WORDS = (ASSET, "graddiff", "forget loss", "step 5", "reached_target_forget_loss", "max_steps",
                   "utility_floor", "stopped_because", "(scope)", "scoring the", "What the tests found")


def fragment(client, request) -> str:
    return " ".join(client.get(f"/requests/{request.pk}/progress/").content.decode().split())


def page(client, request) -> str:
    return " ".join(client.get(f"/requests/{request.pk}/").content.decode().split())


def headline(html: str) -> str:
    """The page's first sentence: the paragraph right after its title."""
    return re.search(r"</h1> <p class=\"headline\" id=\"headline\">(.*?)</p>", html).group(1)


def assert_no_operators_words(html: str) -> None:
    assert not [words for words in OPERATORS_WORDS if words in html], html


def running_job(request, status=RequestStatus.UNLEARNING, **job) -> UnlearningJob:
    """A model with its original version and a job of the request on it (rows written directly: no training)."""
    asset = ModelAsset.objects.create(name=ASSET, architecture="GPT-2 (tiny)", training_manifest="train.jsonl")
    original = ModelVersion.objects.create(asset=asset, role="original", storage_path="/models/original",
                                           sha256=hashlib.sha256(b"original").hexdigest())
    asset.current_version = original
    asset.save()
    job = UnlearningJob.objects.create(asset=asset, method="graddiff", base_version=original, **{
        "status": JobStatus.RUNNING, "started_at": timezone.now(), "attempts": 1, **job})
    job.requests.add(request)
    RemovalRequest.objects.filter(pk=request.pk).update(status=status)
    return job


def finished(job) -> UnlearningJob:
    unlearned = ModelVersion.objects.create(asset=job.asset, role="unlearned", storage_path="/models/unlearned",
                                            sha256=hashlib.sha256(b"unlearned").hexdigest())
    job.status, job.result_version, job.progress, job.finished_at = JobStatus.SUCCEEDED, unlearned, 1.0, timezone.now()
    job.outcome = {"method_kind": "approximate", "steps": 5, "stopped_because": "reached_target_forget_loss"}
    job.save()
    return job


def test_the_progress_fragment_is_its_owners_only(verified_request, submit):
    assert owner_session(verified_request).get(f"/requests/{verified_request.pk}/progress/").status_code == 200
    other, _ = submit(email="bram@mail.example", full_name="Bram")
    for client in (Client(), owner_session(other)):
        assert client.get(f"/requests/{verified_request.pk}/progress/").status_code == 404


def test_a_running_job_shows_its_fraction_as_a_percentage_without_the_workers_words(verified_request):
    running_job(verified_request, progress=0.033, progress_message="epoch 1, step 5: forget loss 0.539 (target 2.10)")
    owner = owner_session(verified_request)
    live = fragment(owner, verified_request)
    assert "Removing your data from Model 1 (a text-generation model): <strong>3%</strong>" in live
    assert "0%" not in live
    assert live.startswith('<div class="live" data-status="unlearning" data-final="no"> <p class="headline" '
                           'id="headline">We are removing your data')
    html = page(owner, verified_request)
    assert 'aria-live="polite"' in html and f'data-url="/requests/{verified_request.pk}/progress/"' in html
    assert "<script>" in html and "setTimeout(poll, 3000)" in html
    for text in (live, html):
        assert_no_operators_words(text)


def test_the_audit_shows_its_stage_and_progress(verified_request):
    job = finished(running_job(verified_request, status=RequestStatus.AUDITING))
    AuditRun.objects.create(job=job, status=AuditStatus.RUNNING, attempts=1, started_at=timezone.now(), progress=0.45,
                            progress_message="scoring the unlearned model (2 of 3)")
    live = fragment(owner_session(verified_request), verified_request)
    assert "We are checking that your data is gone" in live
    assert "Removing your data from Model 1 (a text-generation model): done" in live
    assert ("Testing that your data is gone from Model 1 (a text-generation model): <strong>45%</strong> · "
            "Testing the model after the change") in live
    assert "Signing your certificate: not started yet" in live
    assert_no_operators_words(live)


def test_once_every_audit_is_done_the_certificate_is_being_signed(verified_request):
    job = finished(running_job(verified_request, status=RequestStatus.AUDITING))
    AuditRun.objects.create(job=job, status=AuditStatus.DONE, attempts=1, verdict="PASS", progress=1.0,
                            started_at=timezone.now() - timedelta(minutes=3), finished_at=timezone.now())
    live = fragment(owner_session(verified_request), verified_request)
    assert "Testing that your data is gone from Model 1 (a text-generation model): done" in live
    assert "Signing your certificate: <strong>in progress</strong>" in live
    assert "less than a minute left" in live  # only the signing is left


def test_time_left_comes_from_the_deletion_plan_the_audits_and_the_time_spent(verified_request):
    job = running_job(verified_request, params={"max_steps": 200}, progress=0.1,
                      started_at=timezone.now() - timedelta(seconds=60))
    TrainingRecord.objects.create(asset=job.asset, record_id="r1", owner_key=verified_request.subject_key,
                                  kind="biography", content_sha256="0" * 64)
    earlier = UnlearningJob.objects.create(asset=job.asset, method="graddiff", status=JobStatus.SUCCEEDED,
                                           finished_at=timezone.now(), outcome={"seconds_per_step": 0.6})
    owner = owner_session(verified_request)
    # 200 steps at 0.6 s, 60 s of them spent; an audit never measured on this model (240 s); signing (15 s).
    assert "We are removing your data: about 5 minutes left." in fragment(owner, verified_request)

    past = timezone.now() - timedelta(minutes=10)
    AuditRun.objects.create(job=earlier, status=AuditStatus.DONE, started_at=past, finished_at=past + timedelta(seconds=60))
    # A measured audit of a minute instead: 60 + 60 + 15.
    assert "We are removing your data: about 2 minutes left." in fragment(owner, verified_request)

    UnlearningJob.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(minutes=10), progress=0.01)
    assert "We are removing your data: it is taking longer than expected." in fragment(owner, verified_request)


def test_the_certified_page_answers_first_whether_the_data_is_gone(certified):
    request, _ = certified
    owner = owner_session(request)
    html = page(owner, request)
    # Its audit run is INCONCLUSIVE, its method approximate (a suppression), its policy without families.
    assert headline(html) == (
        "Our model was made to suppress what it learned from you, but our tests could neither confirm nor rule out "
        "remaining traces, because some results were too close to call, or there was too little of your data to decide.")
    assert "Model 1 (a text-generation model): A membership test picks one of your texts over a text the model never saw" in html
    assert html.index('id="headline"') < html.index("<details>") < html.index("Does it still answer questions about you")
    assert "Does it still answer questions about you correctly? <span class=\"muted\">— knowledge, QA accuracy</span>" in html
    assert "too few questions" in html and ' title="' not in html  # the reasons are in the table, not in tooltips
    assert f'href="/requests/{request.pk}/certificate.pdf">Download your certificate (PDF)' in html
    assert 'data-final="yes"' in html and "<script>" not in html  # nothing left to poll
    for text in (html, fragment(owner, request)):
        assert_no_operators_words(text)
        assert "tiny-world" not in text and "graddiff" not in text and "target loss" not in text


def test_a_proven_removal_says_the_data_is_gone(audited_request, store):
    from audits.services import issue_certificate

    request, _, run = audited_request
    run.verdict, run.verdict_basis = "PASS", "identity"
    run.save()
    UnlearningJob.objects.filter(pk=run.job_id).update(outcome={"method_kind": "exact", "steps": 12, "params": {},
                                                                "stopped_because": "deletion plan executed"})
    RemovalRequest.objects.filter(pk=request.pk).update(status=RequestStatus.AUDITING)
    issue_certificate(request_id=request.pk)
    html = page(owner_session(request), request)
    assert headline(html) == "Your data has been removed from our model, and tests confirm it is gone."
    assert "your data is gone, proven" in html


def test_failed_no_data_and_waiting_requests_read_plainly(verified_request):
    RemovalRequest.objects.filter(pk=verified_request.pk).update(
        status=RequestStatus.FAILED, failed_step="scope", failure_reason="WorkerLost: attempt 3 of 3 on host-7")
    owner = owner_session(verified_request)
    html = page(owner, verified_request)
    assert headline(html).startswith("We could not complete your request: an error stopped the work.")
    assert "host-7" not in html and "scope" not in html

    RemovalRequest.objects.filter(pk=verified_request.pk).update(status=RequestStatus.NO_DATA)
    assert headline(page(owner, verified_request)).startswith("We searched the training data of every model we govern")

    RemovalRequest.objects.filter(pk=verified_request.pk).update(status=RequestStatus.INFO_REQUESTED,
                                                                 hold_reason="Which city did you live in?")
    html = page(owner, verified_request)
    assert headline(html) == "We need more information from you before we can decide: Which city did you live in?"
    assert f'action="/requests/{verified_request.pk}/answer/"' in html


@pytest.mark.parametrize("target", [2.0, None])
def test_an_approximate_runs_progress_only_grows_and_reaches_its_share_at_the_target(target):
    losses = [1.0, 1.2, 1.1, 1.6, 1.5, 2.0]  # the forget loss dips on the way
    history, reported = [], []
    for step, loss in enumerate(losses):
        history.append({"step": step * 5, "forget_loss": loss})
        reported.append(progress_fraction(history, target, step * 5 / 300))
    assert reported == sorted(reported) and 0 <= reported[0] and reported[-1] <= LOOP_SHARE
    if target is None:
        assert reported[-1] == pytest.approx(LOOP_SHARE * 25 / 300)  # the step budget spent
    else:
        assert reported[3] == pytest.approx(LOOP_SHARE * 0.6) and reported[4] == reported[3]
        assert reported[-1] == pytest.approx(LOOP_SHARE)  # the target reached, 25 steps of 300 spent


MEMBERSHIP = {"family": "membership", "verdict": "FAIL", "counted": True}


@pytest.mark.parametrize("verdict, nature, families, sentence", [
    ("PASS", "suppression", [], "Our model no longer shows what it learned from you (it was made to suppress it), "
                                "and tests confirm it."),
    ("INCONCLUSIVE", "removal", [{"family": "knowledge", "verdict": "INCONCLUSIVE", "counted": False}],
     "Your data has been removed from our model, but our tests could neither confirm nor rule out remaining traces, "
     "because there is too little of your data for the knowledge tests to decide."),
    ("FAIL", "suppression", [MEMBERSHIP, {**MEMBERSHIP, "family": "extraction"}],
     "Our model was made to suppress what it learned from you, but tests still find traces of your data (membership "
     "and extraction tests), so we do not consider the work finished: our certificate records this result, and you "
     "may file a new request for us to try again."),
])
def test_the_headline_says_in_one_sentence_whether_the_data_is_gone(verdict, nature, families, sentence):
    assert wording.headline(verdict, nature, families=families) == sentence
