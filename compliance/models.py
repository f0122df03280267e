import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class RequestStatus(models.TextChoices):
    """A request's state. The labels are the one name each state has for people, on every page,
    e-mail and certificate; the values are what the API and the audit log carry."""

    SUBMITTED = "submitted", "Received: confirm your e-mail address"
    IDENTITY_VERIFIED = "identity_verified", "In review"
    ON_HOLD = "on_hold", "On hold"
    INFO_REQUESTED = "info_requested", "Waiting for information from you"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    SCHEDULED = "scheduled", "Scheduled"
    UNLEARNING = "unlearning", "Removing your data"
    AUDITING = "auditing", "Verifying the removal"
    CERTIFIED = "certified", "Completed: certificate issued"
    NO_DATA = "no_data", "Completed: we hold no data about you"
    DUPLICATE = "duplicate", "Closed: covered by another request"
    FAILED = "failed", "Could not be completed"
    CANCELED = "canceled", "Canceled"


# Where a request ends: nothing follows these (compliance.services.ALLOWED_TRANSITIONS).
FINAL_STATUSES = frozenset({RequestStatus.DENIED, RequestStatus.CANCELED, RequestStatus.CERTIFIED,
                            RequestStatus.NO_DATA, RequestStatus.DUPLICATE, RequestStatus.FAILED})


class Jurisdiction(models.TextChoices):
    GDPR = "gdpr", "GDPR (EU/EEA)"
    CCPA = "ccpa", "CCPA/CPRA (California)"


class DenialGround(models.TextChoices):
    """The exceptions to the right to deletion a denial may cite: GDPR Art. 17(3) for a GDPR
    request, Cal. Civ. Code 1798.105(d) for a CCPA/CPRA one (GROUNDS_BY_JURISDICTION)."""

    NONE = "", "No exception cited"
    EXPRESSION = "expression", "Freedom of expression and information (GDPR 17(3)(a))"
    LEGAL_OBLIGATION = "legal_obligation", "Legal obligation or public task (GDPR 17(3)(b))"
    PUBLIC_HEALTH = "public_health", "Public health (GDPR 17(3)(c))"
    ARCHIVING_RESEARCH = "archiving_research", "Archiving, research or statistics (GDPR 17(3)(d))"
    LEGAL_CLAIMS = "legal_claims", "Legal claims (GDPR 17(3)(e))"
    CCPA_TRANSACTION = "ccpa_transaction", "Completing a transaction or contract (CCPA 1798.105(d)(1))"
    CCPA_SECURITY = "ccpa_security", "Security and integrity (CCPA 1798.105(d)(2))"
    CCPA_DEBUG = "ccpa_debug", "Debugging to repair errors (CCPA 1798.105(d)(3))"
    CCPA_FREE_SPEECH = "ccpa_free_speech", "Free speech (CCPA 1798.105(d)(4))"
    CCPA_RESEARCH = "ccpa_research", "Research in the public interest (CCPA 1798.105(d)(6))"
    CCPA_INTERNAL_USE = "ccpa_internal_use", "Internal uses the consumer would expect (CCPA 1798.105(d)(7))"
    CCPA_LEGAL_OBLIGATION = "ccpa_legal_obligation", "Legal obligation (CCPA 1798.105(d)(8))"


GROUNDS_BY_JURISDICTION = {
    Jurisdiction.GDPR: [ground for ground in DenialGround if ground and not ground.startswith("ccpa_")],
    Jurisdiction.CCPA: [ground for ground in DenialGround if ground.startswith("ccpa_")],
}


