"""Every URL of the web process, called as every role, against a declared table of what each role
may get. The table must name every route (a new route without a row fails here), and nothing a
role may not see reaches it: the pages and bodies it gets never carry another owner's reference,
e-mail or certificate serial. State-changing calls are made on a finished request, so the roles
allowed to make them get the lifecycle's refusal (409) and the request stays as it was.

Roles: anonymous; the data owner (a session that proved request A) and another owner (request B);
API tokens of the legal team, an auditor (reads, never changes) and an ML operator; an admin
(superuser) signed in to the admin site. The serving endpoint (/v1/, its own process and keys)
is covered by tests/test_serving_keys.py."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from compliance.management.commands.create_api_user import ensure_api_user
from compliance.models import AuditEvent, RemovalRequest, RequestStatus
from tests.conftest import owner_session

pytestmark = pytest.mark.django_db
ROLES = ("anonymous", "owner", "other_owner", "legal", "auditor", "operator", "admin")
PUBLIC = dict.fromkeys(ROLES, 200)
OWNER_ONLY = {**dict.fromkeys(ROLES, 404), "owner": 200}
API_READ = {"anonymous": 401, "owner": 401, "other_owner": 401, "legal": 200, "auditor": 200, "operator": 403, "admin": 401}
API_CHANGE = {**API_READ, "legal": 409, "auditor": 403}  # the legal team's call reaches the lifecycle, which refuses
OPERATOR_READ = {**API_READ, "legal": 403, "auditor": 403, "operator": 200}
ADMIN_PAGE = {**dict.fromkeys(ROLES, 302), "admin": 200}  # everyone else is sent to the admin's login
# The review console: session sign-in through the admin's login (token roles have none: sent there);
# the superuser is not in the legal group.
CONSOLE = {**dict.fromkeys(ROLES, 302), "admin": 403}
NOBODY = "00000000-0000-0000-0000-000000000000"

# (route name, method, path, body, expected status per role). Paths use {a} (request A, certified),
# {run}, {job}, {figure}, {serial}, {registration}.
MATRIX = [
    ("portal-home", "get", "/", None, PUBLIC),
    ("portal-access", "get", "/access/", None, PUBLIC),
    ("portal-sign-out", "get", "/sign-out/", None, dict.fromkeys(ROLES, 405)),  # a POST only (tested apart)
    ("portal-request", "get", "/requests/{a}/", None, OWNER_ONLY),
    ("portal-request-progress", "get", "/requests/{a}/progress/", None, OWNER_ONLY),
    ("portal-verify", "get", "/requests/{a}/verify/", None, PUBLIC),  # asks for a code; shows no data
    ("portal-resend", "post", "/requests/{a}/resend/", {}, dict.fromkeys(ROLES, 302)),  # mails the owner, never the caller
    ("portal-cancel", "post", "/requests/{a}/cancel/", {}, {**OWNER_ONLY, "owner": 302}),
    ("portal-answer", "post", "/requests/{a}/answer/", {"answer": "matrix"}, {**OWNER_ONLY, "owner": 302}),
    ("portal-certificate", "get", "/requests/{a}/certificate.pdf", None, OWNER_ONLY),
    ("portal-audit-figure", "get", "/requests/{a}/audits/{run}/figures/{figure}.png", None, OWNER_ONLY),
    ("portal-audit-download", "get", "/requests/{a}/audits/{run}/results.json", None, OWNER_ONLY),
    ("api-requests", "get", "/api/v1/requests/", None, API_READ),
    ("api-request", "get", "/api/v1/requests/{a}/", None, API_READ),
    ("api-request-approve", "post", "/api/v1/requests/{a}/approve/", {}, API_CHANGE),
    ("api-request-deny", "post", "/api/v1/requests/{a}/deny/", {"reason": "matrix"}, API_CHANGE),
    ("api-request-events", "get", "/api/v1/requests/{a}/events/", None, API_READ),
    ("api-request-certificate", "get", "/api/v1/requests/{a}/certificate/", None, API_READ),
    ("api-request-audits", "get", "/api/v1/requests/{a}/audits/", None, API_READ),
    ("api-audit-results-json", "get", "/api/v1/requests/{a}/audits/{run}/results.json", None, API_READ),
    ("api-audit-results-csv", "get", "/api/v1/requests/{a}/audits/{run}/results.csv", None, API_READ),
    ("api-audit-items-csv", "get", "/api/v1/requests/{a}/audits/{run}/items.csv", None, API_READ),
    ("api-request-hold", "post", "/api/v1/requests/{a}/hold/", {"reason": "matrix"}, API_CHANGE),
    ("api-request-resume", "post", "/api/v1/requests/{a}/resume/", {}, API_CHANGE),
    ("api-request-ask", "post", "/api/v1/requests/{a}/ask/", {"question": "matrix"}, API_CHANGE),
    ("api-request-extend", "post", "/api/v1/requests/{a}/extend/", {"reason": "matrix"}, API_CHANGE),
    ("api-request-notes", "get", "/api/v1/requests/{a}/notes/", None, API_READ),
    ("api-requests-bulk-decide", "post", "/api/v1/requests/bulk-decide/",
     {"decision": "deny", "reason": "matrix", "request_ids": [NOBODY]}, {**API_READ, "auditor": 403}),
    ("api-job", "get", "/api/v1/jobs/{job}/", None, API_READ),
    ("api-job-requeue", "post", "/api/v1/jobs/{job}/requeue/", {"reason": "matrix"}, API_CHANGE),
    ("api-job-fail", "post", "/api/v1/jobs/{job}/fail/", {"reason": "matrix"}, API_CHANGE),
    ("api-job-method", "post", "/api/v1/jobs/{job}/method/", {"method": "graddiff"},
     {**OPERATOR_READ, "operator": 409}),
    ("api-methods", "get", "/api/v1/methods/", None, OPERATOR_READ),
    ("api-models", "get", "/api/v1/models/", None, OPERATOR_READ),
    ("api-model", "get", "/api/v1/models/tiny-world/", None, OPERATOR_READ),
    ("api-model-registration", "get", "/api/v1/model-registrations/{registration}/", None, OPERATOR_READ),
    ("api-schema", "get", "/api/v1/schema/", None, PUBLIC),
    ("api-docs", "get", "/api/v1/docs/", None, PUBLIC),
    ("api-redoc", "get", "/api/v1/redoc/", None, PUBLIC),
    ("api-unrouted", "get", "/api/v1/nothing-here/", None, dict.fromkeys(ROLES, 404)),
    ("verify-landing", "get", "/verify/", None, PUBLIC),
    ("verify-certificate", "get", "/verify/{serial}/", None, PUBLIC),
    ("console-queue", "get", "/console/", None, CONSOLE),
    ("console-request", "get", "/console/requests/{a}/", None, CONSOLE),
    ("console-bulk", "post", "/console/bulk/", {"decision": "deny", "reason": "matrix", "request_ids": [NOBODY]},
     CONSOLE),
    *[(f"console-{action}", "post", f"/console/requests/{{a}}/{action}/", {"reason": "matrix"}, CONSOLE)
      for action in ("approve", "deny", "hold", "resume", "ask", "extend")],
    ("console-note", "post", "/console/requests/{a}/notes/", {"reason": "matrix"}, CONSOLE),
    ("ca-certificate", "get", "/ca.pem", None, PUBLIC),
    ("admin:index", "get", "/admin/", None, ADMIN_PAGE),
    ("admin:compliance_removalrequest_changelist", "get", "/admin/compliance/removalrequest/", None, ADMIN_PAGE),
    ("admin:compliance_removalrequest_change", "get", "/admin/compliance/removalrequest/{a}/change/", None, ADMIN_PAGE),
    ("admin:compliance_auditevent_changelist", "get", "/admin/compliance/auditevent/", None, ADMIN_PAGE),
    # Operations: probes answer anyone (load balancers carry no credentials; they name no request);
    # /metrics only the scraper's METRICS_TOKEN, which no role's session or API token is (the world sets one).
    ("health", "get", "/health/", None, PUBLIC),
    ("ready", "get", "/ready/", None, PUBLIC),
    ("metrics", "get", "/metrics", None, dict.fromkeys(ROLES, 403)),
]
# Registering a model (POST /api/v1/models/, a multipart upload) shares its route with the list:
# declared here too; an empty form reaches the operator's validation (400).
REGISTER = ("post-form", "/api/v1/models/", {}, {**OPERATOR_READ, "operator": 400})


def route_names(resolver: URLResolver = None, namespace: str = "") -> set[str]:
    names = set()
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            names |= route_names(entry, f"{namespace}{entry.namespace}:" if entry.namespace else namespace)
        elif isinstance(entry, URLPattern) and entry.name:
            names.add(namespace + entry.name)
    return names


def token_client(username: str, scope: str) -> Client:
    _, token = ensure_api_user(username, scope)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


@pytest.fixture
def world(certified, submit, settings):
    """Request A certified (a job, a finished audit run, a signed certificate), request B another
    owner's, a model registration, and a client per role."""
    from audits.figures import figures_of
    from unlearning.models import ModelRegistration

    settings.IDENTITY_CODES_PER_HOUR = settings.CODE_SENDS_PER_CLIENT_PER_HOUR = 100
    settings.METRICS_TOKEN = "the-scrapers-own-token"
    Path(settings.MODEL_STORE_DIR).mkdir(exist_ok=True)  # ready: the store a deployment mounts
    a, certificate = certified
    run = certificate.audit_run
    b, _ = submit(email="bram.other@mail.example", full_name="Bram Other")
    registration = ModelRegistration.objects.create(name="pending-model", checkpoint_source="x.tar.gz",
                                                    training_manifest="train.jsonl", holdout_manifest="holdout.jsonl",
                                                    requested_by="operator")
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", "root@example.org", "a long passphrase here"))
    clients = {"anonymous": Client(), "owner": owner_session(a), "other_owner": owner_session(b),
               "legal": token_client("matrix-legal", "legal"), "auditor": token_client("matrix-auditor", "auditor"),
               "operator": token_client("matrix-operator", "ml-operator"), "admin": admin}
    values = {"a": a.pk, "run": run.pk, "job": run.job_id, "figure": figures_of(run)[0].name,
              "serial": certificate.serial, "registration": registration.pk}
    return clients, values, RemovalRequest.objects.get(pk=a.pk), b


