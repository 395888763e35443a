"""The worker: claim jobs, run their handlers, keep leases alive, record the outcome.

A handler is `async def handler(job) -> None`. Returning means done; raising means the attempt
failed and the queue retries it with backoff; raising `PermanentJobError` dead-letters it at once
(retrying cannot help: bad input, the PR is gone). While handlers run, a heartbeat task extends
their leases and writes this worker's liveness row for /healthz; a job whose lease was taken over
by another worker (ours expired) is cancelled here so it is never finished twice.

Also here: the built-in handlers for the jobs the webhook edge creates that need no GitHub call
(installation bookkeeping and uninstall cleanup, pause/resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from reviewbot.app import records, webhooks
from reviewbot.app.logs import log_context
from reviewbot.app.metrics import Metrics
from reviewbot.app.queue import Job, JobQueue, iso
from reviewbot.app.store import Store

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[None]]
CHECKPOINT_EVERY = 20  # heartbeats between passive WAL checkpoints


class PermanentJobError(Exception):
    """Raised by a handler when retrying cannot succeed: the job is dead-lettered with this reason."""


class Worker:
    """Runs up to `concurrency` jobs at once from `queue` with `handlers` keyed by job kind."""

    def __init__(
        self,
        queue: JobQueue,
        handlers: dict[str, Handler],
        *,
        worker_id: str,
        concurrency: int = 2,
        per_installation_limit: int | None = 1,
        heartbeat_interval: float = 10.0,
        poll_interval: float = 1.0,
        store: Store | None = None,
        metrics: Metrics | None = None,
        job_timeout: float | None = None,
        shutdown_grace: float = 30.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.queue = queue
        self.handlers = dict(handlers)
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.per_installation_limit = per_installation_limit
        self.heartbeat_interval = heartbeat_interval
        self.poll_interval = poll_interval
        self.store = store or queue.store
        self.metrics = metrics
        self.job_timeout = job_timeout
        self.shutdown_grace = shutdown_grace
        self.processed = 0
        self._active: dict[asyncio.Task[None], Job] = {}
        self._lost: set[int] = set()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    # --- control (thread-safe) ---------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop claiming and finish; safe from any thread or a signal handler."""
        self._stopping.set()
        self.notify()

    def notify(self, job_id: int | None = None) -> None:
        """Wake the loop now (a job was enqueued) instead of at the next poll; any thread."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(wake.set)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and run jobs until `stop()`; then wait for running ones (up to `shutdown_grace`)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._beat_now()
        beat = asyncio.create_task(self._heartbeat_loop(), name=f"{self.worker_id}-heartbeat")
        stop_listening = self.queue.listen(self.notify)  # PostgreSQL: woken by any enqueuer's NOTIFY
        log.info("worker started", extra={"worker": self.worker_id, "kinds": sorted(self.handlers)})
        try:
            while not self.stopping:
                started_any = self._fill()
                if started_any:
                    await asyncio.sleep(0)
                    continue
                self._wake.clear()
                waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
                waiters += list(self._active)
                done, pending = await asyncio.wait(
                    waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
                waiters[0].cancel()
        finally:
            stop_listening()
            await self._shutdown()
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self._clear_heartbeat()
            log.info("worker stopped", extra={"worker": self.worker_id, "processed": self.processed})

    async def run_until_idle(self, timeout: float = 30.0) -> int:
        """Run jobs until none is runnable and none is active (tests, `--once`); returns how many."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        before = self.processed
        deadline = time.monotonic() + timeout
        beat = asyncio.create_task(self._heartbeat_loop())
        try:
            while time.monotonic() < deadline:
                self._fill()
                if not self._active:
                    break
                await asyncio.wait(list(self._active), return_when=asyncio.FIRST_COMPLETED)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            await self._shutdown()
        return self.processed - before

    def _fill(self) -> bool:
        started = False
        while len(self._active) < self.concurrency and not self.stopping:
            try:
                job = self.queue.claim(self.worker_id, per_installation_limit=self.per_installation_limit)
            except Exception:
                log.exception("claim failed; retrying after the poll interval")
                return started
            if job is None:
                break
            task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
            self._active[task] = job
            task.add_done_callback(self._active.pop)
            started = True
        if self.metrics is not None and not started:
            try:
                self.metrics.queue_depth.set(self.queue.depth())
            except Exception:
                log.exception("cannot read queue depth")
        return started

    async def _run_job(self, job: Job) -> None:
        with log_context(job_id=job.id, repo=job.repo, pr=job.pr):
            handler = self.handlers.get(job.kind)
            started = time.perf_counter()
            outcome = "done"
            try:
                if handler is None:
                    raise PermanentJobError(
                        f"no handler for job kind {job.kind!r} (known: {', '.join(sorted(self.handlers))})"
                    )
                log.info("job started", extra={"kind": job.kind, "attempt": job.attempts})
                if self.job_timeout is not None:
                    await asyncio.wait_for(handler(job), timeout=self.job_timeout)
                else:
                    await handler(job)
            except asyncio.CancelledError:
                if job.id in self._lost:
                    log.warning("job cancelled: lease lost to another worker", extra={"kind": job.kind})
                    outcome = "lease_lost"
                    return
                # Shutdown: give the job back so another worker need not wait for the lease.
                self.queue.release(job)
                outcome = "released"
                raise
            except PermanentJobError as exc:
                outcome = "dead"
                log.error("job failed permanently: %s", exc, extra={"kind": job.kind})
                self.queue.fail(job, f"PermanentJobError: {exc}", permanent=True)
            except TimeoutError as exc:
                reason = (
                    f"timed out after {self.job_timeout}s" if self.job_timeout else f"TimeoutError: {exc}"
                )
                outcome = self.queue.fail(job, reason) or "lease_lost"
                outcome = "retry" if outcome == "queued" else outcome
                log.error("job attempt failed: %s", reason, extra={"kind": job.kind, "state": outcome})
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                outcome = self.queue.fail(job, reason) or "lease_lost"
                outcome = "retry" if outcome == "queued" else outcome
                log.error(
                    "job attempt failed: %s",
                    reason,
                    exc_info=True,
                    extra={"kind": job.kind, "state": outcome},
                )
            else:
                if not self.queue.complete(job):
                    outcome = "lease_lost"
                    log.warning("job finished but its lease was lost", extra={"kind": job.kind})
                else:
                    log.info("job done", extra={"kind": job.kind})
            finally:
                self._lost.discard(job.id)
                self.processed += 1
                if self.metrics is not None:
                    self.metrics.jobs.labels(kind=job.kind, outcome=outcome).inc()
                    self.metrics.job_seconds.labels(kind=job.kind).observe(time.perf_counter() - started)

    async def _heartbeat_loop(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self.beat()
            beats += 1
            if beats % CHECKPOINT_EVERY == 0:
                try:  # passive: never waits for the server's readers or writers
                    self.queue.checkpoint()
                except Exception:
                    log.exception("WAL checkpoint failed")

    def beat(self) -> None:
        """Extend every running job's lease and record liveness; cancel jobs whose lease was lost."""
        self._beat_now()
        for task, job in list(self._active.items()):
            try:
                ok = self.queue.heartbeat(job)
            except Exception:
                log.exception("heartbeat failed", extra={"job": job.id})
                continue
            if not ok and not task.done():
                self._lost.add(job.id)
                task.cancel()

    def _beat_now(self) -> None:
        try:
            with self.queue.lock:
                self.store.conn.execute(
                    "INSERT INTO heartbeats (worker, at) VALUES (?, ?) "
                    "ON CONFLICT(worker) DO UPDATE SET at = excluded.at",
                    (self.worker_id, iso(self.queue.clock())),
                )
        except Exception:
            log.exception("cannot write the worker heartbeat")

    def _clear_heartbeat(self) -> None:
        try:
            with self.queue.lock:
                self.store.conn.execute("DELETE FROM heartbeats WHERE worker = ?", (self.worker_id,))
        except Exception:
            log.exception("cannot clear the worker heartbeat")

    async def _shutdown(self) -> None:
        if not self._active:
            return
        tasks = list(self._active)
        done, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- built-in handlers ---------------------------------------------------------------------------

Notify = Callable[[webhooks.Command, str], Awaitable[None]]


def builtin_handlers(
    store: Store,
    lock: threading.RLock,
    *,
    clock: Callable[[], float] = time.time,
    notify: Notify | None = None,
) -> dict[str, Handler]:
    """Handlers for `installation`, `command.pause` and `command.resume` jobs. `notify(command,
    message)` answers the comment (a reaction or reply through GitHub) when the lead wires one."""

    async def installation(job: Job) -> None:
        try:
            change = webhooks.installation_change_from_payload(job.payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentJobError(f"bad installation job payload: {exc}") from exc
        apply_installation_change(store, lock, change, now=iso(clock()), keep_job_id=job.id)

    def pause_handler(paused: bool) -> Handler:
        async def handle(job: Job) -> None:
            try:
                command = webhooks.Command(**{k: job.payload[k] for k in webhooks.Command.__slots__})
            except KeyError as exc:
                raise PermanentJobError(f"bad command job payload: missing {exc}") from exc
            set_paused(store, lock, command, paused, now=iso(clock()))
            if notify is not None:
                await notify(
                    command,
                    "Paused: reviewbot will not review this repository."
                    if paused
                    else "Resumed: reviewbot reviews this repository again.",
                )

        return handle

    return {
        "installation": installation,
        "command.pause": pause_handler(True),
        "command.resume": pause_handler(False),
    }


def set_paused(
    store: Store, lock: threading.RLock, command: webhooks.Command, paused: bool, *, now: str
) -> None:
    """Record '@reviewbot pause|resume' on the repository (created if the App had not seen it)."""
    with lock, store.transaction() as conn:
        # The repository's owner is the installation's account (an App is installed per account).
        _ensure_installation(conn, command.installation_id, command.repo.split("/")[0], None, now)
        updated = conn.execute(
            "UPDATE repositories SET paused = ? WHERE full_name = ?", (int(paused), command.repo)
        ).rowcount
        if not updated:
            if command.repo_id is None:
                raise PermanentJobError(
                    f"repository {command.repo} is unknown and the command has no repo id"
                )
            conn.execute(
                "INSERT INTO repositories (id, installation_id, full_name, paused, added_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (command.repo_id, command.installation_id, command.repo, int(paused), now),
            )


def is_paused(store: Store, repo: str) -> bool:
    """Whether '@reviewbot pause' is in effect for `repo` (the review handler checks this)."""
    row = store.conn.execute("SELECT paused FROM repositories WHERE full_name = ?", (repo,)).fetchone()
    return bool(row and row[0])


def _ensure_installation(
    conn: Any, installation_id: int, account: str | None, account_type: str | None, now: str
) -> None:
    conn.execute(
        "INSERT INTO installations (id, account, account_type, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET account = CASE WHEN excluded.account != '' THEN excluded.account "
        "ELSE installations.account END, "
        "account_type = COALESCE(excluded.account_type, installations.account_type)",
        (installation_id, account or "", account_type, now),
    )


def apply_installation_change(
    store: Store,
    lock: threading.RLock,
    change: webhooks.InstallationChange,
    *,
    now: str,
    keep_job_id: int | None = None,
) -> None:
    """Track installs and repositories; on uninstall delete everything of that installation."""
    with lock, store.transaction() as conn:
        iid = change.installation_id
        if change.action == "deleted":
            delete_installation_data(conn, iid, change.account, keep_job_id=keep_job_id)
            log.info("installation deleted with its data", extra={"installation": iid})
            return
        _ensure_installation(conn, iid, change.account, change.account_type, now)
        if change.action == "suspend":
            conn.execute("UPDATE installations SET suspended_at = ? WHERE id = ?", (now, iid))
        elif change.action == "unsuspend":
            conn.execute("UPDATE installations SET suspended_at = NULL WHERE id = ?", (iid,))
        for ref in change.repos_added:
            conn.execute(
                "INSERT INTO repositories (id, installation_id, full_name, added_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET installation_id = excluded.installation_id, "
                "full_name = excluded.full_name",
                (ref.id, iid, ref.full_name, now),
            )
        for ref in change.repos_removed:
            conn.execute("DELETE FROM repositories WHERE id = ? AND installation_id = ?", (ref.id, iid))


def delete_installation_data(
    conn: Any, installation_id: int, account: str | None, *, keep_job_id: int | None = None
) -> None:
    """Delete an installation's rows everywhere: by installation id, and by its repositories' names
    (rows a stage wrote without an installation id still belong to the tenant)."""
    iid = installation_id
    repos = records.reviewed_repos(conn, iid) | {
        r[0]
        for r in conn.execute(
            "SELECT full_name FROM repositories WHERE installation_id = ? "
            "UNION SELECT repo FROM jobs WHERE installation_id = ? AND repo IS NOT NULL",
            (iid, iid),
        )
    }
    row = conn.execute("SELECT account FROM installations WHERE id = ?", (iid,)).fetchone()
    accounts = {a for a in (account, row[0] if row else None) if a}
    repo_list = sorted(repos)
    marks = ", ".join("?" for _ in repo_list) or "NULL"
    records.forget_installation(conn, iid, repo_list, sorted(accounts))
    conn.execute(f"DELETE FROM deliveries WHERE installation_id = ? OR repo IN ({marks})", (iid, *repo_list))
    conn.execute("DELETE FROM jobs WHERE installation_id = ? AND id != ?", (iid, keep_job_id or -1))
    conn.execute("DELETE FROM repositories WHERE installation_id = ?", (iid,))
    conn.execute("DELETE FROM installations WHERE id = ?", (iid,))


def worker_heartbeats(conn: Any) -> list[tuple[str, str | None]]:
    """Every worker's last heartbeat and GitHub's verdict on its credentials (None: not checked
    yet), as /healthz reads them: workers in other processes beat into the same database."""
    return [(at, auth) for at, auth in conn.execute("SELECT at, github_auth FROM heartbeats")]
