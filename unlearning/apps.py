from django.apps import AppConfig


class UnlearningConfig(AppConfig):
    name = "unlearning"
    default_auto_field = "django.db.models.BigAutoField"
