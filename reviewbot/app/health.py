"""The App's health and metrics endpoints: /healthz for load balancers, /metrics for Prometheus.

Why apart from the webhook edge: health answers "would a delivery be stored and run right now?",
which needs the database, the disk and the workers' heartbeats, none of which the webhook route
reads; keeping them apart keeps each route's dependencies visible in its signature.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from reviewbot.app.metrics import CONTENT_TYPE, Metrics
from reviewbot.app.queue import JobQueue, iso, parse_iso
from reviewbot.app.store import Store
from reviewbot.app.worker import worker_heartbeats

log = logging.getLogger(__name__)

#: /healthz fails when the database's disk has less free space than this.
MIN_FREE_BYTES = 64 * 1024 * 1024


def free_bytes_beside(path: str) -> int:
    """Bytes free on the file system holding `path`."""
    return shutil.disk_usage(Path(path).resolve().parent).free


def worker_health(
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


def health_router(
    *,
    store: Store,
    queue: JobQueue,
    metrics: Metrics,
    clock: Callable[[], float],
    heartbeat_stale_seconds: float,
    disk_free: Callable[[str], int],
    min_free_bytes: int,
) -> APIRouter:
    """/healthz and /metrics over the server's store and queue."""
    router = APIRouter()

    @router.get("/healthz")
    def healthz() -> JSONResponse:
        """200 only when a delivery would be stored and a worker would run it: the database takes
        a write (not read-only, not full) and a worker heartbeat is fresh with credentials GitHub
        accepts (workers in other processes count: they heartbeat into the same database)."""
        try:
            with queue.lock:
                store.probe_write(iso(clock()))
                beats = worker_heartbeats(store.conn)
            depth = queue.depth()
            dead = queue.counts().get("dead", 0)
        except Exception as exc:
            log.exception("healthz: database error")
            return JSONResponse(
                {"status": "error", "database": f"error: {type(exc).__name__}: {exc}"}, status_code=503
            )
        database = "ok"
        free = None if store.path == ":memory:" or store.is_postgres else disk_free(store.path)
        if free is not None and free < min_free_bytes:
            database = f"error: {free} bytes free on the database's disk (under {min_free_bytes})"
        worker, age, why = worker_health(beats, clock(), heartbeat_stale_seconds)
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

    @router.get("/metrics")
    def metrics_endpoint() -> Response:
        try:
            metrics.queue_depth.set(queue.depth())
            metrics.dead_letters.set(queue.counts().get("dead", 0))
        except Exception:
            log.exception("metrics: cannot read queue depth")
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router
