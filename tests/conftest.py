"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reviewbot.store import Store
from tests.fakes.clock import ManualClock

if TYPE_CHECKING:
    from tests.test_app_e2e import World

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


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store in a file (WAL, so threads and other processes can share it);
    a test module may define its own, seeded one."""
    s = Store.open(tmp_path / "reviewbot.db")
    yield s
    s.close()


@pytest.fixture()
def clock() -> ManualClock:
    """A clock that moves only when a test moves it (starts at the real time)."""
    return ManualClock()


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    """The App end to end (fake GitHub and fake LLM over HTTP) with its worker running; a test
    module with another kind of world (tenants, faults) defines its own."""
    from tests.test_app_e2e import World

    w = World(tmp_path)
    w.start_worker()
    yield w
    w.close()
