"""The architecture's two import rules, checked in fresh interpreters."""

import subprocess
import sys

WEB_MODULES = ["config.urls", "compliance.portal.views", "compliance.api.views", "audits.views", "workers.tasks",
               "compliance.services", "unlearning.services", "audits.services", "compliance.admin", "unlearning.admin",
               "unlearning.selectors", "compliance.management.commands.demo",
               "unlearning.management.commands.train_tabular_model"]
ENGINE_MODULES = ["unlearning.world", "unlearning.lm", "unlearning.manifest", "unlearning.methods",
                  "unlearning.demo_world", "unlearning.ensemble", "unlearning.sisa", "unlearning.sisa_lm",
                  "unlearning.s3t", "unlearning.tabular", "unlearning.governed", "unlearning.recipe", "audits.metrics", "audits.scoring", "audits.checks", "audits.verdicts",
                  "audits.signing", "audits.certificate_pdf", "audits.charts", "audits.sets", "audits.power"]


def loaded_after_importing(modules: list[str], setup_django: bool) -> set[str]:
    setup = "import django; django.setup(); " if setup_django else ""
    code = f"import importlib, sys; {setup}[importlib.import_module(m) for m in {modules!r}]; print(' '.join(sys.modules))"
    env = {"DJANGO_SETTINGS_MODULE": "config.settings", "PATH": "/usr/bin:/bin", "CI": "true"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return set(result.stdout.split())


def test_the_web_process_never_imports_torch():
    loaded = loaded_after_importing(WEB_MODULES, setup_django=True)
    assert not {"torch", "transformers", "sklearn"} & loaded


def test_the_ml_engines_never_import_django():
    loaded = loaded_after_importing(ENGINE_MODULES, setup_django=False)
    assert "torch" in loaded  # the check is real: these modules did load
    assert not any(name == "django" or name.startswith("django.") for name in loaded)
