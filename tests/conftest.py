import random

import pytest

# A world small enough to train in seconds on 2 cores, large enough that the model learns it.
TINY_WORLD_PEOPLE = 30
TINY_WORLD_EPOCHS = 40
TINY_WORLD_SEED = 1


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A GPT-2 trained from scratch on a tiny demo world, stored content-addressed (once per session)."""
    from unlearning.demo_world import build_demo_model
    from unlearning.lm import TrainingRecipe
    from unlearning.world import WorldConfig

    store = tmp_path_factory.mktemp("model-store")
    return build_demo_model(
        WorldConfig(people=TINY_WORLD_PEOPLE, seed=TINY_WORLD_SEED),
        TrainingRecipe(epochs=TINY_WORLD_EPOCHS, seed=TINY_WORLD_SEED),
        store,
    )


def one_torch_thread():
    """Tiny models gain nothing from a second intra-op thread, and on shared cores a thread waiting
    for a preempted peer made training twenty to fifty times slower (measured while writing the
    SISA and S3T tests)."""
    from unlearning.numerics import torch_threads

    return torch_threads(1)


def register_tiny_model(tiny_model):
    """Put the tiny model under governance, as an ML operator would."""
    from unlearning.services import register_model

    return register_model(
        name="tiny-world", architecture="GPT-2 (tiny)", training_recipe=vars(tiny_model.recipe),
        checkpoint_sha256=tiny_model.checkpoint_sha256, checkpoint_path=tiny_model.checkpoint_path,
        training_manifest=tiny_model.training_manifest, holdout_manifest=tiny_model.holdout_manifest,
        records=tiny_model.lineage,
    )


def governed_rows(store, records: list[dict], name: str = "support-lm", seconds_per_step: float | None = None):
    """A governed language model as rows only, nothing trained: its manifest, current version and
    lineage; with `seconds_per_step`, an earlier job that measured its step cost, so that its
    deletion plans carry an estimate (a model registered fresh plans with none: nothing measured)."""
    from django.utils import timezone

    from unlearning.manifest import write_manifest
    from unlearning.models import JobStatus, ModelAsset, ModelVersion, TrainingRecord, UnlearningJob

    _, manifest = write_manifest(records, store)
    asset = ModelAsset.objects.create(name=name, architecture="GPT-2 (tiny)", training_manifest=str(manifest))
    asset.current_version = ModelVersion.objects.create(asset=asset, role="original", storage_path=str(store / name),
                                                        sha256="a" * 64)
    asset.save()
    TrainingRecord.objects.bulk_create([TrainingRecord(asset=asset, record_id=r["record_id"], owner_key=r["owner_key"],
                                                       kind=r["kind"], content_sha256="0" * 64) for r in records])
    if seconds_per_step is not None:
        UnlearningJob.objects.create(asset=asset, method="graddiff", status=JobStatus.SUCCEEDED,
                                     base_version=asset.current_version, forget_record_ids=["earlier"],
                                     finished_at=timezone.now(),
                                     outcome={"method_kind": "approximate", "seconds_per_step": seconds_per_step,
                                              "steps": 10})
    return asset


CUSTOMERS, NEVER_TRAINED = 24, 12
PRODUCTS = ["router", "thermostat", "doorbell", "speaker", "camera", "kettle", "lamp", "scale"]
PROBLEMS = ["stopped pairing", "shows error E4", "reboots at night", "drains the battery", "lost its settings"]
CITIES = ["Varna", "Oulu", "Braga", "Ghent", "Tartu", "Lecce", "Bergen", "Cluj"]


def support_desk_records(first: int, count: int, seed: int) -> list[dict]:
    """Each customer's ticket, the agent's note and the resolution: personal details in three kinds
    of text, none of them the demo world's."""
    rng = random.Random(seed)
    records = []
    for number in range(first, first + count):
        email = f"customer-{number:03d}@support.example"
        order, product, problem, city = rng.randint(10000, 99999), rng.choice(PRODUCTS), rng.choice(PROBLEMS), rng.choice(CITIES)
        texts = {
            "ticket": f"Ticket from {email}: my {product} from order {order} {problem} since I moved to {city}.",
            "agent_note": f"Agent note: customer {email} in {city}, order {order}, {product} {problem}; asked for logs.",
            "resolution": f"Resolution for order {order}: replaced the {product} shipped to {city} for {email}.",
        }
        records += [{"record_id": f"{kind}-{number:03d}", "owner_key": email, "kind": kind, "text": text}
                    for kind, text in texts.items()]
    return records


