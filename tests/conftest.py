"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reviewbot.app.store import Store
from tests.fakes.clock import ManualClock
from tests.pg_cluster import Cluster, cluster_from_env

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


#: Suites that run against both databases: every test of theirs that asks for `database` (or
#: `store`) runs once on SQLite and once on PostgreSQL. Others run on SQLite only.
BOTH_DATABASES = {
    "test_store",
    "test_queue",
    "test_worker",
    "test_records",
    "test_app_e2e",
    "test_crash_recovery",
    "test_postgres",
    "test_db_copy",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    kinds = ["sqlite", "postgresql"] if module in BOTH_DATABASES else ["sqlite"]
    if module == "test_postgres":
        kinds = ["postgresql"]
    metafunc.parametrize("database", kinds, indirect=True)


_PG: list[tuple[Cluster | None, str]] = []


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The session's PostgreSQL (see tests/pg_cluster.py), or skip saying why there is none."""
    if not _PG:
        _PG.append(cluster_from_env())
    cluster, why = _PG[0]
    if cluster is None:
        pytest.skip(why)
    yield cluster


def pytest_sessionfinish(session: pytest.Session) -> None:
    for cluster, _why in _PG:
        if cluster is not None:
            cluster.stop()


@pytest.fixture()
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a test's store lives: a SQLite file, or a fresh, migrated PostgreSQL database
    (an empty one for a test marked `empty_database`)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield str(tmp_path / "reviewbot.db")
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    url = cluster.fresh_database(migrated=request.node.get_closest_marker("empty_database") is None)
    yield url
    cluster.drop(url)


@pytest.fixture()
def store(database: str) -> Iterator[Store]:
    """A fresh, migrated store (a SQLite file in WAL mode, so threads and other processes can
    share it, or PostgreSQL in the suites that run on both); a test module may define its own,
    seeded one."""
    s = Store.open(database)
    yield s
    s.close()


@pytest.fixture()
def clock() -> ManualClock:
    """A clock that moves only when a test moves it (starts at the real time)."""
    return ManualClock()


@pytest.fixture()
def world(tmp_path: Path, database: str) -> Iterator[World]:
    """The App end to end (fake GitHub and fake LLM over HTTP) with its worker running; a test
    module with another kind of world (tenants, faults) defines its own."""
    from tests.test_app_e2e import World

    w = World(tmp_path, database=database)
    w.start_worker()
    yield w
    w.close()
