"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED = Path(os.environ.get("REVIEWBOT_SHARED_DATA") or ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: a user's clone has no ../shared."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared/data is absent ({SHARED}); this test uses the shared real data")
    return SHARED
