from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from compliance.api import operator_views, views

urlpatterns = [
    path("requests/", views.RequestListApi.as_view(), name="api-requests"),
    path("requests/<str:request_id>/", views.RequestDetailApi.as_view(), name="api-request"),
    path("requests/<str:request_id>/approve/", views.ApproveRequestApi.as_view(), name="api-request-approve"),
    path("requests/<str:request_id>/deny/", views.DenyRequestApi.as_view(), name="api-request-deny"),
    path("requests/<str:request_id>/events/", views.RequestEventsApi.as_view(), name="api-request-events"),
    path("requests/<str:request_id>/certificate/", views.CertificateApi.as_view(), name="api-request-certificate"),
    path("requests/<str:request_id>/audits/", views.AuditRunListApi.as_view(), name="api-request-audits"),
    path("requests/<str:request_id>/audits/<str:run_id>/results.json", views.AuditRunResultsJsonApi.as_view(),
         name="api-audit-results-json"),
    path("requests/<str:request_id>/audits/<str:run_id>/results.csv", views.AuditRunResultsCsvApi.as_view(),
         name="api-audit-results-csv"),
    path("requests/<str:request_id>/audits/<str:run_id>/items.csv", views.AuditRunItemsCsvApi.as_view(),
         name="api-audit-items-csv"),
    path("jobs/<str:job_id>/", views.JobDetailApi.as_view(), name="api-job"),
    path("jobs/<str:job_id>/requeue/", views.RequeueJobApi.as_view(), name="api-job-requeue"),
    path("jobs/<str:job_id>/fail/", views.FailJobApi.as_view(), name="api-job-fail"),
    path("jobs/<str:job_id>/method/", operator_views.ChooseMethodApi.as_view(), name="api-job-method"),
    path("methods/", operator_views.MethodListApi.as_view(), name="api-methods"),
    path("models/", operator_views.ModelListApi.as_view(), name="api-models"),
    path("models/<str:name>/", operator_views.ModelDetailApi.as_view(), name="api-model"),
    path("model-registrations/<str:registration_id>/", operator_views.ModelRegistrationApi.as_view(),
         name="api-model-registration"),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[], authentication_classes=[]), name="api-docs"),
]
