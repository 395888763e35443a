"""The operator's endpoints: list dead-lettered jobs and retry one, behind a bearer token.

Off unless an admin token is configured (404, so a scanner learns nothing); a wrong token is 401.
The token is compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from reviewbot.app.queue import JobQueue


def bearer_ok(request: Request, token: str) -> bool:
    """The request carries `Authorization: Bearer <token>` (compared in constant time)."""
    header = request.headers.get("authorization", "")
    return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


def admin_router(
    *, queue: JobQueue, admin_token: str | None, enqueue_hook: Callable[[int], None] | None
) -> APIRouter:
    """/admin/dead-letters and /admin/jobs/{id}/retry over the server's queue."""
    router = APIRouter()

    def refusal(request: Request) -> JSONResponse | None:
        if not admin_token:
            return JSONResponse({"error": "admin endpoints are disabled"}, status_code=404)
        if not bearer_ok(request, admin_token):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return None

    @router.get("/admin/dead-letters")
    def dead_letters(request: Request) -> JSONResponse:
        if (refused := refusal(request)) is not None:
            return refused
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
                for j in queue.dead_letters()
            ]
        )

    @router.post("/admin/jobs/{job_id}/retry")
    def retry_job(job_id: int, request: Request) -> JSONResponse:
        if (refused := refusal(request)) is not None:
            return refused
        if not queue.retry_dead(job_id):
            return JSONResponse({"error": "no dead job with that id"}, status_code=404)
        if enqueue_hook is not None:
            enqueue_hook(job_id)
        return JSONResponse({"job_id": job_id, "state": "queued"})

    return router
