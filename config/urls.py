from django.contrib import admin
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from audits import views as verify_views
from compliance import admin as compliance_admin
from compliance import health, metrics

urlpatterns = [
    path("", include("compliance.portal.urls")),
    path("api/v1/", include("compliance.api.urls")),
    path("console/", include("compliance.console.urls")),  # the legal team's review console
    # The public verify page takes uploads from anyone holding a certificate: there is no session to protect.
    path("verify/", verify_views.verify_landing, name="verify-landing"),
    path("verify/<str:serial>/", csrf_exempt(verify_views.verify_certificate), name="verify-certificate"),
    path("ca.pem", verify_views.ca_certificate, name="ca-certificate"),
    path("admin/login/", compliance_admin.throttled_login),  # before the admin's own login route
    path("admin/", admin.site.urls),
    # Operations (README "Operations"): liveness, readiness, and Prometheus' scrape (token or loopback only).
    path("health/", health.liveness, name="health"),
    path("ready/", health.readiness, name="ready"),
    path("metrics", metrics.scrape, name="metrics"),
]
