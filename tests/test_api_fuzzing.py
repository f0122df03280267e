"""The REST API fuzzed from its own OpenAPI schema by schemathesis, over HTTP against the live
server, as each role (legal, auditor, ML operator, anonymous): no 5xx, every error a problem+json
body, every response's status, content type, headers and body as the schema documents them (each
operation's 4xx included: compliance.api.schema lists them, and an answer it does not list fails). The
path parameters point at real objects (a certified request with its audit run and certificate, a
verified one, a job, a model, a registration) so the generated queries and bodies reach the views'
logic rather than stopping at a 404."""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from compliance.management.commands.create_api_user import ensure_api_user

pytestmark = pytest.mark.django_db(transaction=True)
ROLES = ("legal", "auditor", "ml-operator", "anonymous")
PROBLEM_FIELDS = {"type", "title", "status", "detail"}
EXAMPLES_PER_OPERATION = 10
# Seconds a call may take. Tasks run in the request here (no broker): approving the verified request
# that no model holds issues its no-data statement (a signed PDF) before it answers, past
# schemathesis's 10 s default on a busy 2-core machine. A limit on hangs, not a latency test.
CALL_TIMEOUT = 60


def problem_json(ctx, response, case):
    """Every 4xx answers RFC 9457 problem+json with its fields, its status the response's."""
    if 400 <= response.status_code < 500:
        assert response.headers.get("content-type", [""])[0].startswith("application/problem+json"), response.headers
        body = response.json()
        assert PROBLEM_FIELDS <= set(body) and body["status"] == response.status_code, body


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, problem_json]


@pytest.fixture
def api_schema(live_server, audit_log_reset_allowed):
    return schemathesis.openapi.from_url(f"{live_server.url}/api/v1/schema/")


@pytest.fixture
def objects(certified, submit):
    """Real ids for every path parameter the schema has."""
    from compliance import services
    from unlearning.models import ModelRegistration

    request, certificate = certified
    run = certificate.audit_run
    verified, code = submit(email="bram.other@mail.example", full_name="Bram Other")
    services.verify_identity(request_id=verified.pk, code=code)
    registration = ModelRegistration.objects.create(name="pending-model", checkpoint_source="x.tar.gz",
                                                    training_manifest="train.jsonl", holdout_manifest="holdout.jsonl",
                                                    requested_by="operator")
    return {"request_id": [str(request.pk), str(verified.pk)], "run_id": [str(run.pk)], "job_id": [str(run.job_id)],
            "name": [run.job.asset.name], "registration_id": [str(registration.pk)]}


@pytest.fixture
def role_headers(db) -> dict[str, dict]:
    """Each role's headers: a token of its scope, none for anonymous."""
    return {role: {} if role == "anonymous" else {"Authorization": f"Token {ensure_api_user(f'fuzz-{role}', role)[1].key}"}
            for role in ROLES}


def test_the_api_holds_its_schema_and_answers_every_error_as_a_problem(api_schema, objects, role_headers):
    """Each operation's generated cases (schemathesis's strategies, driven by hypothesis here: its
    pytest plugin does not run under this pytest), each case sent as every role."""
    failures = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None, phases=[Phase.generate])  # no shrinking: calls change state
        def holds(case):
            for parameter, real in objects.items():
                if case.path_parameters and parameter in case.path_parameters:
                    case.path_parameters[parameter] = real[len(str(case.body)) % len(real)]
            for headers in role_headers.values():  # the same case as every role
                case.call_and_validate(headers=headers, checks=CHECKS, timeout=CALL_TIMEOUT)

        try:
            holds()
        except BaseExceptionGroup as failure:  # schemathesis reports its failures as a group: collect every operation's
            failures[operation.label] = "\n".join(str(part)[:2000] for part in failure.exceptions)
    assert not failures, "\n\n".join(f"{label}:\n{failure}" for label, failure in failures.items())
