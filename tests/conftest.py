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
    from compliance.management.commands.create_legal_user import ensure_legal_user

    user, _ = ensure_legal_user("legal-test")
    return user


@pytest.fixture
def legal_api(legal_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {legal_user.auth_token.key}")
    return client