def call(client: Client, method: str, path: str, body):
    if method == "get":
        return client.get(path)
    if method == "post" and path.startswith("/api/"):
        return client.post(path, body, content_type="application/json")
    return client.post(path, body)  # a form


def test_every_route_is_in_the_matrix():
    declared = {name for name, *_ in MATRIX}
    assert route_names() - {name for name in route_names() if name.startswith("admin:")} <= declared
    assert declared - route_names() == set()


def test_every_role_gets_exactly_what_the_matrix_declares_and_nothing_of_anyone_else(world):
    clients, values, a, b = world
    before = {"a": a.status, "b": b.status, "decisions": AuditEvent.objects.filter(
        action__in=["request.approved", "request.denied", "request.canceled", "job.requeued", "job.failed"]).count()}
    private = [a.reference, a.email, values["serial"]]
    mismatches, leaks, shown = [], [], set()
    for name, method, template, body, expected in [*MATRIX, ("api-models (register)", *REGISTER)]:
        path = template.format(**values)
        for role in ROLES:
            response = call(clients[role], method, path, body)
            if response.status_code != expected[role]:
                mismatches.append(f"{role:12} {method.upper():4} {path}: {response.status_code}, declared {expected[role]}")
            content = b"" if getattr(response, "streaming", False) else response.content
            may_see_a = role in ("owner", "legal", "auditor", "admin") or name in ("verify-certificate", "portal-verify")
            if not may_see_a and any(secret.encode() in content for secret in private):
                leaks.append(f"{role} {method.upper()} {path}")
            if may_see_a and a.reference.encode() in content:
                shown.add(role)
    assert mismatches == []
    assert leaks == []
    assert {"owner", "legal", "auditor", "admin"} <= shown  # the check can see A's data where it is allowed
    a.refresh_from_db()
    b.refresh_from_db()
    assert {"a": a.status, "b": b.status, "decisions": AuditEvent.objects.filter(
        action__in=["request.approved", "request.denied", "request.canceled", "job.requeued", "job.failed"]).count()} == before


def test_an_auditor_reads_everything_legal_reads_and_changes_nothing(world, verified_request):
    clients, values, a, _ = world
    auditor, legal = clients["auditor"], clients["legal"]
    for path in (f"/api/v1/requests/{a.pk}/", f"/api/v1/requests/{a.pk}/events/", f"/api/v1/requests/{a.pk}/audits/"):
        assert auditor.get(path).json() == legal.get(path).json()
    refused = auditor.post(f"/api/v1/requests/{verified_request.pk}/approve/", {}, content_type="application/json")
    assert refused.status_code == 403 and "only the legal team changes it" in refused.json()["detail"]
    verified_request.refresh_from_db()
    assert verified_request.status == RequestStatus.IDENTITY_VERIFIED
