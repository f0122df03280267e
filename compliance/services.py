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
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from compliance import auditlog, notifications
from compliance.deadlines import extended_due, response_due
from compliance.errors import (
    IdentityCodeRejected,
    NotFound,
    ServiceError,
    TooManyCodes,
    TooManyRequests,
    TransitionNotAllowed,
)
from compliance.materials import Document
from compliance.models import (
    FINAL_STATUSES,
    GROUNDS_BY_JURISDICTION,
    DenialGround,
    ForgetMaterial,
    IdentityChallenge,
    MaterialKind,
    NoteKind,
    RemovalRequest,
    RequestNote,
    RequestStatus,
)
from compliance.operations import requests_due_within
from compliance.signals import request_approved
from unlearning.selectors import deletion_plans, records_beyond_lineage

S = RequestStatus
# Before a decision a request may wait (on hold, or for the owner's answer) and come back to review;
# a duplicate is closed when its identity is verified; approval leads to the work, or to the
# finding that no model holds the person's data.
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.SUBMITTED: {S.IDENTITY_VERIFIED, S.DUPLICATE, S.DENIED, S.CANCELED},
    S.IDENTITY_VERIFIED: {S.APPROVED, S.ON_HOLD, S.INFO_REQUESTED, S.DENIED, S.CANCELED},
    S.ON_HOLD: {S.IDENTITY_VERIFIED, S.INFO_REQUESTED, S.DENIED, S.CANCELED},
    S.INFO_REQUESTED: {S.IDENTITY_VERIFIED, S.ON_HOLD, S.DENIED, S.CANCELED},
    S.APPROVED: {S.SCHEDULED, S.NO_DATA, S.FAILED},
    S.SCHEDULED: {S.UNLEARNING, S.FAILED},
    S.UNLEARNING: {S.AUDITING, S.FAILED},
    S.AUDITING: {S.CERTIFIED, S.FAILED},
    S.DENIED: set(),
    S.CANCELED: set(),
    S.CERTIFIED: set(),
    S.NO_DATA: set(),
    S.DUPLICATE: set(),
    S.FAILED: set(),
}
FINAL = FINAL_STATUSES
OWNER = "data-owner"
WORKER = "worker"


def user_actor(user) -> str:
    return f"user:{user.pk}:{user.get_username()}"


def lock_request(request_id) -> RemovalRequest:
    try:
        return RemovalRequest.objects.select_for_update().get(pk=request_id)
    except (RemovalRequest.DoesNotExist, ValidationError):  # ValidationError: not a UUID at all
        raise NotFound(f"no removal request with id {request_id}") from None


def _transition(request: RemovalRequest, to: str, *, actor: str, notice: dict | None = None, **data) -> None:
    """Move the request to `to`, log it, and tell its owner (compliance.notifications: the notice
    of that status, with `notice` as the e-mail's context; the event records which was sent)."""
    if to not in ALLOWED_TRANSITIONS[request.status]:
        raise TransitionNotAllowed(f"a request that is {request.status} cannot become {to}")
    previous, request.status = request.status, to
    request.save()
    sent = notifications.NOTICE_ON_STATUS.get(to)
    if sent:
        notifications.notify_owner(request, sent, **(notice or {}))
    auditlog.append(
        actor=actor, action=f"request.{to}", obj=request,
        data={"from": previous, "reference": request.reference, "subject": auditlog.subject_ref(request.email),
              **({"notified": sent} if sent else {}), **data},
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
    # The first code is the receipt too: one e-mail, with the reference and the deadline.
    notifications.notify_owner(request, "received" if new_request else "code", code=code,
                               minutes=settings.IDENTITY_CODE_TTL_SECONDS // 60,
                               verify_url=notifications.link(request, reverse("portal-verify", args=[request.pk])))


@transaction.atomic
def submit_request(*, full_name: str, email: str, description: str, jurisdiction: str = "gdpr",
                   documents: list[Document] = (), qa_pairs: list[tuple[str, str]] = (),
                   site_url: str = "") -> RemovalRequest:
    """A new request, with what the owner hands in for the models to forget (checked by
    compliance.materials): kept for legal's review, used only once confirmed at approval. One
    address files at most REQUESTS_PER_EMAIL_PER_DAY requests a day (each sends it a code).
    `site_url`: the portal address the owner filed at, where every e-mail about it links."""
    received = timezone.now()
    email = email.strip().lower()
    filed = RemovalRequest.objects.filter(email=email, received_at__gte=received - timedelta(days=1)).count()
    if settings.REQUESTS_PER_EMAIL_PER_DAY and filed >= settings.REQUESTS_PER_EMAIL_PER_DAY:
        raise TooManyRequests("this e-mail address has filed as many requests as it may today: "
                              "sign in to an earlier one with its reference, or try again tomorrow", 24 * 3600)
    request = RemovalRequest.objects.create(
        reference=_new_reference(), full_name=full_name.strip(), email=email,
        description=description.strip(), jurisdiction=jurisdiction,
        received_at=received, due_at=response_due(received, jurisdiction), site_url=site_url,
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
            left = settings.IDENTITY_CODE_MAX_ATTEMPTS - challenge.attempts
            failure = "" if matches else (f"the code is not correct: {left} {'try' if left == 1 else 'tries'} left"
                                          if left else "the code is not correct, and that was the last try: ask for a new code")
            if matches:
                challenge.used_at = now
            challenge.save()
        if failure and tried:
            auditlog.append(actor=OWNER, action="identity.failed_attempt", obj=request, data={"reason": failure})
        elif request.status == S.SUBMITTED:
            request.subject_key = request.email
            request.identity_verified_at = now
            _verified(request)
        else:
            auditlog.append(actor=OWNER, action="identity.signed_in", obj=request, data={"reference": request.reference})
    if failure:
        raise IdentityCodeRejected(failure)
    return request


def _verified(request: RemovalRequest) -> None:
    """The owner proved their address. A request that repeats an open one of the same person, and
    hands in nothing new, is closed as its duplicate (the work is done once, under the first);
    with new material it stays open, linked, for the reviewer to weigh."""
    original = (RemovalRequest.objects.filter(subject_key=request.subject_key).exclude(pk=request.pk)
                .exclude(status__in=FINAL).order_by("received_at").first())
    request.duplicate_of = original
    if original is not None and not request.materials.exists():
        _transition(request, S.DUPLICATE, actor=OWNER, method="email_one_time_code", duplicate_of=original.reference,
                    notice={"original_url": notifications.status_link(original)})
    else:
        _transition(request, S.IDENTITY_VERIFIED, actor=OWNER, method="email_one_time_code",
                    **({"repeats": original.reference} if original else {}))


def plan_seconds(plans: list[dict]) -> float:
    """The estimated compute of deletion plans (unlearning.selectors.deletion_plans), summed over
    their models (a plan without an estimate counts nothing)."""
    return sum(plan.get("estimated_seconds") or 0.0 for plan in plans)


def needs_second_approval(seconds: float) -> bool:
    """Four eyes for a plan of this estimated compute (plan_seconds)."""
    threshold = settings.FOUR_EYES_ABOVE_SECONDS
    return bool(threshold) and seconds > threshold


@transaction.atomic
def approve_request(*, request_id, user, note: str = "", include_records: dict[str, list[str]] | None = None,
                    forget_material: bool = False) -> RemovalRequest:
    """Approve, confirming what the jobs forget: always the records linked to the subject through
    lineage; also `include_records` (per model, training records the reviewer confirmed from the
    near matches of the subject's name and e-mail: never added silently) and, with
    `forget_material`, what the owner handed in.

    Four eyes: when the deletion plan costs more than FOUR_EYES_ABOVE_SECONDS of compute, the
    first approval is recorded and the request stays in review until a second reviewer approves
    the same scope; the request is approved then, in both names."""
    request = lock_request(request_id)
    if request.status != S.IDENTITY_VERIFIED:
        # Approval re-checks identity: an unverified (or already decided) request is never approved.
        raise TransitionNotAllowed(
            f"only a request whose identity is verified and that is not yet decided can be approved; this one is "
            f"{request.get_status_display().lower()} ({request.status})"
        )
    include_records = {model: sorted(set(ids)) for model, ids in (include_records or {}).items() if ids}
    for model, ids in include_records.items():
        if problem := records_beyond_lineage(model, ids):
            raise ServiceError(f"include_records for {model}: {problem}")
    if forget_material and not request.materials.exists():
        raise ServiceError("the owner handed in no material to forget")
    scope = {"include_records": include_records, "forget_material": forget_material}
    if request.first_approval_by_id is None:
        seconds = plan_seconds(deletion_plans(request.subject_key, include_records))  # with the added records
        if needs_second_approval(seconds):
            return _first_approval(request, user, note, scope, seconds)
    approvers = {}
    if request.first_approval_by_id is not None:
        if request.first_approval_by_id == user.pk:
            raise TransitionNotAllowed("this request needs a second reviewer's approval: you gave the first one")
        if {**scope, "note": request.first_approval["note"]} != request.first_approval:
            raise ServiceError("a second approval confirms the first one's scope (records and material) unchanged: "
                               "to change it, deny or put the request on hold")
        approvers = {"first_approval_by": user_actor(request.first_approval_by)}
        note = "\n".join(filter(None, [request.first_approval["note"], note]))
    request.decided_at, request.decided_by, request.decision_note = timezone.now(), user, note
    request.confirmed_records, request.material_confirmed = include_records, forget_material
    confirmed = {"confirmed_records": {m: len(ids) for m, ids in include_records.items()}} if include_records else {}
    material = {"material_confirmed": request.materials.count()} if forget_material else {}
    _transition(request, S.APPROVED, actor=user_actor(user), note=note, **confirmed, **material, **approvers)
    request_approved.send(sender=RemovalRequest, request_id=str(request.pk))
    return request


def _first_approval(request: RemovalRequest, user, note: str, scope: dict, seconds: float) -> RemovalRequest:
    request.first_approval_by, request.first_approval_at = user, timezone.now()
    request.first_approval = {**scope, "note": note}
    request.save()
    auditlog.append(actor=user_actor(user), action="request.first_approval", obj=request, data={
        "reference": request.reference, "plan_seconds": round(seconds, 1),
        "threshold_seconds": settings.FOUR_EYES_ABOVE_SECONDS, "note": note})
    return request


def bulk_decide(*, request_ids: list, user, decision: str, reason: str = "", ground: str = "") -> dict[str, list]:
    """Approve or deny many requests, each on its own (one refused does not undo the others):
    {"succeeded": [ids], "failed": [{"id", "detail"}]}. A bulk approval confirms only lineage
    records, and a request needing a second reviewer gets its first approval."""
    if decision not in ("approve", "deny"):
        raise ServiceError(f"unknown decision {decision!r}: choose one of approve, deny")
    if decision == "deny" and not reason.strip():
        raise ServiceError("a denial needs a reason the data owner can read")  # before any is tried
    outcome = {"succeeded": [], "failed": []}
    for request_id in dict.fromkeys(str(request_id) for request_id in request_ids):
        try:
            if decision == "approve":
                approve_request(request_id=request_id, user=user, note=reason)
            else:
                deny_request(request_id=request_id, user=user, reason=reason, ground=ground)
        except ServiceError as error:
            outcome["failed"].append({"id": request_id, "detail": error.detail})
        else:
            outcome["succeeded"].append(request_id)
    return outcome


@transaction.atomic
def deny_request(*, request_id, user, reason: str, ground: str = "") -> RemovalRequest:
    if not reason.strip():
        raise ServiceError("a denial needs a reason the data owner can read")
    if ground not in DenialGround.values:
        raise ServiceError(f"unknown denial ground {ground!r}")
    request = lock_request(request_id)
    if ground and ground not in GROUNDS_BY_JURISDICTION[request.jurisdiction]:
        raise ServiceError(f"{DenialGround(ground).label} is not an exception under {request.get_jurisdiction_display()}: "
                           f"choose one of {', '.join(GROUNDS_BY_JURISDICTION[request.jurisdiction])}")
    request.decided_at, request.decided_by = timezone.now(), user
    request.decision_note, request.denial_ground = reason.strip(), ground
    _transition(request, S.DENIED, actor=user_actor(user), reason=reason.strip(), ground=ground)
    return request


@transaction.atomic
def cancel_request(*, request_id) -> RemovalRequest:
    request = lock_request(request_id)
    _transition(request, S.CANCELED, actor=OWNER)
    return request


# --- The reviewers' console: waiting, questions to the owner, notes, the one extension ---


def _required(text: str, what: str) -> str:
    if not text.strip():
        raise ServiceError(f"{what} cannot be empty")
    return text.strip()


@transaction.atomic
def hold_request(*, request_id, user, reason: str) -> RemovalRequest:
    """Stop the review clock's work (not the statutory deadline) until a reviewer resumes it."""
    request = lock_request(request_id)
    request.hold_reason = _required(reason, "the reason for the hold")
    _transition(request, S.ON_HOLD, actor=user_actor(user), reason=request.hold_reason, **_withdraw_first_approval(request))
    return request


def _withdraw_first_approval(request: RemovalRequest) -> dict:
    """A request that waits (on hold, or for the owner's answer) may come back changed: a first
    approval given before is withdrawn, and both reviewers decide on what they then know."""
    if request.first_approval_by_id is None:
        return {}
    withdrawn = user_actor(request.first_approval_by)
    request.first_approval_by, request.first_approval_at, request.first_approval = None, None, {}
    request.save()
    return {"first_approval_withdrawn": withdrawn}


@transaction.atomic
def resume_request(*, request_id, user) -> RemovalRequest:
    request = lock_request(request_id)
    if request.status != S.ON_HOLD:
        raise TransitionNotAllowed(f"only a request on hold can be resumed; this one is {request.status}")
    request.hold_reason = ""
    _transition(request, S.IDENTITY_VERIFIED, actor=user_actor(user))
    return request


@transaction.atomic
def ask_owner(*, request_id, user, question: str) -> RemovalRequest:
    """Ask the owner for what the decision needs (GDPR Art. 12(6)); the owner answers on the portal."""
    request = lock_request(request_id)
    question = _required(question, "the question")
    request.hold_reason = question
    RequestNote.objects.create(request=request, kind=NoteKind.QUESTION, author=user, text=question)
    _transition(request, S.INFO_REQUESTED, actor=user_actor(user), notice={"question": question},
                **_withdraw_first_approval(request))
    return request


@transaction.atomic
def answer_owner_question(*, request_id, answer: str) -> RemovalRequest:
    """The owner's answer: kept as a note, and the request is back in review."""
    request = lock_request(request_id)
    if request.status != S.INFO_REQUESTED:
        raise TransitionNotAllowed("we are not waiting for information on this request")
    RequestNote.objects.create(request=request, kind=NoteKind.OWNER_REPLY, text=_required(answer, "the answer"))
    request.hold_reason = ""
    _transition(request, S.IDENTITY_VERIFIED, actor=OWNER, answered=True)
    return request


@transaction.atomic
def add_note(*, request_id, user, text: str) -> RequestNote:
    """An internal note: the reviewers' own, never shown to the owner (the log keeps that one was
    written, not its words)."""
    request = lock_request(request_id)
    note = RequestNote.objects.create(request=request, kind=NoteKind.INTERNAL, author=user,
                                      text=_required(text, "the note"))
    auditlog.append(actor=user_actor(user), action="request.note_added", obj=request,
                    data={"reference": request.reference, "note": note.pk})
    return note


@transaction.atomic
def extend_deadline(*, request_id, user, reason: str) -> RemovalRequest:
    """The one extension the law allows, told to the owner with its reasons before the first
    deadline passes: GDPR Art. 12(3), two more months; CCPA, 45 more days."""
    request = lock_request(request_id)
    reason = _required(reason, "the reason for the extension")
    if request.status in FINAL:
        raise TransitionNotAllowed(f"a request that is {request.status} has no deadline left to extend")
    if request.extended_at is not None:
        raise TransitionNotAllowed(f"the deadline was extended already, on {request.extended_at:%Y-%m-%d}: "
                                   "the law allows one extension")
    now = timezone.now()
    if now >= request.due_at:
        raise TransitionNotAllowed("the deadline has passed: an extension must be told to the owner before it")
    previous = request.due_at
    request.due_at, request.extended_at, request.extension_reason = extended_due(previous, request.jurisdiction), now, reason
    request.save()
    notifications.notify_owner(request, "extended")
    auditlog.append(actor=user_actor(user), action="request.deadline_extended", obj=request, data={
        "reference": request.reference, "from": previous.isoformat(), "to": request.due_at.isoformat(),
        "reason": reason, "notified": "extended"})
    return request


@transaction.atomic
def warn_near_deadlines() -> list[str]:
    """Tell the reviewers, once per request, of open requests due within DEADLINE_WARNING_DAYS, or
    overdue already (a daily task that missed days); returns the references warned of."""
    due = list(requests_due_within(timezone.now(), settings.DEADLINE_WARNING_DAYS).filter(deadline_warned_at=None)
               .select_for_update().order_by("due_at"))
    if not due:
        return []
    RemovalRequest.objects.filter(pk__in=[request.pk for request in due]).update(deadline_warned_at=timezone.now())
    notifications.notify_reviewers("deadline_near", requests=due, days=settings.DEADLINE_WARNING_DAYS)
    auditlog.append(actor=WORKER, action="requests.deadline_warning", obj=due[0], data={
        "references": [request.reference for request in due], "days": settings.DEADLINE_WARNING_DAYS})
    return [request.reference for request in due]


# --- Worker-side steps (the request's part of them; unlearning.services schedules its jobs) ---


def advance(request: RemovalRequest, to: str, **data) -> None:
    """Move a locked request forward one pipeline step, if it is not there already (idempotent)."""
    if request.status != to:
        _transition(request, to, actor=WORKER, **data)


def fail(request: RemovalRequest, *, step: str, reason: str) -> None:
    """A locked request failed at `step` (a request already finished stays as it is)."""
    if request.status in FINAL:
        return
    request.failed_step, request.failure_reason = step, reason[:2000]
    _transition(request, S.FAILED, actor=WORKER, step=step, reason=reason[:500],
                notice={"reason": notifications.FAILURE_IN_PLAIN_WORDS.get(step, notifications.FAILURE_IN_PLAIN_WORDS[""])})


def certify(request: RemovalRequest, *, certificate: str, pdf_sha256: str, verdict: str, summary: str) -> None:
    """A locked request that is auditing got its signed certificate: it is complete. `summary`:
    the result in one plain sentence, for the owner's e-mail."""
    request.completed_at = timezone.now()
    _transition(request, S.CERTIFIED, actor=WORKER, certificate=certificate, pdf_sha256=pdf_sha256, verdict=verdict,
                notice={"summary": summary, **_certificate_links(request, certificate)})


def complete_without_data(request: RemovalRequest, *, certificate: str, pdf_sha256: str) -> None:
    """A locked, approved request whose person no governed model holds a record of: complete,
    with the signed statement that says so."""
    request.completed_at = timezone.now()
    _transition(request, S.NO_DATA, actor=WORKER, certificate=certificate, pdf_sha256=pdf_sha256,
                notice=_certificate_links(request, certificate))


def _certificate_links(request: RemovalRequest, serial: str) -> dict:
    return {"certificate_url": notifications.link(request, reverse("portal-certificate", args=[request.pk])),
            "verify_url": notifications.link(request, reverse("verify-certificate", args=[serial]))}
