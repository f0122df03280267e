from django.urls import path, re_path
from django.urls.resolvers import RoutePattern, URLPattern

from compliance.api import docs, operator_views, review_views, views


class SlashOptionalRoute(RoutePattern):
    """A path() route ending in a slash that also matches without it. APPEND_SLASH would answer
    the slashless form (POST .../approve) with a 301, and the client's next request lost its body;
    here it reaches the view. Reversing, and the OpenAPI schema, keep the slash form."""

    def match(self, path):
        return super().match(path if path.endswith("/") else path + "/")


def endpoint(route: str, view, name: str) -> URLPattern:
    """path(route, view, name=name), matched with or without the route's final slash."""
    if not route.endswith("/"):
        raise ValueError(f"{route}: only a route ending in a slash has one to leave out")
    return URLPattern(SlashOptionalRoute(route, name=name, is_endpoint=True), view, name=name)


urlpatterns = [
    endpoint("requests/", views.RequestListApi.as_view(), name="api-requests"),
    # Before requests/<id>/, which would take "bulk-decide" for an id.
    endpoint("requests/bulk-decide/", review_views.BulkDecideApi.as_view(), name="api-requests-bulk-decide"),
    endpoint("requests/<str:request_id>/", views.RequestDetailApi.as_view(), name="api-request"),
    endpoint("requests/<str:request_id>/approve/", views.ApproveRequestApi.as_view(), name="api-request-approve"),
    endpoint("requests/<str:request_id>/deny/", views.DenyRequestApi.as_view(), name="api-request-deny"),
    endpoint("requests/<str:request_id>/events/", views.RequestEventsApi.as_view(), name="api-request-events"),
    endpoint("requests/<str:request_id>/hold/", review_views.HoldRequestApi.as_view(), name="api-request-hold"),
    endpoint("requests/<str:request_id>/resume/", review_views.ResumeRequestApi.as_view(), name="api-request-resume"),
    endpoint("requests/<str:request_id>/ask/", review_views.AskOwnerApi.as_view(), name="api-request-ask"),
    endpoint("requests/<str:request_id>/extend/", review_views.ExtendDeadlineApi.as_view(), name="api-request-extend"),
    endpoint("requests/<str:request_id>/notes/", review_views.RequestNotesApi.as_view(), name="api-request-notes"),
    endpoint("requests/<str:request_id>/certificate/", views.CertificateApi.as_view(), name="api-request-certificate"),
    endpoint("requests/<str:request_id>/audits/", views.AuditRunListApi.as_view(), name="api-request-audits"),
    path("requests/<str:request_id>/audits/<str:run_id>/results.json", views.AuditRunResultsJsonApi.as_view(),
         name="api-audit-results-json"),
    path("requests/<str:request_id>/audits/<str:run_id>/results.csv", views.AuditRunResultsCsvApi.as_view(),
         name="api-audit-results-csv"),
    path("requests/<str:request_id>/audits/<str:run_id>/items.csv", views.AuditRunItemsCsvApi.as_view(),
         name="api-audit-items-csv"),
    endpoint("jobs/<str:job_id>/", views.JobDetailApi.as_view(), name="api-job"),
    endpoint("jobs/<str:job_id>/requeue/", views.RequeueJobApi.as_view(), name="api-job-requeue"),
    endpoint("jobs/<str:job_id>/fail/", views.FailJobApi.as_view(), name="api-job-fail"),
    endpoint("jobs/<str:job_id>/method/", operator_views.ChooseMethodApi.as_view(), name="api-job-method"),
    endpoint("methods/", operator_views.MethodListApi.as_view(), name="api-methods"),
    endpoint("models/", operator_views.ModelListApi.as_view(), name="api-models"),
    endpoint("models/<str:name>/", operator_views.ModelDetailApi.as_view(), name="api-model"),
    endpoint("model-registrations/<str:registration_id>/", operator_views.ModelRegistrationApi.as_view(),
             name="api-model-registration"),
    # The schema and its readers, public, served with no network (compliance.api.docs).
    endpoint("schema/", docs.schema, name="api-schema"),
    endpoint("docs/", docs.swagger_ui, name="api-docs"),
    endpoint("redoc/", docs.redoc, name="api-redoc"),
    # Last: whatever the routes above leave is a 404 problem, not Django's HTML page.
    re_path(r"", views.UnroutedApi.as_view(), name="api-unrouted"),
]
