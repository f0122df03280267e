from django.contrib import admin
from django.http import HttpResponse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from compliance import throttles
from compliance.errors import TooManyRequests
from compliance.models import AuditEvent, RemovalRequest


def throttled_login(http_request, extra_context=None):
    """The admin's login, with each client's attempts limited (staff passwords are worth guessing)."""
    if http_request.method == "POST":
        try:
            throttles.spend(throttles.ADMIN_LOGINS, http_request)
        except TooManyRequests as error:
            response = HttpResponse(error.detail, status=429, content_type="text/plain; charset=utf-8")
            response["Retry-After"] = str(error.retry_after)
            return response
    return admin.site.login(http_request, extra_context)
from compliance.selectors import pending_deletion_plans, pending_forget_review


def plan_summaries(plans: list[dict]) -> str:
    return format_html_join(mark_safe("<br>"), "<b>{}</b> ({}): {}", ((p["model"], p["kind"], p["summary"]) for p in plans)) or "—"


class ReadOnlyAdmin(admin.ModelAdmin):
    """State changes go through services (with their audit events), never through admin edits."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RemovalRequest)
class RemovalRequestAdmin(ReadOnlyAdmin):
    list_display = ("reference", "status", "jurisdiction", "received_at", "due_at", "failed_step")
    list_filter = ("status", "jurisdiction")
    search_fields = ("reference", "email", "full_name")
    readonly_fields = ("deletion_plans", "forget_review")

    @admin.display(description="Deletion plans (before scheduling)")
    def deletion_plans(self, request) -> str:
        return plan_summaries(pending_deletion_plans(request))

    @admin.display(description="Forget review: linked records and near matches (confirm them on approval)")
    def forget_review(self, request) -> str:
        return format_html_join(mark_safe("<br>"), "<b>{}</b>: {} linked records; near matches: {}", (
            (review["model"], len(review["linked_records"]),
             "; ".join(f"{m['record_id']} ({m['matched']}: …{m['snippet']}…)" for m in review["near_matches"]) or "none")
            for review in pending_forget_review(request))) or "—"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "at", "actor", "action", "object_type", "object_id")
    list_filter = ("action", "object_type")
