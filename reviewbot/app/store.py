"""The store: SQLite (one file, WAL mode; the embedded default) or PostgreSQL (a
`postgresql://` URL, for more than one machine), with the same versioned migrations on both.

Every table is described where it is created. One module owns each table's SQL: queue.py the
`jobs` and `deliveries`, worker.py `installations` and `repositories`, records.py `reviews`,
`findings`, `feedback`, `model_versions` and `reaction_polls` (tenant-scoped). This module only
owns the schema and opening the database safely. The SQL is written once, SQLite-flavoured;
reviewbot.app.dialect runs it on PostgreSQL (see docs/deploy.md for why not an ORM).

Transactions: on SQLite `BEGIN IMMEDIATE` takes the one writer lock. On PostgreSQL
`transaction()` takes a transaction-scoped advisory lock that plays the same part, so every
read-then-write the modules do keeps SQLite's serial semantics; the queue's claim opts out
(`serialized=False`) and locks only the rows it takes (`FOR UPDATE SKIP LOCKED`), so workers on
many hosts claim in parallel.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from reviewbot.app.dialect import (
    CommitUnknown,
    Connection,
    ConnectionLost,
    PgConnection,
    PoolLimits,
    is_postgres_url,
    pg_ddl,
    redact_url,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The advisory lock `transaction()` holds on PostgreSQL (SQLite's writer lock), and the one
#: migrations hold (a second process starting at the same moment waits, then finds them applied).
WRITE_LOCK_KEY = 0x7265766965776274  # "reviewbt"

# Each migration is (version, description, DDL). Append only; never edit a shipped one.
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
        -- An installation of the GitHub App on an account (org or user).
        CREATE TABLE IF NOT EXISTS installations (
            id INTEGER PRIMARY KEY,              -- GitHub installation id
            account TEXT NOT NULL,               -- org or user login
            account_type TEXT,                   -- 'Organization' or 'User'
            created_at TEXT NOT NULL,
            suspended_at TEXT
        );
        -- A repository reviewbot can see through an installation.
        CREATE TABLE IF NOT EXISTS repositories (
            id INTEGER PRIMARY KEY,              -- GitHub repository id
            installation_id INTEGER NOT NULL REFERENCES installations(id) ON DELETE CASCADE,
            full_name TEXT NOT NULL UNIQUE,      -- 'owner/name'
            default_branch TEXT,
            paused INTEGER NOT NULL DEFAULT 0,   -- set by '@reviewbot pause'
            added_at TEXT NOT NULL
        );
        -- A webhook delivery as received; the delivery id makes redelivery a no-op.
        CREATE TABLE IF NOT EXISTS deliveries (
            id TEXT PRIMARY KEY,                 -- X-GitHub-Delivery
            event TEXT NOT NULL,
            action TEXT,
            installation_id INTEGER,
            repo TEXT,
            received_at TEXT NOT NULL,
            job_id INTEGER                       -- the job it created, if any
        );
        -- A unit of background work (a PR review, a feedback poll, a retrain) with its lease.
        CREATE TABLE IF NOT EXISTS jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,                  -- 'review', 'poll_feedback', 'retrain', ...
            installation_id INTEGER,
            repo TEXT,
            pr INTEGER,
            head_sha TEXT,
            payload TEXT NOT NULL DEFAULT '{}',  -- JSON
            state TEXT NOT NULL DEFAULT 'queued',-- queued | running | done | failed | dead | superseded
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 5,
            run_after TEXT NOT NULL,             -- not claimable before this time (backoff)
            lease_owner TEXT,
            lease_expires_at TEXT,
            heartbeat_at TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(state, run_after);
        CREATE INDEX IF NOT EXISTS jobs_pr ON jobs(repo, pr, state);
        -- One review run of a PR at one head SHA; (repo, pr, head_sha) is unique.
        CREATE TABLE IF NOT EXISTS reviews (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            installation_id INTEGER,
            repo TEXT NOT NULL,
            pr INTEGER NOT NULL,
            head_sha TEXT NOT NULL,
            base_sha TEXT,
            state TEXT NOT NULL DEFAULT 'pending', -- pending | posted | failed
            github_review_id INTEGER,
            check_run_id INTEGER,
            funnel TEXT NOT NULL DEFAULT '{}',     -- JSON Funnel
            usage TEXT NOT NULL DEFAULT '{}',      -- JSON LLMUsage
            created_at TEXT NOT NULL,
            posted_at TEXT,
            UNIQUE (repo, pr, head_sha)
        );
        -- A candidate after the filter: posted or suppressed, with score, severity and reason.
        CREATE TABLE IF NOT EXISTS findings (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            review_id INTEGER NOT NULL REFERENCES reviews(id) ON DELETE CASCADE,
            installation_id INTEGER,
            repo TEXT NOT NULL,
            pr INTEGER NOT NULL,
            path TEXT,
            line INTEGER,
            end_line INTEGER,
            side TEXT,
            title TEXT,
            body TEXT NOT NULL,
            severity TEXT,
            category TEXT,
            source TEXT,
            rule_id TEXT,
            symbol TEXT,
            score REAL,
            decision TEXT NOT NULL,              -- 'post' | 'suppress'
            reason TEXT,
            cluster TEXT,
            fingerprint TEXT NOT NULL,
            explore INTEGER NOT NULL DEFAULT 0,  -- posted as exploration near the threshold
            github_comment_id INTEGER,
            features TEXT NOT NULL DEFAULT '{}', -- JSON features the acceptance model saw
            created_at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS findings_repo ON findings(repo, pr);
        CREATE INDEX IF NOT EXISTS findings_fp ON findings(repo, fingerprint);
        CREATE INDEX IF NOT EXISTS findings_comment ON findings(github_comment_id);
        -- A label on a finding (accepted | dismissed), where it came from, and when.
        CREATE TABLE IF NOT EXISTS feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            finding_id INTEGER REFERENCES findings(id) ON DELETE CASCADE,
            installation_id INTEGER,
            repo TEXT NOT NULL,
            label TEXT NOT NULL,                 -- 'accepted' | 'dismissed' | 'weak_dismissed'
            source TEXT NOT NULL,                -- 'reaction' | 'reply' | 'thread' | 'commit' | ...
            provenance TEXT NOT NULL DEFAULT '{}', -- JSON: who, which comment/reaction/commit
            weight REAL NOT NULL DEFAULT 1.0,
            at TEXT NOT NULL,
            UNIQUE (finding_id, source, provenance)
        );
        CREATE INDEX IF NOT EXISTS feedback_repo ON feedback(repo, at);
        -- A trained acceptance model for a scope ('global', 'org:<login>', 'repo:<owner/name>').
        CREATE TABLE IF NOT EXISTS model_versions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            installation_id INTEGER,
            scope TEXT NOT NULL,
            version INTEGER NOT NULL,
            params TEXT NOT NULL,                -- JSON parameters; never pickle
            metrics TEXT NOT NULL DEFAULT '{}',  -- JSON
            n_labels INTEGER NOT NULL DEFAULT 0,
            active INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (scope, version)
        );
        -- Worker liveness, for /healthz.
        CREATE TABLE IF NOT EXISTS heartbeats (
            worker TEXT PRIMARY KEY,
            at TEXT NOT NULL
        );
        """,
    ),
    (
        2,
        "feedback: reaction poll ETags",
        """
        -- The last conditional GET of a bot comment's reactions: its ETag makes the next poll a
        -- 304 that costs no rate limit when nothing changed.
        CREATE TABLE IF NOT EXISTS reaction_polls (
            github_comment_id INTEGER PRIMARY KEY,
            repo TEXT NOT NULL,
            etag TEXT,
            last_status INTEGER,
            polled_at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS feedback_finding ON feedback(finding_id);
        """,
    ),
    (
        3,
        "jobs: dedupe key and supersession (queue.py)",
        """
        -- At most one live (queued or running) job per dedupe key: a redelivered event under a new
        -- delivery id cannot queue the same work twice.
        ALTER TABLE jobs ADD COLUMN dedupe_key TEXT;
        ALTER TABLE jobs ADD COLUMN superseded_by INTEGER;
        CREATE UNIQUE INDEX IF NOT EXISTS jobs_dedupe_live ON jobs(dedupe_key)
            WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');
        CREATE INDEX IF NOT EXISTS jobs_installation ON jobs(installation_id, state);
        """,
    ),
    (
        4,
        "jobs: head recency for supersession, lease losses counted apart from errors (queue.py)",
        """
        -- When the event's PR was last updated (pull_request.updated_at): a review job supersedes
        -- only queued jobs of an OLDER head, so a late or redelivered event never cancels a newer one.
        ALTER TABLE jobs ADD COLUMN head_at TEXT;
        -- Runs whose lease ran out (the worker died or hung): counted apart from failed attempts,
        -- with their own, higher cap (a job that kills every worker is poison).
        ALTER TABLE jobs ADD COLUMN lease_losses INTEGER NOT NULL DEFAULT 0;
        -- Claiming under a backlog: expired leases by their own index; due jobs in (run_after, id)
        -- order come from jobs_claim (its rowid is the id).
        CREATE INDEX IF NOT EXISTS jobs_lease ON jobs(state, lease_expires_at);
        """,
    ),
    (
        5,
        "model_versions: installation id backfilled (records.py reads models by installation)",
        """
        -- Before records.py, retrain wrote model versions without an installation id; the repo's
        -- installation owns them. A version whose repo is not installed stays NULL: nobody's.
        UPDATE model_versions SET installation_id = (
            SELECT r.installation_id FROM repositories r WHERE 'repo:' || r.full_name = model_versions.scope
        ) WHERE installation_id IS NULL;
        CREATE INDEX IF NOT EXISTS findings_tenant ON findings(installation_id, repo, decision);
        CREATE INDEX IF NOT EXISTS feedback_tenant ON feedback(installation_id, repo);
        """,
    ),
    (
        6,
        "health: the worker's GitHub authentication and the server's write probe",
        """
        -- NULL: not checked yet; 'ok'; else why GitHub refused the App's credentials.
        ALTER TABLE heartbeats ADD COLUMN github_auth TEXT;
        -- One row /healthz rewrites: a database it cannot write is not healthy.
        CREATE TABLE IF NOT EXISTS write_probe (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            pad BLOB
        );
        """,
    ),
]

