"""A durable job queue in the `jobs` table: leases, heartbeats, retries, dead letters.

Why a table and leases: a job survives a crash of the process that took it. A worker claims a job
with a lease (SQLite: BEGIN IMMEDIATE; PostgreSQL: the candidate rows locked FOR UPDATE SKIP
LOCKED, so two workers never claim the same row), extends the lease while
it runs, and a job whose lease ran out (its worker died) is claimed again. Failures retry with
exponential backoff (`run_after`) and end as 'dead' with the reason after `max_attempts`.

A run whose lease ran out (its worker was killed, or hung) is not a failure of the job: it is
counted apart (`lease_losses`) with its own, higher cap (`max_lease_losses`), so bad luck -- a host
restarting workers -- never dead-letters a healthy job, while a job that kills every worker that
takes it (poison) is still dead-lettered, with that reason. `attempts` counts every run (it is
also the lease's fencing token); failed attempts are `attempts - lease_losses`.

Supersession goes by head recency, not arrival order: a review job carries `head_at` (the PR's
`updated_at` in the event) and cancels only queued jobs of the same PR with an OLDER `head_at`; an
event older than a live job's is born superseded. Without `head_at` nothing is superseded (the
review handler still skips a head that is no longer the PR's).

Times are stored as ISO-8601 UTC strings with a fixed width, so SQL compares them as text. The
clock is injected (`clock() -> epoch seconds`): tests move time instead of sleeping.

A SQLite `Store` holds one sqlite3 connection; every method here takes `self.lock` so threads
sharing a queue (the server's request threads) never interleave transactions. (On PostgreSQL the
store is a pool and a transaction keeps its own connection; the lock stays, harmless.) The
transactions here go through `Store.run_transaction`: on PostgreSQL one whose connection died
before COMMIT runs once more on a fresh connection. Code that writes to the same
store from several threads should hold `queue.lock` too (the server does).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from reviewbot.app.dialect import JOBS_CHANNEL, listen
from reviewbot.app.store import Store, StoreBusy

LIVE_STATES = ("queued", "running")
#: PostgreSQL advisory-lock class for "deciding about this installation's limit" (see _room_pg).
INSTALLATION_LOCK_CLASS = 0x7262
CLAIM_BATCH = 8  # candidates read per query when claiming (the per-installation limit is checked on them)
SUPERSEDING_KINDS = frozenset({"review"})
#: Claim order: expired leases (their worker died) before queued jobs.
STATES = ("running", "queued")


def iso(ts: float) -> str:
    """Epoch seconds -> fixed-width ISO UTC text (sortable as a string)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    installation_id: int | None
    repo: str | None
    pr: int | None
    head_sha: str | None
    state: str
    attempts: int
    max_attempts: int
    lease_owner: str | None
    last_error: str | None
    dedupe_key: str | None = None
    lease_losses: int = 0
    head_at: str | None = None

    @property
    def failures(self) -> int:
        """Attempts that ended in an error (or are running now), not in a lost lease."""
        return self.attempts - self.lease_losses

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple[Any, ...], columns: list[str]) -> Job:
        d = dict(zip(columns, row, strict=True))
        return cls(
            id=d["id"],
            kind=d["kind"],
            payload=json.loads(d["payload"] or "{}"),
            installation_id=d["installation_id"],
            repo=d["repo"],
            pr=d["pr"],
            head_sha=d["head_sha"],
            state=d["state"],
            attempts=d["attempts"],
            max_attempts=d["max_attempts"],
            lease_owner=d["lease_owner"],
            last_error=d["last_error"],
            dedupe_key=d.get("dedupe_key"),
            lease_losses=d.get("lease_losses") or 0,
            head_at=d.get("head_at"),
        )


_COLUMNS = (
    "id, kind, payload, installation_id, repo, pr, head_sha, state, attempts, max_attempts, "
    "lease_owner, last_error, dedupe_key, lease_losses, head_at"
)
_COLUMN_NAMES = [c.strip() for c in _COLUMNS.split(",")]


def _kind_filter(kinds: list[str] | None) -> tuple[str, list[str]]:
    if kinds is None:
        return "", []
    return f" AND kind IN ({', '.join('?' * len(kinds))})", list(kinds)


