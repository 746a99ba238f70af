"""Shared test fixtures and settings."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"

# Derandomised: the same examples on every run, so CI is reproducible (HYPOTHESIS_PROFILE=explore draws fresh ones).
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
                          database=None)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The certificates the tests find are kept in a folder of their own, not in the user's cache
# (checkers/certificate_cache.py); subprocesses inherit it.
os.environ.setdefault("LLMSTAB_CACHE_DIR", tempfile.mkdtemp(prefix="llmstab-test-certificates-"))


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA
