"""The serving process: the OpenAI-compatible endpoint (unlearning.endpoint), which loads torch and
the governed models; the web process (config.wsgi) never does. `make serve-models` runs it."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["ROOT_URLCONF"] = "config.serving_urls"
application = get_wsgi_application()
