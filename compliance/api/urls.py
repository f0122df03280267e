from django.urls import path, re_path
from django.urls.resolvers import RoutePattern, URLPattern
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from compliance.api import operator_views, views


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
    endpoint("requests/<str:request_id>/", views.RequestDetailApi.as_view(), name="api-request"),
    endpoint("requests/<str:request_id>/approve/", views.ApproveRequestApi.as_view(), name="api-request-approve"),
    endpoint("requests/<str:request_id>/deny/", views.DenyRequestApi.as_view(), name="api-request-deny"),
    endpoint("requests/<str:request_id>/events/", views.RequestEventsApi.as_view(), name="api-request-events"),
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
    endpoint("schema/", SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]), name="api-schema"),
    endpoint("docs/", SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[],
                                                     authentication_classes=[]), name="api-docs"),
    # Last: whatever the routes above leave is a 404 problem, not Django's HTML page.
    re_path(r"", views.UnroutedApi.as_view(), name="api-unrouted"),
]
