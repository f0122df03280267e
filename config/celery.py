"""The Celery app. Workers run `celery -A config worker -Q gpu,cpu`; one per GPU on the gpu queue."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("unlearning_compliance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])