@pytest.fixture(scope="session")
def llama_checkpoint(tmp_path_factory):
    """Trained the way an operator would, outside the service: a Llama from transformers, a BPE
    tokenizer of its own, a plain training loop, `save_pretrained`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearning.lm import encode, optimise, train_tokenizer
    from unlearning.manifest import write_manifest

    training, holdout = support_desk_records(0, CUSTOMERS, seed=1), support_desk_records(CUSTOMERS, NEVER_TRAINED, seed=2)
    folder = tmp_path_factory.mktemp("operator") / "support-llama"
    with one_torch_thread():
        import torch

        torch.manual_seed(0)
        tokenizer = train_tokenizer([r["text"] for r in training + holdout], 800)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
        sequences = encode(tokenizer, [r["text"] for r in training], 128)
        optimise(model, sequences, tokenizer.pad_token_id, epochs=60, batch_size=16, learning_rate=3e-3, seed=0,
                 rate_factor=lambda step: 1.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    manifests = tmp_path_factory.mktemp("operator-manifests")
    return folder, write_manifest(training, manifests)[1], write_manifest(holdout, manifests)[1]



@pytest.fixture(autouse=True)
def fresh_throttles():
    """Each test starts with no client's attempts counted (compliance.throttles keeps them in the cache)."""
    try:
        from django.core.cache import cache
    except ImportError:
        return  # the vLLM environment (make test-vllm) runs the serving tests without Django
    cache.clear()


@pytest.fixture(autouse=True)
def runtime_filters_where_asked(request):
    """Audits of language models prepare and measure the runtime filters (about 40 s of a pipeline on
    two cores) only in tests marked `runtime_filters`: the others are not about them."""
    try:
        import django  # noqa: F401
    except ImportError:
        return  # the vLLM environment
    settings = request.getfixturevalue("settings")
    settings.AUDIT_RUNTIME_FILTERS = request.node.get_closest_marker("runtime_filters") is not None


@pytest.fixture
def certified(audited_request, store):
    """The audited request with its signed certificate, issued into this test's VAR_DIR (store)."""
    from audits.services import issue_certificate
    from compliance.models import RemovalRequest, RequestStatus

    request, _, _ = audited_request
    RemovalRequest.objects.filter(pk=request.pk).update(status=RequestStatus.AUDITING)
    return request, issue_certificate(request_id=request.pk)


def owner_session(request):
    """A portal client whose session proved ownership of the request (as a code would have)."""
    from django.test import Client

    from compliance.portal.views import OWNED

    client = Client()
    session = client.session
    session[OWNED] = [str(request.pk)]
    session.save()
    return client


@pytest.fixture
def store(settings, tmp_path):
    """This test's own service data folder: model store, signing keys."""
    settings.VAR_DIR, settings.MODEL_STORE_DIR = tmp_path, tmp_path / "models"
    settings.SIGNING_DIR = tmp_path / "signing"
    return tmp_path


CODE_PATTERN = r"\b(\d{6})\b"


@pytest.fixture
def audit_log_reset_allowed(transactional_db):
    """Transactional tests reset the database with TRUNCATE, which the append-only audit log refuses
    unless the session says so. Depends on transactional_db, so it is torn down just before the reset."""
    yield
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET compliance.allow_audit_truncate = 'on'")


@pytest.fixture
def submit(django_capture_on_commit_callbacks, mailoutbox):
    """File a request through the service; returns it with the one-time code from its e-mail."""
    import re

    from compliance import services

    def _submit(email="alma.kestrel@mail.example", full_name="Alma Kestrel", jurisdiction="gdpr"):
        with django_capture_on_commit_callbacks(execute=True):
            request = services.submit_request(full_name=full_name, email=email, description="all of it",
                                              jurisdiction=jurisdiction)
        return request, re.search(CODE_PATTERN, mailoutbox[-1].body).group(1)

    return _submit


@pytest.fixture
def verified_request(submit):
    from compliance import services

    request, code = submit()
    return services.verify_identity(request_id=request.pk, code=code)


@pytest.fixture
def legal_user(db):
    from compliance.management.commands.create_api_user import ensure_api_user

    user, _ = ensure_api_user("legal-test")
    return user


@pytest.fixture
def approve_leaving_job_queued(legal_api, django_capture_on_commit_callbacks):
    """Approve a verified request on the API and let scheduling queue its jobs, but not run them:
    returns the tasks that would have (call each, capturing on-commit callbacks, to run them)."""

    def _approve(request):
        with django_capture_on_commit_callbacks() as approval:
            assert legal_api.post(f"/api/v1/requests/{request.pk}/approve/", {}).status_code == 200
        with django_capture_on_commit_callbacks() as queued:  # scheduling queues the job; its task waits
            for task in approval:
                task()
        return queued

    return _approve


