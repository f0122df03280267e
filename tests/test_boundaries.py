"""The web process at run time. `lint-imports` (make test) checks every static import; this checks
what only running shows: Django's app registry, the admin's autodiscovery and Celery's app, as the
web process loads them."""

import subprocess
import sys


def test_the_web_process_loads_no_torch():
    code = ("import django, sys; django.setup(); from django.contrib import admin; admin.autodiscover(); "
            "import config.urls, config.celery; print(' '.join(sys.modules))")
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "PATH": "/usr/bin:/bin", "CI": "true"}
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                check=True).stdout.split())
    assert "workers.pipeline" in loaded and "unlearning.regimes" in loaded  # the check is real: these did load
    assert not {"torch", "transformers", "peft", "sklearn"} & loaded
