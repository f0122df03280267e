"""Lineage: from a verified identity to the training records of each governed model, and to jobs."""

import pytest

from compliance import services
from compliance.models import RequestStatus
from unlearning import services as unlearning_services
from unlearning.models import JobStatus, TrainingRecord, UnlearningJob
from unlearning.selectors import assets_holding, forget_record_ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def governed(tiny_model, db):
    return unlearning_services.register_model(
        name="tiny", architecture="GPT-2", training_recipe={}, checkpoint_sha256=tiny_model.checkpoint_sha256,
        checkpoint_path=tiny_model.checkpoint_path, training_manifest=tiny_model.training_manifest,
        holdout_manifest=tiny_model.holdout_manifest, records=tiny_model.lineage,
    )


def approved(submit, legal_user, person):
    request, code = submit(email=person.email, full_name=person.name)
    services.verify_identity(request_id=request.pk, code=code)
    return services.approve_request(request_id=request.pk, user=legal_user)


def test_an_owner_key_resolves_to_exactly_their_records(tiny_model, governed):
    person = tiny_model.world.trained_people[0]
    expected = sorted(r.record_id for r in tiny_model.world.person_records(person, include_canary=person.canary_inserted))
    assert assets_holding(person.owner_key) == [(governed, len(expected))]
    assert forget_record_ids(governed, [person.owner_key]) == expected
    assert assets_holding(tiny_model.world.holdout_people[0].owner_key) == []
    assert TrainingRecord.objects.filter(asset=governed, owner_key="").count() > 0  # general text: no owner


def test_scheduling_queues_one_job_and_is_safe_to_repeat(tiny_model, governed, submit, legal_user):
    request = approved(submit, legal_user, tiny_model.world.trained_people[0])
    request = unlearning_services.schedule_request(request_id=request.pk)
    assert request.status == RequestStatus.SCHEDULED
    unlearning_services.schedule_request(request_id=request.pk)
    job = UnlearningJob.objects.get()
    assert job.status == JobStatus.QUEUED and list(job.requests.all()) == [request]


def test_requests_for_one_model_are_batched_into_its_queued_job(tiny_model, governed, submit, legal_user):
    first = approved(submit, legal_user, tiny_model.world.trained_people[0])
    second = approved(submit, legal_user, tiny_model.world.trained_people[1])
    unlearning_services.schedule_request(request_id=first.pk)
    unlearning_services.schedule_request(request_id=second.pk)
    job = UnlearningJob.objects.get()
    assert {r.pk for r in job.requests.all()} == {first.pk, second.pk}


def test_claiming_freezes_the_forget_set_and_only_one_claim_wins(tiny_model, governed, submit, legal_user):
    people = tiny_model.world.trained_people[:2]
    for person in people:
        unlearning_services.schedule_request(request_id=approved(submit, legal_user, person).pk)
    job = UnlearningJob.objects.get()
    claimed = unlearning_services.claim_job(job.pk)
    assert unlearning_services.claim_job(job.pk) is None  # a second delivery of the task does nothing
    assert claimed.forget_record_ids == forget_record_ids(governed, [p.owner_key for p in people])
    assert claimed.base_version == governed.current_version and len(claimed.forget_set_sha256) == 64
    assert {r.status for r in job.requests.all()} == {RequestStatus.UNLEARNING}


def test_a_models_next_job_waits_for_its_running_job_and_starts_when_it_ends(
        tiny_model, governed, submit, legal_user, django_capture_on_commit_callbacks):
    first, second = tiny_model.world.trained_people[:2]
    unlearning_services.schedule_request(request_id=approved(submit, legal_user, first).pk)
    running = unlearning_services.claim_job(UnlearningJob.objects.get().pk)
    unlearning_services.schedule_request(request_id=approved(submit, legal_user, second).pk)  # a new job: the first has started
    waiting = UnlearningJob.objects.get(status=JobStatus.QUEUED)
    # Run at once, both would start from the same version and the later result would undo the other.
    assert unlearning_services.claim_job(waiting.pk) is None
    waiting.refresh_from_db()
    assert waiting.status == JobStatus.QUEUED and waiting.attempts == 0
    with django_capture_on_commit_callbacks() as callbacks:
        unlearning_services.fail_job(job_id=running.pk, step="unlearning", error="worker lost")
    sends = [callback for callback in callbacks if callback.__qualname__.startswith("enqueue.")]
    assert len(sends) == 1  # the waiting job is sent to the workers once the running one has ended (beside: e-mails)
    assert unlearning_services.claim_job(waiting.pk).base_version == governed.current_version


def test_a_verified_identity_without_records_is_sent_to_the_no_data_statement(
        governed, submit, legal_user, tiny_model, django_capture_on_commit_callbacks):
    """Not a failure: the statement that no model holds the person follows (tests/test_no_data_outcome.py)."""
    approval = approved(submit, legal_user, tiny_model.world.holdout_people[0])
    with django_capture_on_commit_callbacks() as callbacks:
        request = unlearning_services.schedule_request(request_id=approval.pk)
    assert request.status == RequestStatus.APPROVED and not request.failed_step
    assert not UnlearningJob.objects.exists()
    assert [callback.__qualname__ for callback in callbacks] == ["enqueue.<locals>.<lambda>"]
