"""`reviewbot serve` (webhook server, with a worker in the same process by default) and
`reviewbot worker` (workers alone). The only place these processes read Settings.

The worker's own loop only claims jobs, keeps leases and waits: with `job_processes` (the
default) every handler runs in a child process (reviewbot.app.job_process) under `job_timeout`, so
the CPU work of a hostile PR never delays a webhook acknowledgement, /healthz or another tenant's
job, and a frozen review is killed rather than waited for.

`build_handlers` is where job kinds meet their code: the built-in ones (installation bookkeeping,
pause/resume) are here; the review and feedback handlers are added by the modules that own them.
A job kind without a handler is dead-lettered with a reason that names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import typer

from reviewbot.app.dialect import PoolLimits, is_postgres_url, redact_url
from reviewbot.app.logs import configure_logging
from reviewbot.core.settings import Settings, SettingsError, settings_secrets

if TYPE_CHECKING:  # imported where a server or a worker starts, so `reviewbot --help` starts fast
    from reviewbot.app.github import GitHubApp
    from reviewbot.app.job_process import JobProcessPool
    from reviewbot.app.metrics import Metrics
    from reviewbot.app.queue import JobQueue
    from reviewbot.app.store import Store
    from reviewbot.app.worker import Handler, Worker

log = logging.getLogger("reviewbot.serve")

LEASE_SECONDS = 120.0
HEARTBEAT_INTERVAL = 15.0
FEEDBACK_TICK_SECONDS = 15 * 60.0
#: Job kinds run on the worker's loop even with job processes: short database bookkeeping.
INLINE_KINDS = frozenset({"installation", "command.pause", "command.resume"})

AUTH_PROBE_SECONDS = 10 * 60.0


def build_handlers(
    settings: Settings,
    store: Store,
    *,
    queue: JobQueue,
    metrics: Metrics,
    app: GitHubApp | None | Literal["from-settings"] = "from-settings",
) -> dict[str, Handler]:
    """Job kind -> handler for a worker over `store`. Kinds: installation, command.pause,
    command.resume (built in); review, command.review; feedback, poll_feedback, conversation; retrain.
    `app`: the GitHub App client (built from `settings` unless given)."""
    from reviewbot.adapters.llm import client_from_settings
    from reviewbot.app.app_review import command_notifier, github_app_from_settings, review_handlers
    from reviewbot.app.conversation import conversation_handlers
    from reviewbot.app.feedback_poll import feedback_handlers
    from reviewbot.app.worker import builtin_handlers
    from reviewbot.filter.acceptance import load_prior
    from reviewbot.learning.retrain import retrain_handler

    if app == "from-settings":
        app = github_app_from_settings(settings, metrics)
    assert not isinstance(app, str)
    handlers = builtin_handlers(store, queue.lock, clock=queue.clock, notify=command_notifier(app))
    handlers.update(review_handlers(settings, store, queue=queue, metrics=metrics, app=app))
    if app is not None:
        handlers.update(feedback_handlers(store, app.installation_client, now=_utcnow, enqueue=queue.enqueue))
        handlers.update(
            conversation_handlers(
                store,
                queue.lock,
                client_for=app.installation_client,
                now=_utcnow,
                llm_factory=lambda **kw: client_from_settings(settings, **kw),
                secrets=settings_secrets(settings),
            )
        )
    else:
        handlers.update({kind: _unconfigured for kind in ("feedback", "poll_feedback", "conversation")})
    handlers["retrain"] = retrain_handler(store, prior=load_prior, now=_utcnow)
    return handlers


def child_handlers(settings: Settings, *, metrics: Any) -> dict[str, Handler]:
    """The handlers of a job process (reviewbot.app.job_process): its own logging, database connection
    and queue; `metrics` records what the handlers observe for the parent to replay."""
    from reviewbot.app.queue import JobQueue

    configure_logging(settings.log_level, secrets=settings_secrets(settings))
    store = open_store(settings)
    queue = JobQueue(store, lease_seconds=LEASE_SECONDS)
    return build_handlers(settings, store, queue=queue, metrics=metrics)


def make_worker(
    settings: Settings,
    store: Store,
    queue: JobQueue,
    metrics: Metrics,
    worker_id: str,
    *,
    prewarm: bool = True,
    app: GitHubApp | None | Literal["from-settings"] = "from-settings",
) -> tuple[Worker, JobProcessPool | None]:
    """The worker of `serve` and `worker`: handlers in job processes unless `job_processes` is off,
    and every job under `job_timeout`. With `prewarm` one job process per slot starts now (a
    long-running worker), else on the first job (`worker --once`). Close the pool when done."""
    from reviewbot.app.job_process import JobProcessPool
    from reviewbot.app.worker import Worker

    handlers = build_handlers(settings, store, queue=queue, metrics=metrics, app=app)
    pool = None
    if settings.job_processes:
        pool = JobProcessPool(
            child_handlers,
            (settings,),
            size=settings.worker_concurrency,
            metrics=metrics,
            timeout=settings.job_timeout,
        )
        if prewarm:
            pool.prewarm(settings.worker_concurrency)  # no first job waits for an interpreter
        # bookkeeping (installations, pause/resume) touches no untrusted text: it stays inline
        handlers = {**handlers, **pool.handlers(k for k in handlers if k not in INLINE_KINDS)}
    worker = Worker(
        queue,
        handlers,
        worker_id=worker_id,
        concurrency=settings.worker_concurrency,
        per_installation_limit=settings.per_installation_concurrency,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        metrics=metrics,
        # in job processes the pool times the job itself (a process's start-up is not the job's)
        job_timeout=None if pool is not None else settings.job_timeout,
    )
    return worker, pool


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _unconfigured(job: Any) -> None:
    from reviewbot.app.worker import PermanentJobError

    raise PermanentJobError(
        "the GitHub App is not configured: set REVIEWBOT_GITHUB_APP_ID and REVIEWBOT_GITHUB_PRIVATE_KEY"
    )


async def _pause(worker: Worker, interval: float) -> None:
    """Sleep `interval` seconds, a second at a time, so a stopping worker is not kept waiting."""
    waited = 0.0
    while waited < interval and not worker.stopping:
        await asyncio.sleep(min(1.0, interval - waited))
        waited += 1.0


async def feedback_ticker(
    queue: JobQueue, worker: Worker, *, interval: float = FEEDBACK_TICK_SECONDS
) -> None:
    """Every `interval` seconds: queue reaction polls for repos with recent bot comments and the
    retrains that are due (GitHub sends no webhook for reactions), and prune old deliveries and
    finished jobs. Stops with the worker."""
    from reviewbot.app.feedback_poll import schedule_feedback_jobs
    from reviewbot.app.retention import prune

    while not worker.stopping:
        try:
            with queue.lock:
                ids = schedule_feedback_jobs(queue.store, queue.enqueue, now=_utcnow())
                pruned = prune(queue.store, now=_utcnow())
            if any(pruned.values()):
                log.info("pruned old rows", extra=pruned)
            for job_id in ids:
                worker.notify(job_id)
        except Exception:
            log.exception("feedback tick failed; trying again at the next tick")
        await _pause(worker, interval)


def record_github_auth(queue: JobQueue, worker_id: str, state: str) -> None:
    """Put the App's authentication state on this worker's heartbeat row (read by /healthz)."""
    from reviewbot.app.queue import iso

    with queue.lock:
        queue.store.conn.execute(
            "INSERT INTO heartbeats (worker, at, github_auth) VALUES (?, ?, ?) "
            "ON CONFLICT(worker) DO UPDATE SET github_auth = excluded.github_auth",
            (worker_id, iso(queue.clock()), state),
        )


async def github_auth_probe(
    app: GitHubApp, queue: JobQueue, worker: Worker, *, interval: float = AUTH_PROBE_SECONDS
) -> None:
    """Ask GitHub whether it accepts the App's id and key (GET /app) now and every `interval`;
    a refusal (a revoked key, a key of another App) marks the worker unhealthy on /healthz. A 5xx
    or a network error changes nothing: it says nothing about the credentials."""
    from reviewbot.app.github_types import GitHubError, GitHubTransientError

    while not worker.stopping:
        state: str | None = None
        try:
            await app.authenticate()
            state = "ok"
        except GitHubTransientError as exc:
            log.warning("cannot check the App's credentials with GitHub: %s", exc)
        except GitHubError as exc:
            state = f"GitHub refused the App's credentials: {exc}"
            log.error("%s (check REVIEWBOT_GITHUB_APP_ID and REVIEWBOT_GITHUB_PRIVATE_KEY)", state)
        if state is not None and not worker.stopping:
            try:
                record_github_auth(queue, worker.worker_id, state)
            except Exception:
                log.exception("cannot record the App's authentication state")
        await _pause(worker, interval)


async def run_worker(
    queue: JobQueue, worker: Worker, *, tick: bool = True, app: GitHubApp | None = None
) -> None:
    """The worker loop plus the periodic feedback tick and, given the App, its credential probe."""
    tasks = []
    if tick:
        tasks.append(asyncio.create_task(feedback_ticker(queue, worker), name="feedback-tick"))
    if app is not None:
        tasks.append(asyncio.create_task(github_auth_probe(app, queue, worker), name="github-auth"))
    try:
        await worker.run()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _load(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment; its warnings wait for `_start_logging` (JSON lines)."""
    try:
        return Settings.from_env(log_warnings=False, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _start_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, secrets=settings_secrets(settings))
    for warning in settings.env_warnings:
        log.warning("%s", warning)