#: The write probe allocates this much, so a database that cannot grow fails it like a delivery.
WRITE_PROBE_BYTES = 16 * 1024


BUSY_TIMEOUT_MS = 30000  # how long a SQLite write waits for another connection's writer lock


class StoreBusy(Exception):
    """Another connection holds SQLite's writer lock (from `Store.transaction_now`)."""


class Store:
    """An open reviewbot database. Build one at the edge and pass it in."""

    def __init__(
        self, conn: Connection, path: str, dialect: str = "sqlite", pool: PoolLimits | None = None
    ) -> None:
        self.conn: Any = conn  # sqlite3.Connection or dialect.PgConnection: one execute() API
        self.path = path
        self.dialect = dialect
        self.pool = pool
        self._db: sqlite_utils.Database | None = (
            sqlite_utils.Database(conn) if isinstance(conn, sqlite3.Connection) else None
        )

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the SQLite connection (tests and tools; not on PostgreSQL)."""
        if self._db is None:
            raise RuntimeError("sqlite-utils needs the SQLite store; this one is PostgreSQL")
        return self._db

    @property
    def display(self) -> str:
        """Where the data lives, safe to log (a URL without its password)."""
        return redact_url(self.path) if self.is_postgres else self.path

    @classmethod
    def open(cls, path: str | Path, *, migrate_now: bool = True, pool: PoolLimits | None = None) -> Store:
        """Open (creating if needed) the database at `path` (':memory:' works; a
        `postgresql://` URL opens PostgreSQL, with a connection pool of `pool`'s size) and
        migrate it."""
        path = str(path)
        if is_postgres_url(path):
            store = cls(PgConnection.connect(path, pool), path, "postgresql", pool)
            if migrate_now:
                store.migrate()
            return store
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        store = cls(conn, path)
        if migrate_now:
            store.migrate()
        return store

    def reopen(self) -> Store:
        """Another connection to the same database (a thread or a listener of its own)."""
        return Store.open(self.path, migrate_now=False, pool=self.pool)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction_now(self) -> Iterator[Any]:
        """`transaction()` on SQLite, but raises StoreBusy at once instead of waiting (up to
        busy_timeout) when another connection holds the writer lock: the server then writes on a
        thread instead of stalling its event loop. Only for SQLite (PostgreSQL always waits)."""
        assert not self.is_postgres, "transaction_now is SQLite's"
        self.conn.execute("PRAGMA busy_timeout = 0")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy(str(exc)) from exc
            raise
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    @contextmanager
    def transaction(self, *, serialized: bool = True) -> Iterator[Any]:
        """BEGIN ... COMMIT, rolled back on any exception. SQLite: BEGIN IMMEDIATE (the writer
        lock). PostgreSQL: the advisory write lock too, unless `serialized=False` (the caller
        locks the rows it writes), on one pooled connection kept by this thread until COMMIT; a
        connection that dies meanwhile raises dialect.ConnectionLost (nothing committed) or,
        in COMMIT itself, CommitUnknown. `run_transaction` retries the first."""
        if self.is_postgres:
            with self.conn.transaction(WRITE_LOCK_KEY if serialized else None) as conn:
                yield conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:  # SQLite ends it itself on some errors (SQLITE_FULL)
                self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def run_transaction(self, body: Callable[[Any], T], *, serialized: bool = True) -> T:
        """`body(conn)` inside `transaction()`. On PostgreSQL a transaction whose connection died
        before COMMIT (a restart, a terminated backend: PostgreSQL rolled it back) runs once more
        on a fresh connection; a death during COMMIT is not retried (it may have committed).
        `body` must do nothing but database work, as it may run twice."""
        try:
            with self.transaction(serialized=serialized) as conn:
                return body(conn)
        except CommitUnknown:
            raise
        except ConnectionLost as exc:
            log.warning("PostgreSQL connection lost in a transaction (rolled back); again: %s", exc)
        with self.transaction(serialized=serialized) as conn:
            return body(conn)

    def probe_write(self, now: str) -> None:
        """Commit a small write (and free it again); raises sqlite3.Error when the file is
        read-only, the disk or the database is full, or the lock cannot be had: what would make
        every webhook delivery fail."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM write_probe")
            conn.execute("INSERT INTO write_probe (at, pad) VALUES (?, ?)", (now, bytes(WRITE_PROBE_BYTES)))

    def schema_version(self) -> int:
        if self.is_postgres:
            with self.transaction():  # CREATE TABLE IF NOT EXISTS races between processes there
                return self._schema_version()
        return self._schema_version()

    def _schema_version(self) -> int:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        row = self.conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def migrate(self, now: Callable[[], str] | None = None) -> list[int]:
        """Apply every migration newer than the database; returns the versions applied."""
        from datetime import UTC, datetime

        stamp = now or (lambda: datetime.now(UTC).isoformat())
        applied: list[int] = []
        current = self.schema_version()
        for version, description, ddl in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction() as conn:
                # Re-check under the write lock: another process (a second worker starting at the
                # same moment) may have applied it since we read `current`; ALTER TABLE is not
                # idempotent, so applying it twice would fail.
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                    continue
                for statement in _split_sql(ddl):
                    conn.execute(pg_ddl(statement) if self.is_postgres else statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                    (version, description, stamp()),
                )
            applied.append(version)
        return applied


