"""Which code produced a result: cited on certificates and stored with every model version a
method produced."""

from __future__ import annotations

import subprocess
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=1)
def code_version() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                cwd=settings.BASE_DIR, timeout=5, check=True).stdout.strip()
        return f"git {commit}"
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
