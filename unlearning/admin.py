import json
from dataclasses import asdict

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from compliance.admin import ReadOnlyAdmin, plan_summaries
from compliance.api.permissions import LEGAL_GROUP, ML_OPERATOR_GROUP, in_group
from compliance.errors import ServiceError
from unlearning import services
from unlearning.models import (
    FilterCount, JobStatus, ModelAsset, ModelRegistration, ModelVersion, ServingKey, TrainingRecord, UnlearningJob,
)
from unlearning.methods import METHODS
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
    list_display = ("asset", "role", "sha256", "lineage_sha256", "parent", "produced_by", "served_filters", "created_at")
    list_filter = ("role", "asset")

    @admin.display(description="runtime filters")
    def served_filters(self, version):
        return ", ".join(sorted(version.runtime_filters.get("filters", {}))) or "—"


@admin.register(ServingKey)
class ServingKeyAdmin(ReadOnlyAdmin):
    """Keys are created with `manage.py create_serving_key` (the key is shown once) and revoked here."""

    list_display = ("name", "prefix", "models", "created_by", "created_at", "revoked_at")
    actions = ["revoke"]

    @admin.display(description="models")
    def models(self, key):
        return ", ".join(key.assets.order_by("name").values_list("name", flat=True))

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            services.revoke_serving_key(key_id=key.pk, revoked_by=f"user:{request.user.pk}:{request.user.get_username()}")
        self.message_user(request, f"{queryset.count()} key(s) revoked.", messages.SUCCESS)


@admin.register(FilterCount)
class FilterCountAdmin(ReadOnlyAdmin):
    """What the runtime filters did on served versions, per day: counts only, never a prompt."""

    list_display = ("day", "version", "filter", "action", "reason", "count")
    list_filter = ("filter", "action", "day")


@admin.register(TrainingRecord)
class TrainingRecordAdmin(ReadOnlyAdmin):
    list_display = ("asset", "record_id", "owner_key", "kind", "shard", "slice")
    list_filter = ("asset", "kind", "shard", "slice")
    search_fields = ("record_id", "owner_key")


@admin.register(UnlearningJob)
class UnlearningJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "asset", "method", "status", "attempts", "progress", "heartbeat_at", "created_at", "finished_at")
    list_filter = ("status", "method", "asset")
    readonly_fields = ("deletion_plan", "choose", "progress_message", "history_table")
    actions = ("requeue_stuck_jobs", "fail_stuck_jobs")

    def get_urls(self):
        return [path("<int:job_id>/method/", self.admin_site.admin_view(self.choose_method_view),
                     name="unlearning_unlearningjob_method"), *super().get_urls()]

    def choose_method_view(self, request, job_id: int):
        """An ML operator's choice of method and parameters for a queued job, through its service."""
        if not chooses_methods(request.user):
            raise PermissionDenied("choosing a job's method is for ML operators (the ml-operators group)")
        job = get_object_or_404(UnlearningJob, pk=job_id)
        form = MethodChoiceForm(request.POST or None, initial={"method": job.method, "params": job.params})
        if request.method == "POST" and form.is_valid():
            try:
                services.choose_method(job_id=job.pk, user=request.user, method=form.cleaned_data["method"],
                                       params=form.cleaned_data["params"] or {})
                self.message_user(request, f"Job {job.pk} will run {form.cleaned_data['method']}.", messages.SUCCESS)
                return redirect(reverse("admin:unlearning_unlearningjob_change", args=[job.pk]))
            except ServiceError as error:
                form.add_error(None, error.detail)
        methods = [{"name": m.name, "label": m.label, "citation": m.citation, "defaults": json.dumps(asdict(m.params()))}
                   for m in METHODS.values() if job.asset.kind in m.model_kinds]
        return render(request, "admin/unlearning/choose_method.html",
                      {**self.admin_site.each_context(request), "job": job, "form": form, "methods": methods,
                       "title": f"Method for job {job.pk}"})

    @admin.display(description="Method")
    def choose(self, job) -> str:
        if job.status != JobStatus.QUEUED:
            return f"{job.method} {json.dumps(job.params)}"
        url = reverse("admin:unlearning_unlearningjob_method", args=[job.pk])
        return format_html('{} {} · <a href="{}">choose another method or parameters</a>', job.method,
                           json.dumps(job.params), url)

    @admin.display(description="Evaluations (epoch, step, forget loss, retained loss, retained QA)")
    def history_table(self, job) -> str:
        rows = [f"epoch {p.get('epoch')} · step {p['step']}: forget {p['forget_loss']:.3f}, retained {p['retain_loss']:.3f}"
                + (f", retained QA {p['retained_qa']:.0%}" if "retained_qa" in p else "") for p in job.history]
        return "\n".join(rows) or "—"

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
                                             confirmed_record_ids(job.asset, requests), job=job)])


def chooses_methods(user) -> bool:
    """As on the API: ML operators (not the legal team); a superuser administers everything."""
    return user.is_superuser or (in_group(user, ML_OPERATOR_GROUP) and not in_group(user, LEGAL_GROUP))


class MethodChoiceForm(forms.Form):
    method = forms.ChoiceField(choices=[(name, f"{m.label} ({name})") for name, m in METHODS.items()])
    params = forms.JSONField(required=False, help_text="overrides of the method's defaults, as a JSON object")

    def clean_params(self):
        params = self.cleaned_data["params"]
        if params is not None and not isinstance(params, dict):
            raise forms.ValidationError("the parameters are a JSON object of names and values")
        return params
