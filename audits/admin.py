from django.contrib import admin

from audits.models import AuditResult, AuditRun, Certificate
from compliance.admin import ReadOnlyAdmin


class AuditResultInline(admin.TabularInline):
    model = AuditResult
    fields = ("metric", "original_value", "unlearned_value", "reference_value", "margin", "sample_size", "verdict")
    readonly_fields = fields
    can_delete = False
    extra = 0


@admin.register(AuditRun)
class AuditRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "job", "status", "verdict", "finished_at")
    inlines = [AuditResultInline]


@admin.register(Certificate)
class CertificateAdmin(ReadOnlyAdmin):
    list_display = ("serial", "request", "issued_at", "pdf_sha256")
