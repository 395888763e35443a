"""The webhook edge: verify, deduplicate, store the delivery and its job in one transaction, 202.

Order matters: the signature is checked on the raw bytes BEFORE anything parses them (an
unauthenticated sender cannot reach the JSON parser or the database), the body is read with a size
limit (a declared oversize body is refused before it is read), and the request does nothing slow:
every piece of work, even a pause command or an uninstall cleanup, becomes a job.

Unauthenticated senders cost little: a request without a signature header is refused before its
body is read; the body streams through the HMAC into a spool that holds at most
`buffer_bytes` in memory (the rest goes to a temporary file), so 25 MB forged bodies do not
pile up in RAM; and the whole body must arrive within `body_timeout` seconds (else 408). The
header, keep-alive and connection limits are the HTTP protocol's (reviewbot.app.http_guard).

`create_app` assembles the routes, one concern each: the webhook edge (here), health and metrics
(reviewbot.app.health), the operator's endpoints (reviewbot.app.admin) and the dashboard
(reviewbot.learning.dashboard, mounted only with an admin token).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from reviewbot.app import webhooks
from reviewbot.app.admin import admin_router
from reviewbot.app.health import MIN_FREE_BYTES, free_bytes_beside, health_router
from reviewbot.app.logs import log_context
from reviewbot.app.metrics import Metrics
from reviewbot.app.queue import Delivery, JobQueue, iso
from reviewbot.app.store import Store

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
OFFLOAD_BYTES = 256 * 1024
BUFFER_BYTES = 1024 * 1024  # in memory per request before the spool moves to a temporary file
BODY_TIMEOUT = 30.0  # seconds for the whole body: GitHub itself gives up after 10


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
    app.include_router(
        webhook_router(
            queue=queue,
            webhook_secret=webhook_secret,
            metrics=metrics,
            enqueue_hook=enqueue_hook,
            max_body_bytes=max_body_bytes,
            clock=clock,
            mention=mention,
            body_timeout=body_timeout,
            buffer_bytes=buffer_bytes,
        )
    )
    app.include_router(
        health_router(
            store=store,
            queue=queue,
            metrics=metrics,
            clock=clock,
            heartbeat_stale_seconds=heartbeat_stale_seconds,
            disk_free=disk_free,
            min_free_bytes=min_free_bytes,
        )
    )
    app.include_router(admin_router(queue=queue, admin_token=admin_token, enqueue_hook=enqueue_hook))
    if admin_token:
        from reviewbot.learning.dashboard import dashboard_router

        app.include_router(dashboard_router(dashboard_store or store, admin_token))
    return app


def webhook_router(
    *,
    queue: JobQueue,
    webhook_secret: bytes,
    metrics: Metrics,
    enqueue_hook: Callable[[int], None] | None,
    max_body_bytes: int,
    clock: Callable[[], float],
    mention: str,
    body_timeout: float,
    buffer_bytes: int,
) -> APIRouter:
    """POST /webhook: verify, parse and route, store the delivery with its jobs, wake a worker."""
    router = APIRouter()

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

    def _parse(body: bytes, event: str) -> tuple[Any, webhooks.Action]:
        payload = json.loads(body)
        return payload, webhooks.route(event, payload, mention=mention)

    def store_delivery(
        accept: Callable[[Delivery, list[dict[str, Any]]], _T],
        event: str,
        delivery_id: str,
        payload: dict[str, Any],
        specs: list[webhooks.JobSpec],
    ) -> _T:
        delivery = delivery_of(payload, event=event, delivery_id=delivery_id, received_at=iso(clock()))
        return accept(delivery, [job_arguments(spec, delivery_id) for spec in specs])

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
            # 4. Store the delivery and its jobs together: on the loop when that cannot wait (a
            # thread hop costs more than the insert under load: issue #14), else on a thread.
            stored = store_delivery(queue.try_accept_delivery, event, delivery_id, payload, specs)
            if stored is None:
                stored = await run_in_threadpool(
                    store_delivery, queue.accept_delivery, event, delivery_id, payload, specs
                )
            duplicate, job_ids = stored
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

    # a plain route: FastAPI's dependency solving per request costs ~5% of an ack (issue #14)
    router.add_route("/webhook", webhook, methods=["POST"])

    return router


def delivery_of(payload: dict[str, Any], *, event: str, delivery_id: str, received_at: str) -> Delivery:
    """What the deliveries table keeps of a payload: its action, installation and repository
    (each None when absent or of the wrong type: the payload is the sender's)."""
    action = payload.get("action") if isinstance(payload.get("action"), str) else None
    inst = payload.get("installation")
    installation_id = inst.get("id") if isinstance(inst, dict) and isinstance(inst.get("id"), int) else None
    repo_obj = payload.get("repository")
    repo = repo_obj.get("full_name") if isinstance(repo_obj, dict) else None
    repo = repo if isinstance(repo, str) else None
    return Delivery(delivery_id, event, action, installation_id, repo, received_at)


def job_arguments(spec: webhooks.JobSpec, delivery_id: str) -> dict[str, Any]:
    """`JobQueue.enqueue_in` keyword arguments for a planned job (JobSpec's fields are those
    keywords); its payload names the delivery. A shallow read: `asdict` would deep-copy payloads."""
    arguments = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    arguments["payload"] = {**spec.payload, "delivery_id": delivery_id}
    return arguments