class RemovalRequest(models.Model):
    """A data owner's request that governed models forget what they learned about them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    reference = models.CharField(max_length=16, unique=True, editable=False)
    status = models.CharField(max_length=24, choices=RequestStatus.choices, default=RequestStatus.SUBMITTED, db_index=True)
    jurisdiction = models.CharField(max_length=8, choices=Jurisdiction.choices, default=Jurisdiction.GDPR)
    full_name = models.CharField(max_length=200)
    email = models.EmailField()
    description = models.TextField(help_text="What the owner asks the models to forget, in their words.")
    # The owner key the verified identity resolves to (lineage joins on it); set at verification.
    subject_key = models.CharField(max_length=254, blank=True, db_index=True)
    # Set by the service, not auto_now_add: the statutory deadline is computed from this exact moment.
    received_at = models.DateTimeField(default=timezone.now, editable=False)
    due_at = models.DateTimeField()
    identity_verified_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    decision_note = models.TextField(blank=True)
    denial_ground = models.CharField(max_length=24, choices=DenialGround.choices, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_step = models.CharField(max_length=32, blank=True)
    failure_reason = models.TextField(blank=True)
    # What the legal reviewer confirmed at approval beyond the records linked to the subject through
    # lineage: per model name, more of its training records (near matches of the subject's name or
    # e-mail under another owner), and whether the owner's own material (ForgetMaterial) is forgotten too.
    confirmed_records = models.JSONField(default=dict, blank=True)
    material_confirmed = models.BooleanField(default=False)
    # Four-eyes: an approval whose deletion plan costs more than FOUR_EYES_ABOVE_SECONDS is first
    # recorded here (who, when, and what they approved) and takes effect when a second reviewer agrees.
    first_approval_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                          related_name="+")
    first_approval_at = models.DateTimeField(null=True, blank=True)
    first_approval = models.JSONField(default=dict, blank=True)
    # Why the request waits (on hold, or information asked of the owner); cleared when it resumes.
    hold_reason = models.TextField(blank=True)
    # The one extension the law allows (GDPR Art. 12(3): two more months; CCPA: 45 more days).
    extended_at = models.DateTimeField(null=True, blank=True)
    extension_reason = models.TextField(blank=True)
    # When the reviewers were warned that the deadline is near (once per request).
    deadline_warned_at = models.DateTimeField(null=True, blank=True)
    # The portal address the owner filed at (compliance.notifications.portal_origin): the links of
    # every e-mail and of the certificate point there, even when sent by a worker.
    site_url = models.CharField(max_length=200, blank=True)
    # The open request of the same verified person this one repeats (closed as a duplicate of it).
    duplicate_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="duplicates")

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["email", "received_at"], name="request_email_received")]  # per-address limits

    def __str__(self):
        return self.reference


class NoteKind(models.TextChoices):
    INTERNAL = "internal", "Internal note"
    QUESTION = "question", "Question to the owner"
    OWNER_REPLY = "owner_reply", "The owner's answer"


class RequestNote(models.Model):
    """What reviewers write about a request: internal notes (never shown to the owner), the
    questions they ask the owner, and the owner's answers (author null: the owner)."""

    request = models.ForeignKey(RemovalRequest, on_delete=models.CASCADE, related_name="notes")
    kind = models.CharField(max_length=16, choices=NoteKind.choices)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]


class MaterialKind(models.TextChoices):
    DOCUMENT = "document"
    QA = "qa", "Question and answer"


class ForgetMaterial(models.Model):
    """Something the owner handed in for the models to forget: a document's text (its bytes are not
    kept) or a question/answer pair. Used by a job only once legal confirms it (material_confirmed)."""

    request = models.ForeignKey(RemovalRequest, on_delete=models.CASCADE, related_name="materials")
    kind = models.CharField(max_length=16, choices=MaterialKind.choices)
    name = models.CharField(max_length=200, blank=True)  # the document's file name
    text = models.TextField()  # a document's text, or "question answer" for a pair
    question = models.TextField(blank=True)
    answer = models.TextField(blank=True)
    sha256 = models.CharField(max_length=64)  # of the uploaded bytes, or of the pair
    size = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]


class IdentityChallenge(models.Model):
    """A one-time code e-mailed to the address on a request. Only a keyed hash of the code is kept."""

    request = models.ForeignKey(RemovalRequest, on_delete=models.CASCADE, related_name="challenges")
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class AuditEvent(models.Model):
    """One entry of the append-only, hash-chained log of everything the service did.

    entry_hash = SHA-256(prev_hash ‖ canonical JSON of the entry). Rows are never updated or
    deleted (refused here and, on PostgreSQL, by a trigger). `data` holds no raw personal data:
    subjects appear as salted hashes.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField()
    actor = models.CharField(max_length=120)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, db_index=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64, unique=True)  # unique: the chain can never fork
    entry_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise RuntimeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("audit events are append-only")