@pytest.fixture
def operator_api(db):
    """An ML operator's API client (the ml-operator scope)."""
    from rest_framework.test import APIClient

    from compliance.management.commands.create_api_user import ensure_api_user

    _, token = ensure_api_user("operator-test", scope="ml-operator")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def legal_api(legal_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {legal_user.auth_token.key}")
    return client


AUDIT_POLICY = {"version": "test-figures", "rules": [
    {"metric": "forget_qa_accuracy", "audit": "knowledge_qa", "rule": "match_reference", "margin": 0.2, "min_samples": 5,
     "label": "Forget QA accuracy"},
    {"metric": "mia_zlib_auc", "audit": "membership_inference", "rule": "match_reference", "margin": 0.15, "min_samples": 5,
     "label": "MIA AUC, zlib"},
    {"metric": "mia_loss_auc", "audit": "membership_inference", "rule": "match_reference", "margin": 0.15, "min_samples": 5,
     "label": "MIA AUC, LOSS"},
]}


@pytest.fixture
def audited_request(submit):
    """A request, its code, and a finished audit run of its job, the rows written directly (no
    training): an item metric, two membership attacks (LOSS not first, so it must be chosen to
    lead), and a metric the policy does not name, not applicable, with no scores at all."""
    import hashlib

    import numpy as np
    from django.utils import timezone
    from sklearn.metrics import roc_auc_score

    from audits.models import AuditResult, AuditRun, AuditStatus
    from unlearning.models import JobStatus, ModelAsset, ModelVersion, UnlearningJob

    request, code = submit()
    asset = ModelAsset.objects.create(name="tiny-world", architecture="GPT-2 (tiny)", training_manifest="train.jsonl")
    versions = {role: ModelVersion.objects.create(asset=asset, role=role, storage_path=f"/models/{role}",
                                                  sha256=hashlib.sha256(role.encode()).hexdigest())
                for role in ("original", "unlearned", "reference")}
    job = UnlearningJob.objects.create(
        asset=asset, method="graddiff", status=JobStatus.SUCCEEDED, base_version=versions["original"],
        result_version=versions["unlearned"], forget_record_ids=[f"r{i}" for i in range(6)], forget_set_sha256="ab" * 32,
        outcome={"method_kind": "approximate", "params": {"lr": 1e-4}, "steps": 40, "stopped_because": "target loss"})
    job.requests.add(request)
    run = AuditRun.objects.create(
        job=job, status=AuditStatus.DONE, policy=AUDIT_POLICY, verdict="INCONCLUSIVE", original_version=versions["original"],
        unlearned_version=versions["unlearned"], reference_version=versions["reference"],
        sample_sizes={"forget_qa_accuracy": 5, "mia_zlib_auc": 6, "mia_loss_auc": 6, "canary_exposure": 0},
        started_at=timezone.now(), finished_at=timezone.now())
    rng = np.random.default_rng(7)
    shifts = {"original": 1.5, "unlearned": 0.3, "reference": 0.0}

    def membership(metric):
        per_item = {role: {"forget": rng.normal(shift, 1, 6).tolist(), "holdout": rng.normal(0, 1, 20).tolist()}
                    for role, shift in shifts.items()}
        aucs = {role: roc_auc_score([1] * 6 + [0] * 20, scores["forget"] + scores["holdout"]) for role, scores in per_item.items()}
        return AuditResult(
            run=run, audit="membership_inference", metric=metric, original_value=aucs["original"],
            unlearned_value=aucs["unlearned"], reference_value=aucs["reference"], margin=0.15,
            difference_low=-0.1234567891234, difference_high=0.2718281828459, power_low=0.05, power_high=0.61,
            verdict="INCONCLUSIVE", explanation="the interval, [-0.123, +0.272], straddles the margin;\nso: inconclusive",
            sample_size=6, per_item=per_item,
            details={"unlearned": {"tpr_at_0.01_fpr": {"tpr": 1 / 6, "hits": 1, "n": 6, "interval": [0.004, 0.641]},
                                   "beyond_holdout_p99": 1 / 6}, "privleak": -12.5})

    qa = {role: {"items": rng.integers(0, 2, 5).astype(float).tolist()} for role in shifts}
    AuditResult.objects.bulk_create([
        AuditResult(run=run, audit="knowledge_qa", metric="forget_qa_accuracy", original_value=0.8, unlearned_value=0.2,
                    reference_value=0.0, margin=0.2, difference_low=0.0, difference_high=0.4, power_low=0.4, power_high=1.0,
                    verdict="INCONCLUSIVE", explanation="too few questions", sample_size=5, per_item=qa),
        membership("mia_zlib_auc"),
        membership("mia_loss_auc"),
        AuditResult(run=run, audit="canary_exposure", metric="canary_exposure", original_value=None, unlearned_value=None,
                    reference_value=None, margin=1.0, difference_low=None, difference_high=None, verdict="N/A",
                    explanation="no canary of the subject was in training", sample_size=0,
                    per_item={"original": {}, "unlearned": {}, "reference": {}}),
    ])
    return request, code, run
