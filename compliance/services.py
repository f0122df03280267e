"""Every state change of a removal request: one function each, atomic, with its audit event. This
module is the only writer of a request's status and dates, the worker-side steps (advancing,
failing, certifying) included, so that the lifecycle reads in one place.

Services report what happened (compliance.signals); the pipeline (workers.pipeline) decides what
runs next and enqueues it once the transaction commits, so a worker never sees a row that was
rolled back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from compliance import auditlog
from compliance.deadlines import response_due
from compliance.errors import (
    IdentityCodeRejected,
    NotFound,
    ServiceError,
    TooManyCodes,
    TooManyRequests,
    TransitionNotAllowed,
)
from compliance.materials import Document
from compliance.models import DenialGround, ForgetMaterial, IdentityChallenge, MaterialKind, RemovalRequest, RequestStatus
from compliance.signals import request_approved
from unlearning.selectors import records_beyond_lineage

S = RequestStatus
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.SUBMITTED: {S.IDENTITY_VERIFIED, S.DENIED, S.CANCELED},
    S.IDENTITY_VERIFIED: {S.APPROVED, S.DENIED, S.CANCELED},
    S.APPROVED: {S.SCHEDULED, S.FAILED},
    S.SCHEDULED: {S.UNLEARNING, S.FAILED},
    S.UNLEARNING: {S.AUDITING, S.FAILED},
    S.AUDITING: {S.CERTIFIED, S.FAILED},
    S.DENIED: set(),
    S.CANCELED: set(),
    S.CERTIFIED: set(),
    S.FAILED: set(),
}
OWNER = "data-owner"
WORKER = "worker"


def user_actor(user) -> str:
    return f"user:{user.pk}:{user.get_username()}"


def lock_request(request_id) -> RemovalRequest:
    try:
        return RemovalRequest.objects.select_for_update().get(pk=request_id)
    except (RemovalRequest.DoesNotExist, ValidationError):  # ValidationError: not a UUID at all
        raise NotFound(f"no removal request with id {request_id}") from None


def _transition(request: RemovalRequest, to: str, *, actor: str, **data) -> None:
    if to not in ALLOWED_TRANSITIONS[request.status]:
        raise TransitionNotAllowed(f"a request that is {request.status} cannot become {to}")
    previous, request.status = request.status, to
    request.save()
    auditlog.append(
        actor=actor, action=f"request.{to}", obj=request,
        data={"from": previous, "reference": request.reference, "subject": auditlog.subject_ref(request.email), **data},
    )


def _new_reference() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "RR-" + "".join(secrets.choice(alphabet) for _ in range(8))


def _code_hash(challenge_request_id, code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), f"{challenge_request_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _issue_identity_code(request: RemovalRequest, *, new_request: bool = False) -> None:
    """E-mail a fresh code for the request. `new_request`: the request was created in this
    transaction, so it has no codes yet to count or to retire (two queries fewer per submission)."""
    hour_ago = timezone.now() - timedelta(hours=1)
    if not new_request:
        if request.challenges.count() >= settings.IDENTITY_CODES_PER_REQUEST:
            raise TooManyCodes("this request has had all the codes it may have: please contact us to reach it")
        if request.challenges.filter(created_at__gte=hour_ago).count() >= settings.IDENTITY_CODES_PER_HOUR:
            raise TooManyCodes("too many codes were sent for this request in the last hour: try again later", 3600)
    to_address = IdentityChallenge.objects.filter(request__email=request.email, created_at__gte=hour_ago).count()
    if to_address >= settings.IDENTITY_CODES_PER_EMAIL_PER_HOUR:
        raise TooManyCodes("too many codes were sent to this e-mail address in the last hour: try again later", 3600)
    code = f"{secrets.randbelow(10**6):06d}"
    if not new_request:  # a new code replaces any earlier one: only the latest is ever accepted
        request.challenges.filter(used_at=None).update(used_at=timezone.now())
    IdentityChallenge.objects.create(
        request=request,
        code_hash=_code_hash(request.pk, code),
        expires_at=timezone.now() + timedelta(seconds=settings.IDENTITY_CODE_TTL_SECONDS),
    )
    minutes = settings.IDENTITY_CODE_TTL_SECONDS // 60
    body = (
        f"Your verification code for removal request {request.reference} is {code}.\n"
        f"It expires in {minutes} minutes. Enter it at {settings.SITE_URL}/requests/{request.pk}/verify/\n\n"
        "If you did not ask for this, ignore this message."
    )
    transaction.on_commit(lambda: send_mail(
        f"Your code for removal request {request.reference}", body, settings.DEFAULT_FROM_EMAIL, [request.email],
    ))


@transaction.atomic
def submit_request(*, full_name: str, email: str, description: str, jurisdiction: str = "gdpr",
                   documents: list[Document] = (), qa_pairs: list[tuple[str, str]] = ()) -> RemovalRequest:
    """A new request, with what the owner hands in for the models to forget (checked by
    compliance.materials): kept for legal's review, used only once confirmed at approval. One
    address files at most REQUESTS_PER_EMAIL_PER_DAY requests a day (each sends it a code)."""
    received = timezone.now()
    email = email.strip().lower()
    filed = RemovalRequest.objects.filter(email=email, received_at__gte=received - timedelta(days=1)).count()
    if settings.REQUESTS_PER_EMAIL_PER_DAY and filed >= settings.REQUESTS_PER_EMAIL_PER_DAY:
        raise TooManyRequests("this e-mail address has filed as many requests as it may today: "
                              "sign in to an earlier one with its reference, or try again tomorrow", 24 * 3600)
    request = RemovalRequest.objects.create(
        reference=_new_reference(), full_name=full_name.strip(), email=email,
        description=description.strip(), jurisdiction=jurisdiction,
        received_at=received, due_at=response_due(received, jurisdiction),
    )
    _issue_identity_code(request, new_request=True)
    materials = ForgetMaterial.objects.bulk_create(
        [ForgetMaterial(request=request, kind=MaterialKind.DOCUMENT, name=d.name, text=d.text, sha256=d.sha256,
                        size=d.size) for d in documents]
        + [ForgetMaterial(request=request, kind=MaterialKind.QA, question=q, answer=a, text=f"{q} {a}",
                          sha256=hashlib.sha256(f"{q}\0{a}".encode()).hexdigest(), size=len(q) + len(a))
           for q, a in qa_pairs])
    # Last: appending takes the audit log's chain lock until the commit, so every other write of the
    # transaction happens before it and concurrent submissions wait on the lock as briefly as they can.
    auditlog.append(actor=OWNER, action="request.submitted", obj=request, data={
        "reference": request.reference, "subject": auditlog.subject_ref(request.email),
        "jurisdiction": jurisdiction, "due_at": request.due_at.isoformat(),
        # Counts only: even a hash of a short question and answer could be guessed back.
        **({"documents": len(documents), "qa_pairs": len(qa_pairs)} if materials else {}),
    })
    return request


@transaction.atomic
def resend_identity_code(*, request_id) -> None:
    request = lock_request(request_id)
    _issue_identity_code(request)
    auditlog.append(actor=OWNER, action="identity.code_sent", obj=request, data={"reference": request.reference})


@transaction.atomic
def request_access_code(*, reference: str, email: str) -> RemovalRequest | None:
    """Send a sign-in code to the owner of an existing request; None when nothing matches.

    The reference is 40 random bits, so telling whether a (reference, e-mail) pair matches reveals
    nothing an attacker could enumerate; the code itself is what proves ownership.
    """
    request = RemovalRequest.objects.select_for_update().filter(
        reference=reference.strip().upper(), email=email.strip().lower()
    ).first()
    if request is not None:
        _issue_identity_code(request)
        auditlog.append(actor=OWNER, action="identity.code_sent", obj=request, data={"reference": request.reference})
    return request


def verify_identity(*, request_id, code: str) -> RemovalRequest:
    """Check a one-time code. Success verifies a new request (or signs its owner back in).

    A wrong code tried against a live one is counted and logged in its own committed transaction
    before the error is raised. Nothing is logged when there was no live code to try (none sent,
    expired, or its tries spent): those attempts change nothing, and logging them would let anyone
    flood the log and an owner's history.
    """
    with transaction.atomic():
        request = lock_request(request_id)
        challenge = request.challenges.filter(used_at=None).first()
        now = timezone.now()
        tried = False
        if challenge is None:
            failure = "there is no active code for this request: ask for a new one"
        elif challenge.expires_at < now:
            failure = "the code has expired: ask for a new one"
        elif challenge.attempts >= settings.IDENTITY_CODE_MAX_ATTEMPTS:
            failure = "too many wrong attempts: ask for a new code"
        else:
            tried, challenge.attempts = True, challenge.attempts + 1
            matches = hmac.compare_digest(_code_hash(request.pk, code.strip()), challenge.code_hash)
            failure = "" if matches else "the code is not correct"
            if matches:
                challenge.used_at = now
            challenge.save()
        if failure and tried:
            auditlog.append(actor=OWNER, action="identity.failed_attempt", obj=request, data={"reason": failure})
        elif request.status == S.SUBMITTED:
            request.subject_key = request.email
            request.identity_verified_at = now
            _transition(request, S.IDENTITY_VERIFIED, actor=OWNER, method="email_one_time_code")
        else:
            auditlog.append(actor=OWNER, action="identity.signed_in", obj=request, data={"reference": request.reference})
    if failure:
        raise IdentityCodeRejected(failure)
    return request


@transaction.atomic
def approve_request(*, request_id, user, note: str = "", include_records: dict[str, list[str]] | None = None,
                    forget_material: bool = False) -> RemovalRequest:
    """Approve, confirming what the jobs forget: always the records linked to the subject through
    lineage; also `include_records` (per model, training records the reviewer confirmed from the
    near matches of the subject's name and e-mail: never added silently) and, with
    `forget_material`, what the owner handed in."""
    request = lock_request(request_id)
    if request.status != S.IDENTITY_VERIFIED:
        # Approval re-checks identity: an unverified (or already decided) request is never approved.
        raise TransitionNotAllowed(
            f"only a request whose identity is verified and that is not yet decided can be approved; this one is {request.status}"
        )
    include_records = {model: sorted(set(ids)) for model, ids in (include_records or {}).items() if ids}
    for model, ids in include_records.items():
        if problem := records_beyond_lineage(model, ids):
            raise ServiceError(f"include_records for {model}: {problem}")
    if forget_material and not request.materials.exists():
        raise ServiceError("the owner handed in no material to forget")
    request.decided_at, request.decided_by, request.decision_note = timezone.now(), user, note
    request.confirmed_records, request.material_confirmed = include_records, forget_material
    confirmed = {"confirmed_records": {m: len(ids) for m, ids in include_records.items()}} if include_records else {}
    material = {"material_confirmed": request.materials.count()} if forget_material else {}
    _transition(request, S.APPROVED, actor=user_actor(user), note=note, **confirmed, **material)
    request_approved.send(sender=RemovalRequest, request_id=str(request.pk))
    return request


@transaction.atomic
def deny_request(*, request_id, user, reason: str, ground: str = "") -> RemovalRequest:
    if not reason.strip():
        raise ServiceError("a denial needs a reason the data owner can read")
    if ground not in DenialGround.values:
        raise ServiceError(f"unknown denial ground {ground!r}")
    request = lock_request(request_id)
    request.decided_at, request.decided_by = timezone.now(), user
    request.decision_note, request.denial_ground = reason.strip(), ground
    _transition(request, S.DENIED, actor=user_actor(user), reason=reason.strip(), ground=ground)
    return request


@transaction.atomic
def cancel_request(*, request_id) -> RemovalRequest:
    request = lock_request(request_id)
    _transition(request, S.CANCELED, actor=OWNER)
    return request


# --- Worker-side steps (the request's part of them; unlearning.services schedules its jobs) ---


def advance(request: RemovalRequest, to: str, **data) -> None:
    """Move a locked request forward one pipeline step, if it is not there already (idempotent)."""
    if request.status != to:
        _transition(request, to, actor=WORKER, **data)


def fail(request: RemovalRequest, *, step: str, reason: str) -> None:
    """A locked request failed at `step` (a request already finished stays as it is)."""
    if request.status in (S.CERTIFIED, S.FAILED, S.DENIED, S.CANCELED):
        return
    request.failed_step, request.failure_reason = step, reason[:2000]
    _transition(request, S.FAILED, actor=WORKER, step=step, reason=reason[:500])


def certify(request: RemovalRequest, *, certificate: str, pdf_sha256: str, verdict: str) -> None:
    """A locked request that is auditing got its signed certificate: it is complete."""
    request.completed_at = timezone.now()
    _transition(request, S.CERTIFIED, actor=WORKER, certificate=certificate, pdf_sha256=pdf_sha256, verdict=verdict)