class JobOptions(TypedDict, total=False):
    """The keywords `JobQueue.enqueue` passes on to `JobQueue.enqueue_in` (documented there)."""

    installation_id: int | None
    repo: str | None
    pr: int | None
    head_sha: str | None
    dedupe_key: str | None
    supersede: bool | None
    cancel_installation: bool
    head_at: str | None


class JobQueue:
    """The queue over `store.conn`. All methods are synchronous and short (a few statements)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = 60.0,
        max_attempts: int = 5,
        max_lease_losses: int = 10,
        backoff_base: float = 10.0,
        backoff_max: float = 3600.0,
        lock: threading.RLock | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.max_lease_losses = max_lease_losses
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.lock = lock or threading.RLock()
        self._found_last = False  # the last claim took a job (PostgreSQL then skips the peek)

    # --- producing ----------------------------------------------------------------------------

    def enqueue(self, kind: str, payload: dict[str, Any], **options: Unpack[JobOptions]) -> int:
        """Add a job; returns its id (the live job's id when `dedupe_key` is already queued/running).
        `options` are `enqueue_in`'s keywords."""
        with self.lock:
            return self.store.run_transaction(lambda conn: self.enqueue_in(conn, kind, payload, **options))

    def enqueue_in(
        self,
        conn: sqlite3.Connection,
        kind: str,
        payload: dict[str, Any],
        *,
        installation_id: int | None = None,
        repo: str | None = None,
        pr: int | None = None,
        head_sha: str | None = None,
        dedupe_key: str | None = None,
        supersede: bool | None = None,
        cancel_installation: bool = False,
        head_at: str | None = None,
    ) -> int:
        """`enqueue` inside a transaction the caller already opened (the server stores the delivery
        and its job together). A review with a newer `head_at` supersedes queued ones of the same
        (repo, pr) with an older one; one older than a live job's is born superseded by it.
        `cancel_installation` supersedes every queued job of `installation_id`."""
        now = iso(self.clock())
        if dedupe_key is not None:
            row = conn.execute(
                "SELECT id FROM jobs WHERE dedupe_key = ? AND state IN ('queued', 'running')", (dedupe_key,)
            ).fetchone()
            if row is not None:
                return int(row[0])
        if supersede is None:
            supersede = kind in SUPERSEDING_KINDS
        supersede = supersede and repo is not None and pr is not None and head_at is not None
        newer = None
        if supersede:
            newer = conn.execute(
                "SELECT id FROM jobs WHERE kind = ? AND repo = ? AND pr = ? AND state IN ('queued', "
                "'running') AND head_at > ? ORDER BY head_at DESC, id DESC LIMIT 1",
                (kind, repo, pr, head_at),
            ).fetchone()
        cur = conn.execute(
            "INSERT INTO jobs (kind, installation_id, repo, pr, head_sha, payload, state, attempts, "
            "max_attempts, run_after, created_at, updated_at, dedupe_key, head_at, superseded_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
            (
                kind,
                installation_id,
                repo,
                pr,
                head_sha,
                json.dumps(payload, sort_keys=True),
                "superseded" if newer else "queued",
                self.max_attempts,
                now,
                now,
                now,
                dedupe_key,
                head_at,
                newer[0] if newer else None,
            ),
        )
        job_id = int(cur.lastrowid or 0)
        if supersede and newer is None:
            conn.execute(
                "UPDATE jobs SET state = 'superseded', superseded_by = ?, updated_at = ? "
                "WHERE kind = ? AND repo = ? AND pr = ? AND state = 'queued' AND id < ? "
                "AND head_at < ?",
                (job_id, now, kind, repo, pr, job_id, head_at),
            )
        if cancel_installation and installation_id is not None:
            # The App was uninstalled: queued work for it can only fail (no token any more).
            conn.execute(
                "UPDATE jobs SET state = 'superseded', superseded_by = ?, updated_at = ? "
                "WHERE installation_id = ? AND state = 'queued' AND id < ?",
                (job_id, now, installation_id, job_id),
            )
        if self.store.is_postgres and newer is None:
            conn.execute(f"NOTIFY {JOBS_CHANNEL}")  # delivered at COMMIT, to every listening worker
        return job_id

    # --- consuming ----------------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        *,
        kinds: Iterable[str] | None = None,
        per_installation_limit: int | None = None,
    ) -> Job | None:
        """Take the next runnable job with a lease, or None. Runnable: running with an expired lease
        (its worker died; these first), or queued and due, oldest `run_after` first. Installations
        already running `per_installation_limit` jobs are skipped. Taking over an expired lease
        counts a lease loss, not a failed attempt; a job that lost `max_lease_losses` leases is
        dead-lettered instead of claimed again (it is likely what kills or hangs the worker).

        Under a backlog this stays cheap: a read-only peek answers "nothing to do" without the
        write lock; candidates come `CLAIM_BATCH` at a time from two indexed queries (expired
        leases by `jobs_lease`, due jobs by `jobs_claim` in `run_after, id` order); the
        per-installation limit is checked on those few candidates only, and installations found at
        their limit are excluded from the next batch."""
        kinds = list(kinds) if kinds is not None else None
        if kinds is not None and not kinds:
            return None
        pg = self.store.is_postgres
        # PostgreSQL, right after a claim that found a job: more work is likely, and the claim
        # takes no global lock there, so the peek would only cost a round trip.
        if not (pg and self._found_last) and not self._anything_runnable(kinds):
            return None
        # PostgreSQL: no global write lock; candidates are row-locked (FOR UPDATE SKIP LOCKED) so
        # claimers on other hosts pass over them instead of waiting (see _claim_pg).
        with self.lock:
            job = self.store.run_transaction(
                lambda conn: self._claim_in(conn, worker_id, kinds, per_installation_limit), serialized=not pg
            )
        self._found_last = job is not None
        return job

    def _claim_in(
        self, conn: Any, worker_id: str, kinds: list[str] | None, per_installation_limit: int | None
    ) -> Job | None:
        """The body of `claim`, inside the transaction it opened."""
        if self.store.is_postgres:
            return self._claim_pg(conn, worker_id, kinds, per_installation_limit)
        now_ts = self.clock()
        now = iso(now_ts)
        running = self._running_per_installation(conn, now) if per_installation_limit else {}
        full = {i for i, n in running.items() if per_installation_limit and n >= per_installation_limit}
        for state in STATES:
            after: tuple[str, int] | None = None
            while True:
                batch = self._candidates(conn, state, now, kinds, full, after)
                for job, _key in batch:
                    if job.installation_id is not None and job.installation_id in full:
                        continue
                    taken, _ = self._take(conn, job, worker_id, now_ts)
                    if taken is not None:
                        return taken
                if len(batch) < CLAIM_BATCH:
                    break
                after = batch[-1][1]
        return None

    def _claim_pg(self, conn: Any, worker_id: str, kinds: list[str] | None, limit: int | None) -> Job | None:
        """`claim` on PostgreSQL: candidates row-locked (FOR UPDATE SKIP LOCKED); the
        per-installation limit decided per candidate (its try-lock, then `_take` with
        `room_limit`: the lease count inside the lease UPDATE), installations found full
        excluded from later batches. On a busy queue: BEGIN, two candidate SELECTs, the try-lock,
        the UPDATE, COMMIT (6 statements; the peek and a separate count are gone)."""
        now_ts = self.clock()
        now = iso(now_ts)
        full: set[int] = set()
        for state in STATES:
            batch = self._candidates(conn, state, now, kinds, full, None, lock_rows=True)
            while True:
                for job, _key in batch:
                    inst = job.installation_id
                    if inst is not None and inst in full:
                        continue
                    room = limit if inst is not None else None
                    if room and inst is not None and not self._try_installation_lock(conn, inst):
                        full.add(inst)  # another claimer is deciding about it
                        continue
                    taken, no_room = self._take(conn, job, worker_id, now_ts, room_limit=room)
                    if taken is not None:
                        return taken
                    if no_room and inst is not None:
                        full.add(inst)
                if len(batch) < CLAIM_BATCH:
                    break
                batch = self._candidates(conn, state, now, kinds, full, batch[-1][1], lock_rows=True)
        return None

    @staticmethod
    def _try_installation_lock(conn: Any, installation_id: int) -> bool:
        """PostgreSQL: claimers on other hosts decide about one installation one at a time (an
        advisory lock held to COMMIT, so the next one counts this claim's lease); one that cannot
        have the lock at once passes the installation over for now rather than wait."""
        key = (INSTALLATION_LOCK_CLASS, installation_id % 2**31)
        return bool(conn.execute("SELECT pg_try_advisory_xact_lock(?, ?)", key).fetchone()[0])

    def _anything_runnable(self, kinds: list[str] | None) -> bool:
        """A read (no write lock): is any job due or any lease expired? Most polls find none."""
        now = iso(self.clock())
        kind_sql, params = _kind_filter(kinds)
        with self.lock:
            row = self.store.conn.execute(
                f"SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND run_after <= ?{kind_sql}) "
                f"OR EXISTS (SELECT 1 FROM jobs WHERE state = 'running' AND lease_expires_at <= ?{kind_sql})",
                (now, *params, now, *params),
            ).fetchone()
        return bool(row[0])

    @staticmethod
    def _running_per_installation(conn: sqlite3.Connection, now: str) -> dict[int, int]:
        """Live leases per installation (jobs_lease index: running jobs are few)."""
        rows = conn.execute(
            "SELECT installation_id, COUNT(*) FROM jobs WHERE state = 'running' "
            "AND lease_expires_at > ? AND installation_id IS NOT NULL GROUP BY installation_id",
            (now,),
        ).fetchall()
        return {int(i): int(n) for i, n in rows}

    @staticmethod
    def _candidates(
        conn: sqlite3.Connection,
        state: str,
        now: str,
        kinds: list[str] | None,
        full: set[int],
        after: tuple[str, int] | None,
        *,
        lock_rows: bool = False,
    ) -> list[tuple[Job, tuple[str, int]]]:
        """Up to CLAIM_BATCH runnable jobs in `state`, in claim order, after the key `after`."""
        order = "lease_expires_at" if state == "running" else "run_after"
        kind_sql, params = _kind_filter(kinds)
        sql = f"SELECT {_COLUMNS}, {order} FROM jobs WHERE state = ? AND {order} <= ?{kind_sql}"
        args: list[Any] = [state, now, *params]
        if full:
            marks = ", ".join("?" * len(full))
            sql += f" AND (installation_id IS NULL OR installation_id NOT IN ({marks}))"
            args += sorted(full)
        if after is not None:
            sql += f" AND ({order}, id) > (?, ?)"
            args += list(after)
        sql += f" ORDER BY {order}, id LIMIT {CLAIM_BATCH}"
        if lock_rows:
            sql += " FOR UPDATE SKIP LOCKED"
        out = []
        for row in conn.execute(sql, args).fetchall():
            job = Job.from_row(row[:-1], _COLUMN_NAMES)
            out.append((job, (str(row[-1]), job.id)))
        return out

    def _take(
        self, conn: Any, job: Job, worker_id: str, now_ts: float, *, room_limit: int | None = None
    ) -> tuple[Job | None, bool]:
        """Lease `job` to `worker_id` -> (the job, False); or dead-letter it as poison after too
        many lost leases -> (None, False). With `room_limit` the lease is taken only while its
        installation runs fewer live leases -> else (None, True). PostgreSQL: the count is in the
        UPDATE, a statement after the installation's try-lock, so its snapshot sees the lease the
        lock's previous holder committed."""
        now = iso(now_ts)
        lost = int(job.state == "running")  # its worker died or hung: bad luck, not an error
        if lost and job.lease_losses + 1 >= self.max_lease_losses:
            conn.execute(
                "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_expires_at = NULL, "
                "lease_losses = lease_losses + 1, last_error = ?, updated_at = ? WHERE id = ?",
                (
                    f"poison: the lease ran out {job.lease_losses + 1} times (limit "
                    f"{self.max_lease_losses}): the worker running it died or hung each time "
                    f"(last: {job.lease_owner}); failed attempts: {job.failures - 1}; "
                    f"last error: {job.last_error}",
                    now,
                    job.id,
                ),
            )
            return None, False
        room_sql, room_args = "", ()  # type: tuple[str, tuple[Any, ...]]
        if room_limit is not None:
            room_sql = (
                " AND (SELECT COUNT(*) FROM jobs WHERE state = 'running' AND lease_expires_at > ? "
                "AND installation_id = ?) < ?"
            )
            room_args = (now, job.installation_id, room_limit)
        cur = conn.execute(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, "
            "lease_losses = lease_losses + ?, lease_owner = ?, "
            f"lease_expires_at = ?, heartbeat_at = ?, updated_at = ? WHERE id = ?{room_sql}",
            (lost, worker_id, iso(now_ts + self.lease_seconds), now, now, job.id, *room_args),
        )
        if room_limit is not None and cur.rowcount == 0:
            return None, True
        return replace(
            job,
            state="running",
            attempts=job.attempts + 1,
            lease_losses=job.lease_losses + lost,
            lease_owner=worker_id,
        ), False

    def checkpoint(self) -> None:
        """A passive WAL checkpoint (never waits for readers or writers): keeps the WAL file from
        growing under a steady stream of small writes; the worker calls it in the background."""
        if self.store.is_postgres:
            return  # PostgreSQL checkpoints on its own
        with self.lock:
            self.store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake()` whenever a job is enqueued by any process, on any host; returns a stop
        function. PostgreSQL: a thread LISTENing on its own connection (enqueue NOTIFYs on
        commit); the poll interval stays the fallback. SQLite: nothing to listen on (the server
        wakes its in-process worker itself; other processes poll)."""
        if not self.store.is_postgres:
            return lambda: None
        return listen(self.store.path, JOBS_CHANNEL, wake)

    def heartbeat(self, job: Job) -> bool:
        """Extend the lease. False when the lease was lost (expired and taken by another worker)."""
        now = self.clock()
        with self.lock:
            cur = self.store.conn.execute(
                "UPDATE jobs SET lease_expires_at = ?, heartbeat_at = ?, updated_at = ? "
                "WHERE id = ? AND lease_owner = ? AND state = 'running' AND attempts = ?",
                (iso(now + self.lease_seconds), iso(now), iso(now), job.id, job.lease_owner, job.attempts),
            )
            return cur.rowcount == 1

    def complete(self, job: Job) -> bool:
        """Mark done. False when this worker no longer holds the lease (nothing changed)."""
        now = iso(self.clock())
        with self.lock:
            cur = self.store.conn.execute(
                "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_expires_at = NULL, "
                "last_error = NULL, updated_at = ? "
                "WHERE id = ? AND lease_owner = ? AND state = 'running' AND attempts = ?",
                (now, job.id, job.lease_owner, job.attempts),
            )
            return cur.rowcount == 1

    def fail(self, job: Job, error: str, *, permanent: bool = False) -> str | None:
        """Record a failed attempt: back to 'queued' after an exponential backoff, or 'dead' with the
        reason when permanent or out of attempts. Returns the new state (None: lease lost)."""
        now = self.clock()
        dead = permanent or job.failures >= job.max_attempts
        reason = error if not dead or permanent else f"{error} (gave up after {job.failures} attempts)"
        with self.lock:
            if dead:
                cur = self.store.conn.execute(
                    "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_expires_at = NULL, "
                    "last_error = ?, updated_at = ? "
                    "WHERE id = ? AND lease_owner = ? AND state = 'running' AND attempts = ?",
                    (reason, iso(now), job.id, job.lease_owner, job.attempts),
                )
            else:
                cur = self.store.conn.execute(
                    "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, "
                    "run_after = ?, last_error = ?, updated_at = ? "
                    "WHERE id = ? AND lease_owner = ? AND state = 'running' AND attempts = ?",
                    (
                        iso(now + self.backoff(job.failures)),
                        reason,
                        iso(now),
                        job.id,
                        job.lease_owner,
                        job.attempts,
                    ),
                )
        if cur.rowcount != 1:
            return None
        return "dead" if dead else "queued"

    def release(self, job: Job) -> bool:
        """Give a job back without counting the attempt (graceful shutdown mid-job)."""
        now = iso(self.clock())
        with self.lock:
            cur = self.store.conn.execute(
                "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_owner = NULL, "
                "lease_expires_at = NULL, run_after = ?, updated_at = ? "
                "WHERE id = ? AND lease_owner = ? AND state = 'running' AND attempts = ?",
                (now, now, job.id, job.lease_owner, job.attempts),
            )
            return cur.rowcount == 1

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt `attempts + 1`: base * 2**(attempts-1), capped."""
        return min(self.backoff_max, self.backoff_base * (2 ** max(0, attempts - 1)))

    # --- inspection ---------------------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        with self.lock:
            row = self.store.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row, _COLUMN_NAMES) if row else None

    def depth(self) -> int:
        """Jobs waiting to run (queued, including those backing off)."""
        with self.lock:
            return int(
                self.store.conn.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()[0]
            )

    def counts(self) -> dict[str, int]:
        with self.lock:
            rows = self.store.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: int(n) for state, n in rows}

    def dead_letters(self, limit: int = 100) -> list[Job]:
        with self.lock:
            rows = self.store.conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = 'dead' ORDER BY updated_at DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [Job.from_row(r, _COLUMN_NAMES) for r in rows]

    def retry_dead(self, job_id: int) -> bool:
        """Requeue a dead-lettered job with a fresh attempt budget (an operator fixed the cause)."""
        now = iso(self.clock())
        with self.lock:
            try:
                cur = self.store.conn.execute(
                    "UPDATE jobs SET state = 'queued', attempts = 0, lease_losses = 0, run_after = ?, "
                    "updated_at = ? WHERE id = ? AND state = 'dead'",
                    (now, now, job_id),
                )
            except sqlite3.IntegrityError:  # the same work is already queued again
                return False
            return cur.rowcount == 1

    # --- deliveries ---------------------------------------------------------------------------

    def accept_delivery(
        self, delivery: Delivery, jobs: Sequence[Mapping[str, Any]]
    ) -> tuple[bool, list[int]]:
        """Store a webhook delivery and its jobs (`enqueue_in` keyword arguments) in one
        transaction: a delivery is never stored without its work, nor its work twice.
        Returns (duplicate, job ids): a redelivery stores nothing and gets the first job's id."""
        with self.lock:
            return self.store.run_transaction(lambda conn: self._accept_delivery_in(conn, delivery, jobs))

    def try_accept_delivery(
        self, delivery: Delivery, jobs: Sequence[Mapping[str, Any]]
    ) -> tuple[bool, list[int]] | None:
        """`accept_delivery` when it can run without waiting, else None (nothing stored): another
        thread holds the queue, another connection SQLite's writer lock, or the database is
        PostgreSQL (network round trips). A SQLite insert takes ~0.15 ms, much less than handing
        it to a thread, which, under load, waits for the GIL behind the event loop."""
        if self.store.is_postgres or not self.lock.acquire(blocking=False):
            return None
        try:
            with self.store.transaction_now() as conn:
                return self._accept_delivery_in(conn, delivery, jobs)
        except StoreBusy:
            return None
        finally:
            self.lock.release()

    def _accept_delivery_in(
        self, conn: Any, delivery: Delivery, jobs: Sequence[Mapping[str, Any]]
    ) -> tuple[bool, list[int]]:
        """The body of `accept_delivery`, inside a transaction the caller opened."""
        cur = conn.execute(
            "INSERT INTO deliveries (id, event, action, installation_id, repo, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
            (
                delivery.id,
                delivery.event,
                delivery.action,
                delivery.installation_id,
                delivery.repo,
                delivery.received_at,
            ),
        )
        if cur.rowcount == 0:
            row = conn.execute("SELECT job_id FROM deliveries WHERE id = ?", (delivery.id,)).fetchone()
            return True, ([row[0]] if row and row[0] is not None else [])
        job_ids = [self.enqueue_in(conn, **job) for job in jobs]
        if job_ids:
            conn.execute("UPDATE deliveries SET job_id = ? WHERE id = ?", (job_ids[0], delivery.id))
        return False, job_ids


@dataclass(frozen=True, slots=True)
class Delivery:
    """A webhook delivery as the `deliveries` table keeps it (to deduplicate and to prune)."""

    id: str
    event: str
    action: str | None
    installation_id: int | None
    repo: str | None
    received_at: str
