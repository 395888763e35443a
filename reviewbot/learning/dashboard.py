"""The admin dashboard: per-repo precision, funnel, rules and model version, as server-side HTML.

`dashboard_router(store, admin_token)` returns an APIRouter the app mounts; every page needs the
admin token (`Authorization: Bearer <token>`, or `?token=<token>` once, which sets a cookie and
redirects to the same page without the token in the URL). The chart is inline SVG built here, so
the page needs no script, no CDN and no network.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Sequence
from html import escape
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from reviewbot.app.records import tenant_of, tenants
from reviewbot.app.store import Store
from reviewbot.learning.stats import RepoStats, Tally, pct, repo_stats

COOKIE = "reviewbot_admin"


class DashboardAuthError(ValueError):
    """The dashboard was asked for without an admin token to protect it."""


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("reviewbot", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = pct
    env.filters["num"] = num
    return env


def num(value: object) -> str:
    """A model metric as shown: floats to 3 places, a missing one (older versions, no AUC on
    one-class labels) as '–'."""
    if value is None or value == "":
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def acceptance_chart_svg(points: Sequence[Tally], *, width: int = 960, height: int = 260) -> str:
    """Acceptance rate per week as a line (left axis, %), posted comments as grey bars (right axis).

    Weeks with nothing labelled leave a gap in the line rather than pretending to be 0%.
    """
    left, right, top, bottom = 48, 48, 16, 36
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="Acceptance rate per week" class="chart">'
    ]
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + ph * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{frac:.0%}</text>')
    if not points:
        parts.append(
            f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" class="empty">'
            "no posted comments yet</text></svg>"
        )
        return "".join(parts)
    n = len(points)
    step = pw / n
    max_posted = max(p.posted for p in points) or 1
    parts.append(
        f'<text x="{left + pw + 6}" y="{top + 4}" class="axis">{max_posted}</text>'
        f'<text x="{left + pw + 6}" y="{top + ph + 4}" class="axis">0</text>'
    )
    line: list[list[str]] = [[]]
    every = max(1, n // 8)  # at most ~8 x labels
    for i, p in enumerate(points):
        cx = left + step * (i + 0.5)
        bh = ph * p.posted / max_posted
        bw = max(2.0, step * 0.5)
        parts.append(
            f'<rect x="{cx - bw / 2:.1f}" y="{top + ph - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
            f'class="bar"><title>week of {escape(p.key)}: {p.posted} posted</title></rect>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{cx:.1f}" y="{top + ph + 18}" text-anchor="middle" class="axis">'
                f"{escape(p.key[5:])}</text>"
            )
        if p.precision is None:
            line.append([])
            continue
        cy = top + ph * (1 - p.precision)
        line[-1].append(f"{cx:.1f},{cy:.1f}")
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" class="dot"><title>week of {escape(p.key)}: '
            f"{p.accepted} accepted / {p.labelled} labelled ({pct(p.precision)})</title></circle>"
        )
    for seg in line:
        if len(seg) > 1:
            parts.append(f'<polyline points="{" ".join(seg)}" class="line"/>')
    parts.append("</svg>")
    return "".join(parts)


def _token_ok(given: str | None, admin_token: str) -> bool:
    return given is not None and bool(given) and hmac.compare_digest(given.encode(), admin_token.encode())


def _cookie_value(admin_token: str) -> str:
    """What the cookie holds: a digest of the token, so the token itself never sits in a cookie jar."""
    return hashlib.sha256(b"reviewbot-dashboard:" + admin_token.encode()).hexdigest()


def dashboard_router(store: Store, admin_token: str, *, secure_cookie: bool = False) -> APIRouter:
    """GET /repos (index) and GET /repos/{owner}/{repo} (+ .json), all behind the admin token."""
    if not admin_token:
        raise DashboardAuthError("the dashboard needs an admin token (REVIEWBOT_ADMIN_TOKEN)")
    env = _env()
    lock = threading.Lock()  # one sqlite connection, many request threads
    cookie = _cookie_value(admin_token)
    router = APIRouter()

    def authorise(request: Request) -> Response | None:
        """None when allowed; a redirect (token in the query) or a 401 otherwise."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and _token_ok(header[7:].strip(), admin_token):
            return None
        query_token = request.query_params.get("token")
        if query_token is not None:
            if not _token_ok(query_token, admin_token):
                return _unauthorised()
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            resp = RedirectResponse(target, status_code=303)
            resp.set_cookie(
                COOKIE, cookie, httponly=True, samesite="strict", secure=secure_cookie, path="/repos"
            )
            return resp
        if _token_ok(request.cookies.get(COOKIE), cookie):
            return None
        return _unauthorised()

    @router.get("/repos", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        if (denied := authorise(request)) is not None:
            return denied
        with lock:
            rows = [repo_stats(store, t) for t in tenants(store)]
        html = env.get_template("repos.html").render(repos=rows)
        return HTMLResponse(html)

    def _load(owner: str, repo: str) -> RepoStats:
        name = f"{owner}/{repo}"
        with lock:
            tenant = tenant_of(store, name)
            if tenant is None:
                raise HTTPException(status_code=404, detail=f"unknown repository {name}")
            return repo_stats(store, tenant)

    @router.get("/repos/{owner}/{repo}.json")
    def repo_json(owner: str, repo: str, request: Request) -> Response:
        if (denied := authorise(request)) is not None:
            return denied
        return JSONResponse(_load(owner, repo).as_dict())

    @router.get("/repos/{owner}/{repo}", response_class=HTMLResponse)
    def repo_page(owner: str, repo: str, request: Request) -> Response:
        if (denied := authorise(request)) is not None:
            return denied
        s = _load(owner, repo)
        chart = Markup(acceptance_chart_svg(s.over_time))
        html = env.get_template("repo.html").render(s=s, chart=chart)
        return HTMLResponse(html)

    return router


def _unauthorised() -> Response:
    return HTMLResponse(
        "<!doctype html><title>401</title><p>401: this page needs the admin token "
        "(Authorization: Bearer &lt;token&gt;, or ?token=&lt;token&gt;).</p>",
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="reviewbot"'},
    )
