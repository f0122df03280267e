from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Pipeline and workers"

    def ready(self):
        from workers import pipeline  # noqa: F401  (connects the pipeline's receivers to the domain events)