def _refuse(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(1)


def github_app_or_exit(settings: Settings, metrics: Metrics) -> GitHubApp:
    """The App a worker needs, or exit 1 with one line naming the variable: a worker without
    usable credentials would accept jobs it can only dead-letter."""
    from reviewbot.app.app_review import github_app_from_settings

    try:
        app = github_app_from_settings(settings, metrics)
        if app is None:
            settings.require("github_app_id", "github_private_key")
    except SettingsError as exc:
        raise _refuse(str(exc).splitlines()[0]) from None
    assert app is not None
    return app


def writable_store_or_exit(settings: Settings) -> Store:
    """Open the database and prove it takes a write, or exit 1 with one line: a read-only file,
    a full disk or an unreachable PostgreSQL would turn every delivery into a 500."""
    from reviewbot.app.queue import iso

    target, var = settings.database(), settings.database_setting()
    shown = redact_url(target)
    try:
        store = open_store(settings)
    except (sqlite3.Error, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise _refuse(f"{var}: cannot open {shown}: {first}") from None
    try:
        store.probe_write(iso(time.time()))
    except sqlite3.Error as exc:
        store.close()
        raise _refuse(f"{var}: cannot write {shown}: {exc}") from None
    return store


def _database_option(database: str | None) -> dict[str, str | None]:
    """`--database` takes a SQLite file or a postgresql:// URL."""
    if database is not None and is_postgres_url(database):
        return {"database_url": database}
    return {"database_path": database}


def open_store(settings: Settings) -> Store:
    """The settings' database, with their PostgreSQL pool size (SQLite ignores it)."""
    from reviewbot.app.store import Store

    limits = PoolLimits(
        settings.database_pool_min_size, settings.database_pool_max_size, settings.database_pool_timeout
    )
    return Store.open(settings.database(), pool=limits)


def _worker_id(suffix: str = "") -> str:
    return f"{socket.gethostname()}-{os.getpid()}{suffix}"


class WorkerThread:
    """A worker with its own event loop, database connection and queue, beside uvicorn's loop, so a
    slow handler never delays a webhook acknowledgement."""

    def __init__(self, settings: Settings, metrics: Metrics, app: GitHubApp | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.app = app
        self.worker: Worker | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="reviewbot-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=30)

    def notify(self, job_id: int | None = None) -> None:
        if self.worker is not None:
            self.worker.notify(job_id)

    def stop(self, timeout: float = 60.0) -> None:
        if self.worker is not None:
            self.worker.stop()
        self._thread.join(timeout=timeout)

    def _main(self) -> None:
        from reviewbot.app.queue import JobQueue

        store = open_store(self.settings)
        pool = None
        try:
            queue = JobQueue(store, lease_seconds=LEASE_SECONDS)
            self.worker, pool = make_worker(
                self.settings, store, queue, self.metrics, _worker_id("-w"), app=self.app
            )
            self._ready.set()
            asyncio.run(run_worker(queue, self.worker, app=self.app))
        except Exception:
            log.exception("worker thread crashed")
        finally:
            self._ready.set()
            if pool is not None:
                pool.close()
            store.close()


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: str | None = typer.Option(None, help="Listen address (REVIEWBOT_HOST, default 0.0.0.0)."),
        port: int | None = typer.Option(None, help="Listen port (REVIEWBOT_PORT, default 8000)."),
        database: str | None = typer.Option(
            None, "--database", help="SQLite file or postgresql:// URL (REVIEWBOT_DATABASE_PATH / _URL)."
        ),
        no_worker: bool = typer.Option(
            False, "--no-worker", help="Serve webhooks only; run `reviewbot worker` apart."
        ),
    ) -> None:
        """Run the webhook server (POST /webhook, GET /healthz, GET /metrics) and a worker.

        Needs REVIEWBOT_WEBHOOK_SECRET, a database it can write and, unless --no-worker, the App's
        REVIEWBOT_GITHUB_APP_ID and REVIEWBOT_GITHUB_PRIVATE_KEY (it refuses to start without them,
        naming the variable). Deliveries are verified, stored with their job in one transaction and
        acknowledged with 202; the worker runs the jobs.

        Example:

          REVIEWBOT_WEBHOOK_SECRET=s3cret reviewbot serve --port 8000
        """
        import uvicorn
        from prometheus_client import CollectorRegistry

        from reviewbot.app.http_guard import HEADER_TIMEOUT, KEEP_ALIVE_TIMEOUT, MAX_CONNECTIONS, guarded_http
        from reviewbot.app.metrics import Metrics
        from reviewbot.app.queue import JobQueue
        from reviewbot.app.server import create_app

        settings = _load({"host": host, "port": port, **_database_option(database)})
        try:
            settings.require("webhook_secret")
        except SettingsError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        assert settings.webhook_secret is not None
        _start_logging(settings)
        registry = CollectorRegistry()
        metrics = Metrics(registry)
        gh_app = None if no_worker else github_app_or_exit(settings, metrics)
        store = writable_store_or_exit(settings)
        queue = JobQueue(store, lease_seconds=LEASE_SECONDS)
        runner = None if no_worker else WorkerThread(settings, metrics, gh_app)
        admin = settings.admin_token.get_secret_value() if settings.admin_token else None
        dashboard_store = open_store(settings) if admin else None
        app_ = create_app(
            store=store,
            webhook_secret=settings.webhook_secret.get_secret_value().encode(),
            registry=registry,
            queue=queue,
            enqueue_hook=runner.notify if runner else None,
            admin_token=admin,
            metrics=metrics,
            heartbeat_stale_seconds=HEARTBEAT_INTERVAL * 4,
            dashboard_store=dashboard_store,
        )
        if runner is not None:
            runner.start()
        log.info(
            "serving", extra={"host": settings.host, "port": settings.port, "worker": runner is not None}
        )
        # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers
        # in place that lands here instead of killing the process, so the worker stops cleanly.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: log.info("signal %s after shutdown", signum))
        try:
            uvicorn.run(
                app_,
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=10,
                # header deadline and connection cap (the body's are the app's): issue #11
                http=guarded_http(header_timeout=HEADER_TIMEOUT, max_connections=MAX_CONNECTIONS),
                timeout_keep_alive=int(KEEP_ALIVE_TIMEOUT),
            )
        finally:
            if runner is not None:
                runner.stop()
            if dashboard_store is not None:
                dashboard_store.close()
            store.close()

    @app.command("worker")
    def worker(
        database: str | None = typer.Option(
            None, "--database", help="SQLite file or postgresql:// URL (REVIEWBOT_DATABASE_PATH / _URL)."
        ),
        concurrency: int | None = typer.Option(None, help="Jobs at once (REVIEWBOT_WORKER_CONCURRENCY)."),
        once: bool = typer.Option(False, "--once", help="Run until no job is runnable, then exit."),
    ) -> None:
        """Run a worker alone: claim jobs from the database, run them, retry or dead-letter them.

        Needs REVIEWBOT_GITHUB_APP_ID and REVIEWBOT_GITHUB_PRIVATE_KEY: without usable ones it
        exits 1 with one line naming the variable.

        Run several (processes sharing the SQLite file, or any number of hosts sharing one
        PostgreSQL database) for more throughput; a job whose worker dies is taken over when its
        lease runs out.

        Example:

          REVIEWBOT_DATABASE_PATH=/data/reviewbot.db reviewbot worker --concurrency 4
        """
        from prometheus_client import CollectorRegistry

        from reviewbot.app.metrics import Metrics
        from reviewbot.app.queue import JobQueue

        settings = _load({**_database_option(database), "worker_concurrency": concurrency})
        _start_logging(settings)
        metrics = Metrics(CollectorRegistry())
        gh_app = github_app_or_exit(settings, metrics)
        store = writable_store_or_exit(settings)
        queue = JobQueue(store, lease_seconds=LEASE_SECONDS)
        w, pool = make_worker(settings, store, queue, metrics, _worker_id(), prewarm=not once, app=gh_app)

        async def main() -> None:
            if once:
                n = await w.run_until_idle(timeout=3600)
                typer.echo(f"processed {n} job(s)")
                return
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, w.stop)
            await run_worker(queue, w, app=gh_app)

        try:
            asyncio.run(main())
        finally:
            if pool is not None:
                pool.close()
            store.close()