#: Tables `copy_rows` moves, parents before children (foreign keys); heartbeats and the write
#: probe are per-process state, schema_migrations is the destination's own.
COPIED_TABLES = (
    "installations",
    "repositories",
    "deliveries",
    "jobs",
    "reviews",
    "findings",
    "feedback",
    "model_versions",
    "reaction_polls",
)


def columns(store: Store, table: str) -> list[str]:
    """The table's columns in order."""
    if store.is_postgres:
        rows = store.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ? ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    else:
        rows = [(r[1],) for r in store.conn.execute(f"PRAGMA table_info({table})").fetchall()]
    return [r[0] for r in rows]


def copy_rows(
    src: Store, dst: Store, *, batch: int = 1000, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Copy every row of COPIED_TABLES from `src` into `dst` (both migrated to the same version;
    `dst` empty), in one transaction on `dst`, keeping ids; PostgreSQL's id sequences are then
    moved past the copied ids. Returns rows copied per table."""
    if src.schema_version() != dst.schema_version():
        raise ValueError(f"schema versions differ: {src.schema_version()} -> {dst.schema_version()}")
    nonempty = [t for t in COPIED_TABLES if dst.conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
    if nonempty:
        raise ValueError(f"the destination is not empty ({', '.join(nonempty)}): copy into a new database")
    copied: dict[str, int] = {}
    with dst.transaction() as conn:
        for table in COPIED_TABLES:
            cols = columns(src, table)
            names = ", ".join(cols)
            insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})"
            rows = src.conn.execute(f"SELECT {names} FROM {table} ORDER BY 1")
            n = 0
            while chunk := rows.fetchmany(batch):
                conn.executemany(insert, chunk)
                n += len(chunk)
                if progress:
                    progress(table, n)
            copied[table] = n
        if dst.is_postgres:
            for table in COPIED_TABLES:
                if (
                    "id" in columns(dst, table)
                    and conn.execute("SELECT pg_get_serial_sequence(?, 'id')", (table,)).fetchone()[0]
                ):
                    conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                    )
    return copied


def _split_sql(ddl: str) -> list[str]:
    """Split a migration into statements (our DDL has no ';' inside literals)."""
    lines = [ln.split("--", 1)[0] for ln in ddl.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
