"""The webhook edge: verify, deduplicate, store the delivery and its job in one transaction, 202.

Order matters: the signature is checked on the raw bytes BEFORE anything parses them (an
unauthenticated sender cannot reach the JSON parser or the database), the body is read with a size
limit (a declared oversize body is refused before it is read), and the request does nothing slow:
every piece of work, even a pause command or an uninstall cleanup, becomes a job.

Unauthenticated senders cost little: a request without a signature header is refused before its
body is read; the body streams through the HMAC into a spool that holds at most
`buffer_bytes` in memory (the rest goes to a temporary file), so 25 MB forged bodies do not
pile up in RAM; and the whole body must arrive within `body_timeout` seconds (else 408). The
header, keep-alive and connection limits are the HTTP protocol's (reviewbot.http_guard).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from reviewbot import webhooks
from reviewbot.logs import log_context
from reviewbot.metrics import CONTENT_TYPE, Metrics
from reviewbot.queue import JobQueue, iso, parse_iso
from reviewbot.store import Store

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
OFFLOAD_BYTES = 256 * 1024
BUFFER_BYTES = 1024 * 1024  # in memory per request before the spool moves to a temporary file
BODY_TIMEOUT = 30.0  # seconds for the whole body: GitHub itself gives up after 10


#: /healthz fails when the database's disk has less free space than this.
MIN_FREE_BYTES = 64 * 1024 * 1024


def free_bytes_beside(path: str) -> int:
    """Bytes free on the file system holding `path`."""
    return shutil.disk_usage(Path(path).resolve().parent).free


def _worker_health(
    beats: list[tuple[str, str | None]], now: float, stale_after: float
) -> tuple[str, float | None, str | None]:
    """(state, age of the freshest usable heartbeat, why not ok) from the heartbeat rows.

    States: "ok" (a fresh worker whose credentials GitHub accepted or that was not checked yet),
    "auth_failed" (every fresh worker was refused by GitHub), "stale", "none"."""
    if not beats:
        return "none", None, None
    ages = [(max(0.0, now - parse_iso(at)), auth) for at, auth in beats]
    fresh = [(age, auth) for age, auth in ages if age <= stale_after]
    usable = [age for age, auth in fresh if auth in (None, "ok")]
    if usable:
        return "ok", min(usable), None
    if fresh:
        return "auth_failed", min(a for a, _ in fresh), fresh[0][1]
    return "stale", min(a for a, _ in ages), None


class ServerConfigError(RuntimeError):
    """The server cannot start safely (e.g. no webhook secret)."""


def create_app(
    *,
    store: Store,
    webhook_secret: bytes,
    registry: Any,
    queue: JobQueue,
    enqueue_hook: Callable[[int], None] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    admin_token: str | None = None,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.time,
    heartbeat_stale_seconds: float = 120.0,
    mention: str = "reviewbot",
    dashboard_store: Store | None = None,
    body_timeout: float = BODY_TIMEOUT,
    buffer_bytes: int = BUFFER_BYTES,
    disk_free: Callable[[str], int] = free_bytes_beside,
    min_free_bytes: int = MIN_FREE_BYTES,
) -> FastAPI:
    """Build the app. `registry` is a prometheus CollectorRegistry (a `Metrics` is created on it
    unless one is passed); `enqueue_hook(job_id)` runs after a job is committed (wakes a worker).
    With an `admin_token` the dashboard (/repos) is served from `dashboard_store` (its own
    connection, so page reads never interleave with webhook writes), else from `store`.
    `disk_free(path)`: bytes free on the disk of the database file; /healthz fails under
    `min_free_bytes` (a delivery can be 25 MB)."""
    if not webhook_secret:
        raise ServerConfigError("a webhook secret is required (REVIEWBOT_WEBHOOK_SECRET): refusing to start")
    if queue.store is not store:
        raise ServerConfigError("queue must be built over the same store as the server")
    metrics = metrics or Metrics(registry)
    app = FastAPI(title="reviewbot", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.queue = queue
    app.state.metrics = metrics

    def record(event: str, outcome: str, started: float) -> None:
        metrics.webhook_deliveries.labels(event=event, outcome=outcome).inc()
        metrics.webhook_ack_seconds.observe(time.perf_counter() - started)

    def reply(status: int, event: str, outcome: str, started: float, **body: Any) -> JSONResponse:
        record(event, outcome, started)
        elapsed_ms = (time.perf_counter() - started) * 1000
        # Server-Timing: how long the server itself took, apart from the network and queueing.
        return JSONResponse(
            {"outcome": outcome, **body},
            status_code=status,
            headers={"Server-Timing": f"ack;dur={elapsed_ms:.2f}"},
        )

    @app.post("/webhook")
    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        # 1. Size: refuse a declared oversize body without reading it; count while streaming.
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > max_body_bytes:
                    return reply(413, "-", "too_large", started, error="payload too large")
            except ValueError:
                return reply(400, "-", "bad_request", started, error="invalid Content-Length")
        signature = request.headers.get("x-hub-signature-256")
        if not signature or not signature.startswith("sha256="):
            log.warning("webhook signature missing")  # refused before reading a byte of the body
            return reply(401, "-", "unauthorized", started, error="invalid signature")
        # 2. Authenticity: the body streams through the HMAC into a bounded spool.
        mac = hmac.new(webhook_secret, digestmod=hashlib.sha256)
        with tempfile.SpooledTemporaryFile(max_size=buffer_bytes) as spool:
            size = 0
            try:
                async with asyncio.timeout(body_timeout):
                    async for chunk in request.stream():
                        size += len(chunk)
                        if size > max_body_bytes:
                            return reply(413, "-", "too_large", started, error="payload too large")
                        mac.update(chunk)
                        spool.write(chunk)
            except TimeoutError:
                log.warning("webhook body not received within %ss", body_timeout)
                return reply(408, "-", "timeout", started, error="request body too slow")
            if not webhooks.verify_digest(mac, signature):
                log.warning("webhook signature wrong")
                return reply(401, "-", "unauthorized", started, error="invalid signature")
            spool.seek(0)
            body = spool.read()
        # Parsing megabytes takes milliseconds: keep big bodies off the event loop.
        offload = len(body) > OFFLOAD_BYTES
        event = request.headers.get("x-github-event")
        delivery_id = request.headers.get("x-github-delivery")
        if not event or not delivery_id or len(delivery_id) > 200 or len(event) > 100:
            return reply(
                400, "-", "bad_request", started, error="missing X-GitHub-Event or X-GitHub-Delivery"
            )
        with log_context(delivery_id=delivery_id):
            # 3. Parse and route (pure).
            try:
                if offload:
                    payload, action = await run_in_threadpool(_parse, body, event)
                else:
                    payload, action = _parse(body, event)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                # json.JSONDecodeError and webhooks.PayloadError are ValueErrors.
                log.warning("malformed payload: %s", exc, extra={"event": event})
                return reply(400, event, "bad_request", started, error=f"malformed payload: {exc}")
            specs = webhooks.plan(action, event=event, payload=payload)
            # 4. Store the delivery and its job together (threadpool: SQLite blocks).
            duplicate, job_ids = await run_in_threadpool(_store_delivery, event, delivery_id, payload, specs)
            job_id = job_ids[0] if job_ids else None
            if duplicate:
                log.info("duplicate delivery acknowledged", extra={"event": event})
                return reply(200, event, "duplicate", started, delivery=delivery_id, job_id=job_id)
            if enqueue_hook is not None:
                for jid in job_ids:
                    try:
                        enqueue_hook(jid)
                    except Exception:  # the job is durable; a failed wake-up only delays it
                        log.exception("enqueue hook failed")
            outcome = "queued" if specs else ("ping" if isinstance(action, webhooks.Ping) else "ignored")
            extra: dict[str, Any] = {"event": event, "outcome": outcome, "jobs": job_ids}
            if isinstance(action, webhooks.Ignore):
                extra["reason"] = action.reason
            log.info("delivery accepted", extra=extra)
            body_out: dict[str, Any] = {"delivery": delivery_id, "job_id": job_id, "job_ids": job_ids}
            if isinstance(action, webhooks.Ignore):
                body_out["reason"] = action.reason
            if isinstance(action, webhooks.Ping):
                body_out["zen"] = action.zen
            return reply(202, event, outcome, started, **body_out)

    def _parse(body: bytes, event: str) -> tuple[Any, webhooks.Action]:
        payload = json.loads(body)
        return payload, webhooks.route(event, payload, mention=mention)

    def _store_delivery(
        event: str, delivery_id: str, payload: dict[str, Any], specs: list[webhooks.JobSpec]
    ) -> tuple[bool, list[int]]:
        now = iso(clock())
        action = payload.get("action") if isinstance(payload.get("action"), str) else None
        inst = payload.get("installation")
        installation_id = (
            inst.get("id") if isinstance(inst, dict) and isinstance(inst.get("id"), int) else None
        )
        repo_obj = payload.get("repository")
        repo = repo_obj.get("full_name") if isinstance(repo_obj, dict) else None
        repo = repo if isinstance(repo, str) else None
        with queue.lock, store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO deliveries (id, event, action, installation_id, repo, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
                (delivery_id, event, action, installation_id, repo, now),
            )
            if cur.rowcount == 0:
                row = conn.execute("SELECT job_id FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
                return True, ([row[0]] if row and row[0] is not None else [])
            job_ids = [
                queue.enqueue_in(
                    conn,
                    spec.kind,
                    {**spec.payload, "delivery_id": delivery_id},
                    installation_id=spec.installation_id,
                    repo=spec.repo,
                    pr=spec.pr,
                    head_sha=spec.head_sha,
                    dedupe_key=spec.dedupe_key,
                    supersede=spec.supersede,
                    cancel_installation=spec.cancel_installation,
                    head_at=spec.head_at,
                )
                for spec in specs
            ]
            if job_ids:
                conn.execute("UPDATE deliveries SET job_id = ? WHERE id = ?", (job_ids[0], delivery_id))
            return False, job_ids

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """200 only when a delivery would be stored and a worker would run it: the database takes
        a write (not read-only, not full) and a worker heartbeat is fresh with credentials GitHub
        accepts (workers in other processes count: they heartbeat into the same database)."""
        try:
            with queue.lock:
                store.probe_write(iso(clock()))
                beats = store.conn.execute("SELECT at, github_auth FROM heartbeats").fetchall()
            depth = queue.depth()
            dead = queue.counts().get("dead", 0)
        except Exception as exc:
            log.exception("healthz: database error")
            return JSONResponse(
                {"status": "error", "database": f"error: {type(exc).__name__}: {exc}"}, status_code=503
            )
        database = "ok"
        free = None if store.path == ":memory:" else disk_free(store.path)
        if free is not None and free < min_free_bytes:
            database = f"error: {free} bytes free on the database's disk (under {min_free_bytes})"
        worker, age, why = _worker_health(beats, clock(), heartbeat_stale_seconds)
        metrics.queue_depth.set(depth)
        metrics.dead_letters.set(dead)
        healthy = database == "ok" and worker == "ok"
        body: dict[str, Any] = {
            "status": "ok" if healthy else ("error" if database != "ok" else "degraded"),
            "database": database,
            "worker": worker,
            "worker_heartbeat_age_seconds": None if age is None else round(age, 3),
            "queue_depth": depth,
            "dead_letters": dead,
        }
        if why:
            body["worker_error"] = why
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        try:
            metrics.queue_depth.set(queue.depth())
            metrics.dead_letters.set(queue.counts().get("dead", 0))
        except Exception:
            log.exception("metrics: cannot read queue depth")
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    def admin_ok(request: Request) -> bool:
        if not admin_token:
            return False
        header = request.headers.get("authorization", "")
        return hmac.compare_digest(header.encode(), f"Bearer {admin_token}".encode())

    @app.get("/admin/dead-letters")
    def dead_letters(request: Request) -> JSONResponse:
        if not admin_token:
            return JSONResponse({"error": "admin endpoints are disabled"}, status_code=404)
        if not admin_ok(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        jobs = queue.dead_letters()
        return JSONResponse(
            [
                {
                    "id": j.id,
                    "kind": j.kind,
                    "repo": j.repo,
                    "pr": j.pr,
                    "attempts": j.attempts,
                    "error": j.last_error,
                }
                for j in jobs
            ]
        )

    @app.post("/admin/jobs/{job_id}/retry")
    def retry_job(job_id: int, request: Request) -> JSONResponse:
        if not admin_token:
            return JSONResponse({"error": "admin endpoints are disabled"}, status_code=404)
        if not admin_ok(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if not queue.retry_dead(job_id):
            return JSONResponse({"error": "no dead job with that id"}, status_code=404)
        if enqueue_hook is not None:
            enqueue_hook(job_id)
        return JSONResponse({"job_id": job_id, "state": "queued"})

    if admin_token:
        from reviewbot.dashboard import dashboard_router

        app.include_router(dashboard_router(dashboard_store or store, admin_token))
    return app
