from django.contrib import admin

from compliance.admin import ReadOnlyAdmin
from unlearning.models import ModelAsset, ModelVersion, TrainingRecord, UnlearningJob


@admin.register(ModelAsset)
class ModelAssetAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "architecture", "current_version", "created_at")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("asset", "role", "sha256", "parent", "produced_by", "created_at")
    list_filter = ("role", "asset")


@admin.register(TrainingRecord)
class TrainingRecordAdmin(ReadOnlyAdmin):
    list_display = ("asset", "record_id", "owner_key", "kind")
    list_filter = ("asset", "kind")
    search_fields = ("record_id", "owner_key")


@admin.register(UnlearningJob)
class UnlearningJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "asset", "method", "status", "attempts", "progress", "created_at", "finished_at")
    list_filter = ("status", "method", "asset")
