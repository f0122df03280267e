from django.urls import path

from compliance.console import views

urlpatterns = [
    path("", views.queue, name="console-queue"),
    path("bulk/", views.bulk_decide, name="console-bulk"),
    path("requests/<uuid:request_id>/", views.request_page, name="console-request"),
    path("requests/<uuid:request_id>/approve/", views.approve, name="console-approve"),
    path("requests/<uuid:request_id>/deny/", views.deny, name="console-deny"),
    path("requests/<uuid:request_id>/hold/", views.hold, name="console-hold"),
    path("requests/<uuid:request_id>/resume/", views.resume, name="console-resume"),
    path("requests/<uuid:request_id>/ask/", views.ask_owner, name="console-ask"),
    path("requests/<uuid:request_id>/extend/", views.extend, name="console-extend"),
    path("requests/<uuid:request_id>/notes/", views.add_note, name="console-note"),
]
