from django.urls import path

from compliance.portal import views

urlpatterns = [
    path("", views.home, name="portal-home"),
    path("access/", views.access, name="portal-access"),
    path("sign-out/", views.sign_out, name="portal-sign-out"),
    path("requests/<uuid:request_id>/", views.request_status, name="portal-request"),
    path("requests/<uuid:request_id>/progress/", views.request_progress, name="portal-request-progress"),
    path("requests/<uuid:request_id>/verify/", views.verify, name="portal-verify"),
    path("requests/<uuid:request_id>/resend/", views.resend_code, name="portal-resend"),
    path("requests/<uuid:request_id>/cancel/", views.cancel, name="portal-cancel"),
    path("requests/<uuid:request_id>/answer/", views.answer, name="portal-answer"),
    path("requests/<uuid:request_id>/certificate.pdf", views.certificate_download, name="portal-certificate"),
    path("requests/<uuid:request_id>/audits/<int:run_id>/figures/<str:figure>.png", views.audit_figure,
         name="portal-audit-figure"),
    path("requests/<uuid:request_id>/audits/<int:run_id>/<str:filename>", views.audit_download, name="portal-audit-download"),
]
