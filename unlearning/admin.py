from django.contrib import admin

from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from compliance.admin import ReadOnlyAdmin
from unlearning.models import JobStatus, ModelAsset, ModelVersion, TrainingRecord, UnlearningJob
from unlearning.selectors import deletion_plan


@admin.register(ModelAsset)
class ModelAssetAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "regime", "architecture", "current_version", "created_at")
    list_filter = ("regime", "kind")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("asset", "role", "sha256", "lineage_sha256", "parent", "produced_by", "created_at")
    list_filter = ("role", "asset")


@admin.register(TrainingRecord)
class TrainingRecordAdmin(ReadOnlyAdmin):
    list_display = ("asset", "record_id", "owner_key", "kind", "shard", "slice")
    list_filter = ("asset", "kind", "shard", "slice")
    search_fields = ("record_id", "owner_key")


def plan_summaries(plans: list[dict]) -> str:
    return format_html_join(mark_safe("<br>"), "<b>{}</b> ({}): {}", ((p["model"], p["kind"], p["summary"]) for p in plans)) or "—"


@admin.register(UnlearningJob)
class UnlearningJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "asset", "method", "status", "attempts", "progress", "created_at", "finished_at")
    list_filter = ("status", "method", "asset")
    readonly_fields = ("deletion_plan",)

    @admin.display(description="Deletion plan")
    def deletion_plan(self, job) -> str:
        """Queued: the plan for the requests batched so far; done: the plan it executed."""
        if job.outcome.get("plan_summary"):
            return job.outcome["plan_summary"]
        if job.status != JobStatus.QUEUED:
            return "—"
        return plan_summaries([deletion_plan(job.asset, [r.subject_key for r in job.requests.all()])])
