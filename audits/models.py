from django.db import models


class AuditStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Verdict(models.TextChoices):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    NOT_APPLICABLE = "N/A", "not applicable"


class Comparison(models.TextChoices):
    RETRAINED_REFERENCE = "retrained_reference", "a model retrained without the data"
    HOLDOUT = "holdout", "people the model never saw (no retrained model was affordable)"


class AuditRun(models.Model):
    """The verification of one unlearning job, against hash-pinned original, unlearned and reference models."""

    job = models.OneToOneField("unlearning.UnlearningJob", on_delete=models.PROTECT, related_name="audit_run")
    status = models.CharField(max_length=16, choices=AuditStatus.choices, default=AuditStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    policy = models.JSONField(default=dict)  # the versioned verdict policy, stored as applied
    original_version = models.ForeignKey("unlearning.ModelVersion", null=True, on_delete=models.PROTECT, related_name="+")
    unlearned_version = models.ForeignKey("unlearning.ModelVersion", null=True, on_delete=models.PROTECT, related_name="+")
    reference_version = models.ForeignKey("unlearning.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # What the forget metrics were compared with (audits.verdicts): the reference, or never-trained people.
    comparison = models.CharField(max_length=24, choices=Comparison.choices, default=Comparison.RETRAINED_REFERENCE)
    sample_sizes = models.JSONField(default=dict)
    verdict = models.CharField(max_length=16, choices=Verdict.choices, blank=True)
    # What the verdict rests on (audits.verdicts.run_verdict): "identity" (the model after deletion
    # is the retrained reference, byte for byte) or "audits".
    verdict_basis = models.CharField(max_length=16, default="audits")
    # One verdict per family of audits (audits.verdicts.FamilyVerdict), as decided: empty for runs
    # judged before families existed.
    families = models.JSONField(default=list, blank=True)
    # For a job of several subjects, each one's own verdict and families (salted pseudonym →
    # {"verdict", "families"}): the certificate of one request shows its subject's. Empty for one.
    subjects = models.JSONField(default=dict, blank=True)
    # The runtime filters prepared for the unlearned version (audits.runtime_filters): their
    # configuration, calibrated on this run's material, and what they measured (block rates on
    # forget probes, false positives on retain and general prompts, in-context leakage with and
    # without them). Activated on the version when a request of this run is certified.
    runtime_filters = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # How far the running audit is (0..1) and at what, for the owner's live status page: as a job's.
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # as UnlearningJob's
    claimed_by = models.CharField(max_length=200, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)


class AuditResult(models.Model):
    """One metric of an audit run: its value on each model, the margin, the verdict, per-item scores."""

    run = models.ForeignKey(AuditRun, on_delete=models.CASCADE, related_name="results")
    audit = models.CharField(max_length=64)
    metric = models.CharField(max_length=64)
    # Null where a metric was not measured (N/A: say, no canary of the subject was in training).
    original_value = models.FloatField(null=True)
    unlearned_value = models.FloatField(null=True)
    # The retrained reference's value; compared with never-trained people, what the gap is measured
    # from (the unlearned model's value on them, or chance for an attack).
    reference_value = models.FloatField(null=True)
    margin = models.FloatField()
    # 95% bootstrap intervals: of unlearned − reference (a KS distance D for distribution rules; the
    # degradation from the original for utility), and of original − reference (the audit's power;
    # null for utility metrics). Null when the metric was not judged.
    difference_low = models.FloatField(null=True)
    difference_high = models.FloatField(null=True)
    power_low = models.FloatField(null=True)
    power_high = models.FloatField(null=True)
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    explanation = models.TextField()
    sample_size = models.PositiveIntegerField()
    per_item = models.JSONField(default=dict)  # {role: {"items": [...]} or {"forget": [...], "holdout": [...]}}
    # Further figures per role (MIA: TPR at low FPR with intervals, share beyond the holdout's p99),
    # and PrivLeak against the retrained reference for membership metrics.
    details = models.JSONField(default=dict)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["run", "metric"], name="one_result_per_metric")]


class CertificateKind(models.TextChoices):
    UNLEARNING = "unlearning", "Certificate of unlearning"
    NO_DATA = "no_data", "Statement that no model holds the person's data"


class Certificate(models.Model):
    """A signed PDF for one removal request: what was done and what the audits found, or (kind
    no_data) that no governed model held a training record of the verified person."""

    serial = models.CharField(max_length=32, unique=True)
    kind = models.CharField(max_length=16, choices=CertificateKind.choices, default=CertificateKind.UNLEARNING)
    request = models.OneToOneField("compliance.RemovalRequest", on_delete=models.PROTECT, related_name="certificate")
    audit_run = models.ForeignKey(AuditRun, null=True, blank=True, on_delete=models.PROTECT, related_name="certificates")
    pdf_path = models.CharField(max_length=500)
    pdf_sha256 = models.CharField(max_length=64)
    signer_subject = models.CharField(max_length=300)
    signer_fingerprint = models.CharField(max_length=64)
    audit_event_seq = models.PositiveBigIntegerField()
    audit_event_hash = models.CharField(max_length=64)
    issued_at = models.DateTimeField(auto_now_add=True)
