"""The store: migrations from empty, from every earlier version and on re-run (on SQLite and
PostgreSQL), WAL, foreign keys, transactions."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from reviewbot.app import store as store_mod
from reviewbot.app.store import MIGRATIONS, Store

TABLES = {
    "installations",
    "repositories",
    "deliveries",
    "jobs",
    "reviews",
    "findings",
    "feedback",
    "model_versions",
    "heartbeats",
    "schema_migrations",
}
NOW = "2026-01-01T00:00:00+00:00"
REPO_SQL = "INSERT INTO repositories (id, installation_id, full_name, added_at) VALUES (?, ?, ?, ?)"


def _schema(store: Store) -> list[tuple[str, str, str]]:
    if store.is_postgres:
        return store.conn.execute(
            "SELECT 'column', table_name || '.' || column_name, "
            "data_type || ' ' || COALESCE(column_default, '') "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "UNION ALL SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "ORDER BY 1, 2"
        ).fetchall()
    return store.conn.execute(
        "SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name"
    ).fetchall()


def _tables(store: Store) -> set[str]:
    if store.is_postgres:
        rows = store.conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    else:
        rows = store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows}


def _install(store: Store, inst_id: int = 1) -> None:
    store.db["installations"].insert({"id": inst_id, "account": "acme", "created_at": NOW})


def test_migration_versions_are_consecutive_from_one() -> None:
    versions = [v for v, _, _ in MIGRATIONS]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    assert all(desc.strip() for _, desc, _ in MIGRATIONS)


@pytest.mark.empty_database
def test_migrate_from_empty_creates_every_table(database: str) -> None:
    store = Store.open(database)
    try:
        assert set(_tables(store)) >= TABLES
        assert store.schema_version() == MIGRATIONS[-1][0]
        rows = store.conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert [r[0] for r in rows] == [v for v, _, _ in MIGRATIONS]
    finally:
        store.close()


@pytest.mark.empty_database
def test_migrate_reports_what_it_applied_and_rerun_is_a_noop(database: str) -> None:
    path = database
    store = Store.open(path, migrate_now=False)
    assert store.schema_version() == 0
    assert store.migrate(now=lambda: NOW) == [v for v, _, _ in MIGRATIONS]
    before = _schema(store)
    assert store.migrate() == []
    assert _schema(store) == before
    store.close()

    again = Store.open(path)  # a restart: migrations run on start and change nothing
    try:
        assert again.migrate() == []
        assert _schema(again) == before
        stamps = again.conn.execute("SELECT DISTINCT applied_at FROM schema_migrations").fetchall()
        assert stamps == [(NOW,)]
    finally:
        again.close()


def test_failed_migration_rolls_back_entirely(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = database
    Store.open(path).close()
    broken = (
        len(MIGRATIONS) + 1,
        "broken on purpose",
        "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);",
    )
    monkeypatch.setattr(store_mod, "MIGRATIONS", [*MIGRATIONS, broken])
    store = Store.open(path, migrate_now=False)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="no_such_table"):
            store.migrate()
        assert "half_done" not in _tables(store)
        assert store.schema_version() == MIGRATIONS[-1][0]
    finally:
        store.close()


@pytest.mark.empty_database
def test_concurrent_starts_apply_each_migration_once(database: str) -> None:
    path = database
    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    stores: list[Store] = []
    lock = threading.Lock()

    def start() -> None:
        barrier.wait()
        try:
            s = Store.open(path)
            with lock:
                stores.append(s)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert errors == []
        rows = stores[0].conn.execute("SELECT version, COUNT(*) FROM schema_migrations GROUP BY version")
        assert dict(rows.fetchall()) == {v: 1 for v, _, _ in MIGRATIONS}
    finally:
        for s in stores:
            s.close()


@pytest.mark.empty_database
@pytest.mark.parametrize("from_version", range(len(MIGRATIONS)))
def test_migrate_from_every_earlier_version_keeps_the_data(
    database: str, from_version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database left at any earlier version (with data in it) migrates to the latest, and
    ends with the same schema as one migrated from empty."""
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:from_version])
    old = Store.open(database)
    assert old.schema_version() == from_version
    if from_version >= 1:
        old.conn.execute(
            "INSERT INTO installations (id, account, created_at) VALUES (?, ?, ?)",
            (5_000_000_000, "acme", NOW),
        )
        old.conn.execute(REPO_SQL, (7_000_000_000, 5_000_000_000, "acme/shop", NOW))
        old.conn.execute(
            "INSERT INTO jobs (kind, repo, pr, run_after, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            ("review", "acme/shop", 1, NOW, NOW, NOW),
        )
        old.conn.execute(
            "INSERT INTO model_versions (scope, version, params, created_at) VALUES (?, ?, ?, ?)",
            ("repo:acme/shop", 1, "{}", NOW),
        )
    old.close()
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS)
    store = Store.open(database)
    try:
        assert store.schema_version() == MIGRATIONS[-1][0]
        assert _tables(store) >= TABLES
        if from_version >= 1:
            assert store.conn.execute("SELECT id, account FROM installations").fetchall() == [
                (5_000_000_000, "acme")
            ]
            job = store.conn.execute("SELECT kind, state, lease_losses FROM jobs").fetchone()
            assert tuple(job) == ("review", "queued", 0)
            # migration 5 backfilled the model's installation from the repository
            row = store.conn.execute("SELECT installation_id FROM model_versions").fetchone()
            assert row[0] == (5_000_000_000 if from_version < 5 else None)
        # a new job still gets an id of its own after the old one
        cur = store.conn.execute(
            "INSERT INTO jobs (kind, run_after, created_at, updated_at) VALUES ('poll', ?, ?, ?)",
            (NOW, NOW, NOW),
        )
        assert cur.lastrowid == (2 if from_version >= 1 else 1)
    finally:
        store.close()


