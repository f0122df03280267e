from django.contrib import admin, messages

from compliance.admin import ReadOnlyAdmin, plan_summaries
from compliance.errors import ServiceError
from unlearning import services
from unlearning.models import JobStatus, ModelAsset, ModelRegistration, ModelVersion, TrainingRecord, UnlearningJob
from unlearning.selectors import confirmed_record_ids, deletion_plan


@admin.register(ModelAsset)
class ModelAssetAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "regime", "architecture", "current_version", "created_at")
    list_filter = ("regime", "kind")


@admin.register(ModelRegistration)
class ModelRegistrationAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "status", "requested_by", "asset", "error", "created_at", "finished_at")
    list_filter = ("status",)


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("asset", "role", "sha256", "lineage_sha256", "parent", "produced_by", "created_at")
    list_filter = ("role", "asset")


@admin.register(TrainingRecord)
class TrainingRecordAdmin(ReadOnlyAdmin):
    list_display = ("asset", "record_id", "owner_key", "kind", "shard", "slice")
    list_filter = ("asset", "kind", "shard", "slice")
    search_fields = ("record_id", "owner_key")


@admin.register(UnlearningJob)
class UnlearningJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "asset", "method", "status", "attempts", "progress", "heartbeat_at", "created_at", "finished_at")
    list_filter = ("status", "method", "asset")
    readonly_fields = ("deletion_plan",)
    actions = ("requeue_stuck_jobs", "fail_stuck_jobs")

    def _act(self, request, queryset, act, done: str) -> None:
        """Each selected job through its service (with its audit event); refusals reported per job."""
        for job in queryset:
            try:
                act(job_id=job.pk, user=request.user)
                self.message_user(request, f"Job {job.pk}: {done}.", messages.SUCCESS)
            except ServiceError as error:
                self.message_user(request, f"Job {job.pk}: {error.detail}", messages.ERROR)

    @admin.action(description="Re-queue selected stuck jobs (their worker was lost)")
    def requeue_stuck_jobs(self, request, queryset):
        self._act(request, queryset, lambda **kw: services.operator_requeue_job(reason="re-queued in the admin", **kw),
                  "re-queued")

    @admin.action(description="Fail selected stuck jobs (and their requests)")
    def fail_stuck_jobs(self, request, queryset):
        self._act(request, queryset, lambda **kw: services.operator_fail_job(reason="failed in the admin by an operator",
                                                                              **kw), "failed")

    @admin.display(description="Deletion plan")
    def deletion_plan(self, job) -> str:
        """Queued: the plan for the requests batched so far; done: the plan it executed."""
        if job.outcome.get("plan_summary"):
            return job.outcome["plan_summary"]
        if job.status != JobStatus.QUEUED:
            return "—"
        requests = list(job.requests.all())
        return plan_summaries([deletion_plan(job.asset, [r.subject_key for r in requests],
                                             confirmed_record_ids(job.asset, requests))])
