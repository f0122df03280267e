from django.db import models

from unlearning.regimes import REGIMES


class ModelKind(models.TextChoices):
    CAUSAL_LM = "causal_lm", "Causal language model"
    CLASSIFIER = "classifier"
    REGRESSOR = "regressor"


# How the service trained the model, which decides how a record can leave it: one per registered
# regime (unlearning.regimes), so adding a regime adds its choice (and a migration of the choices).
TrainingRegime = models.TextChoices("TrainingRegime", [(r.name.upper(), (r.name, r.label)) for r in REGIMES.values()])


class ModelAsset(models.Model):
    """A governed ML model: what removal requests act on. Its checkpoints are ModelVersions."""

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=ModelKind.choices, default=ModelKind.CAUSAL_LM)
    regime = models.CharField(max_length=16, choices=TrainingRegime.choices, default=TrainingRegime.PLAIN)
    architecture = models.CharField(max_length=100)
    current_version = models.ForeignKey("ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # How the original was trained (unlearning.lm.TrainingRecipe): the retrained reference reuses it.
    training_recipe = models.JSONField(default=dict)
    # JSONL manifests in the model store: training records (with their owners) and never-trained
    # holdout records from the same distribution (the audits' non-members).
    training_manifest = models.CharField(max_length=500)
    holdout_manifest = models.CharField(max_length=500, blank=True)
    # How the model is asked a question ("{question}" marks the place): the audits ask its QA records
    # this way. The demo world's format for the models the service trains; for an external model,
    # its tokenizer's chat template or what the operator says.
    question_template = models.TextField(default="Question: {question}\nAnswer:")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class VersionRole(models.TextChoices):
    ORIGINAL = "original"
    UNLEARNED = "unlearned"
    REFERENCE = "reference", "Retrained reference (oracle)"


class ModelVersion(models.Model):
    """An immutable checkpoint, pinned by the SHA-256 of its files and stored under that hash."""

    asset = models.ForeignKey(ModelAsset, on_delete=models.PROTECT, related_name="versions")
    sha256 = models.CharField(max_length=64, db_index=True)
    storage_path = models.CharField(max_length=500)
    role = models.CharField(max_length=16, choices=VersionRole.choices)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    produced_by = models.ForeignKey("UnlearningJob", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    details = models.JSONField(default=dict)
    # SISA and S3T: the lineage this version was trained by (unlearning.sisa.SisaLineage or
    # unlearning.s3t.S3TLineage as JSON in the model store, content-addressed): every record's shard
    # and slice, and what each checkpoint or adapter saw.
    lineage_path = models.CharField(max_length=500, blank=True)
    lineage_sha256 = models.CharField(max_length=64, blank=True)
    # The runtime filters served with this version (unlearning.serving): {"filters": name → parameters
    # (calibrated values included), "targets_path", "targets_sha256" (the forget targets in the model
    # store, content-addressed), "requests": the certified requests they cover, "measured": block and
    # false-positive rates}. Set when a request against it is certified; empty: served unfiltered.
    runtime_filters = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["asset", "sha256", "role"], name="one_version_per_hash_and_role")]

    def __str__(self):
        return f"{self.asset.name}@{self.sha256[:12]}"


class TrainingRecord(models.Model):
    """Lineage: one record a model was trained on, who it is about, and its content hash."""

    asset = models.ForeignKey(ModelAsset, on_delete=models.CASCADE, related_name="records")
    record_id = models.CharField(max_length=120)
    owner_key = models.CharField(max_length=254, blank=True, db_index=True)
    kind = models.CharField(max_length=32)
    content_sha256 = models.CharField(max_length=64)
    # Where a SISA or S3T model placed the record (a seeded hash: deletions never move records).
    shard = models.PositiveSmallIntegerField(null=True, blank=True)
    slice = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["asset", "record_id"], name="unique_record_per_asset")]


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class UnlearningJob(models.Model):
    """Unlearning of one model for one or more removal requests (batched while still queued)."""

    asset = models.ForeignKey(ModelAsset, on_delete=models.PROTECT, related_name="jobs")
    requests = models.ManyToManyField("compliance.RemovalRequest", related_name="jobs")
    method = models.CharField(max_length=32)
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True)
    # An approximate method's evaluations so far (epoch, step, losses, retained QA), written as it runs
    # and kept when it fails: what an operator reads to see why it stopped.
    history = models.JSONField(default=list, blank=True)
    base_version = models.ForeignKey(ModelVersion, null=True, on_delete=models.PROTECT, related_name="+")
    result_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    forget_record_ids = models.JSONField(default=list)
    forget_set_sha256 = models.CharField(max_length=64, blank=True)
    outcome = models.JSONField(default=dict, blank=True)
    # An exact deletion spread over workers (SISA: one task per affected shard, then a join): per
    # part, its attempts, worker and stored result, for the plan named by "key". A part once done is
    # not redone, by a redelivered task or by the job's next attempt.
    parts = models.JSONField(default=dict, blank=True)
    # While fanned out: until when the claim waits for parts still queued without a heartbeat.
    parts_deadline = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written while a worker works on the job (workers.heartbeat): a RUNNING job whose heartbeat
    # stopped lost its worker, and the next delivery or the sweep claims it again.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True)  # the worker of the latest claim: host and process id
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class RegistrationStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    REGISTERED = "registered"
    REJECTED = "rejected"


RegistrationStatus.UNDER_WAY = (RegistrationStatus.QUEUED, RegistrationStatus.RUNNING)


class ModelRegistration(models.Model):
    """An ML operator's request (over the API) to put a checkpoint under governance. The web process
    checks the name and manifests at once; a worker loads the checkpoint (transformers), copies it
    into the store and registers it, or rejects it with one line saying why."""

    name = models.SlugField(max_length=100)
    status = models.CharField(max_length=16, choices=RegistrationStatus.choices, default=RegistrationStatus.QUEUED)
    # The uploaded archive (in the store's incoming folder, removed once the registration ends) or a
    # folder under MODEL_IMPORT_DIR (left where the operator put it).
    checkpoint_source = models.CharField(max_length=500)
    training_manifest = models.CharField(max_length=500)
    holdout_manifest = models.CharField(max_length=500)
    question_template = models.TextField(blank=True)
    requested_by = models.CharField(max_length=200)
    asset = models.OneToOneField(ModelAsset, null=True, blank=True, on_delete=models.PROTECT, related_name="registration")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # as a job's: a silent one lost its worker
    claimed_by = models.CharField(max_length=200, blank=True)  # the worker of the latest claim, as a job's
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class ServingKey(models.Model):
    """An API key of the OpenAI-compatible endpoint: its own scope (the models it may call), apart
    from the REST API's tokens. Only the key's SHA-256 is stored; the key is shown once."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True)  # the key's first characters: which key it is, in lists
    key_sha256 = models.CharField(max_length=64, unique=True)
    assets = models.ManyToManyField(ModelAsset, related_name="serving_keys")
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


class FilterCount(models.Model):
    """How often a runtime filter acted on a served version, per day: counts only, never a prompt or an output."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="filter_counts")
    filter = models.CharField(max_length=32)
    action = models.CharField(max_length=16)
    reason = models.CharField(max_length=16)
    day = models.DateField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "filter", "action", "reason", "day"],
                                               name="one_count_per_filter_action_and_day")]