def test_file_database_uses_wal(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "reviewbot.db")
    try:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        _install(store)
        assert (tmp_path / "reviewbot.db-wal").exists()
        # A second connection (another process in production) sees committed rows while we are open.
        other = sqlite3.connect(tmp_path / "reviewbot.db")
        assert other.execute("SELECT account FROM installations").fetchall() == [("acme",)]
        other.close()
    finally:
        store.close()


def test_memory_database_works() -> None:
    store = Store.open(":memory:")
    try:
        assert set(store.db.table_names()) >= TABLES
        _install(store)
        assert store.db["installations"].count == 1
    finally:
        store.close()


def test_foreign_keys_are_enforced_and_cascade(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "reviewbot.db")
    try:
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            store.conn.execute(REPO_SQL, (1, 99, "a/b", NOW))
        _install(store)
        store.conn.execute(REPO_SQL, (1, 1, "acme/app", NOW))
        assert store.db["repositories"].count == 1
        store.conn.execute("DELETE FROM installations WHERE id = 1")
        assert store.db["repositories"].count == 0
    finally:
        store.close()


def test_one_review_per_pr_head_sha(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "reviewbot.db")
    try:
        row = {"repo": "acme/app", "pr": 7, "head_sha": "abc", "created_at": NOW}
        store.db["reviews"].insert(row)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            store.db["reviews"].insert(row)
        store.db["reviews"].insert({**row, "head_sha": "def"})
        assert store.db["reviews"].count == 2
    finally:
        store.close()


def test_transaction_commits_on_success_and_rolls_back_on_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "reviewbot.db")
    try:
        with store.transaction() as conn:
            conn.execute("INSERT INTO heartbeats (worker, at) VALUES ('w1', ?)", (NOW,))
        assert store.db["heartbeats"].count == 1

        with pytest.raises(RuntimeError, match="boom"), store.transaction() as conn:
            conn.execute("INSERT INTO heartbeats (worker, at) VALUES ('w2', ?)", (NOW,))
            conn.execute("UPDATE heartbeats SET at = 'changed' WHERE worker = 'w1'")
            raise RuntimeError("boom")
        assert store.conn.execute("SELECT worker, at FROM heartbeats").fetchall() == [("w1", NOW)]
        assert not store.conn.in_transaction

        # A constraint failure inside the block also rolls back what came before it.
        with pytest.raises(sqlite3.IntegrityError), store.transaction() as conn:
            conn.execute("INSERT INTO heartbeats (worker, at) VALUES ('w3', ?)", (NOW,))
            conn.execute("INSERT INTO heartbeats (worker, at) VALUES ('w1', ?)", (NOW,))
        assert store.db["heartbeats"].count == 1
    finally:
        store.close()
