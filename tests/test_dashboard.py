"""The dashboard over real HTTP (uvicorn on loopback): auth, pages, numbers, the SVG chart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from reviewbot.app import records
from reviewbot.app.queue import JobQueue
from reviewbot.app.records import NewFinding, Tenant
from reviewbot.app.server import create_app
from reviewbot.app.store import Store
from reviewbot.core.feedback import LabelEvent
from reviewbot.learning.dashboard import DashboardAuthError, acceptance_chart_svg, dashboard_router
from reviewbot.learning.stats import Tally

try:  # tests/ as a package (tests/__init__.py) or as a plain directory on sys.path
    from tests.feedback_data import INSTALLATION, OTHER, REPO, seed, serve
except ImportError:
    from feedback_data import INSTALLATION, OTHER, REPO, seed, serve  # type: ignore[no-redef]

TOKEN = "s3cret-admin-token"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = Store.open(tmp_path_factory.mktemp("dash") / "db.sqlite")
    seed(store)
    app = FastAPI()
    app.include_router(dashboard_router(store, TOKEN))
    with serve(app) as url:
        yield url
    store.close()


@pytest.mark.parametrize("path", ["/repos", f"/repos/{REPO}", f"/repos/{REPO}.json"])
def test_every_page_needs_the_token(base_url: str, path: str) -> None:
    assert httpx.get(base_url + path).status_code == 401
    assert httpx.get(base_url + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(base_url + path, params={"token": "wrong"}, follow_redirects=True).status_code == 401
    r = httpx.get(base_url + path, cookies={"reviewbot_admin": TOKEN})  # the raw token is not the cookie
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_query_token_sets_a_cookie_and_drops_the_token_from_the_url(base_url: str) -> None:
    with httpx.Client(base_url=base_url) as client:
        r = client.get(f"/repos/{REPO}", params={"token": TOKEN})
        assert r.status_code == 303 and r.headers["location"] == f"/repos/{REPO}"
        assert TOKEN not in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
        r = client.get(r.headers["location"])
        assert r.status_code == 200 and REPO in r.text


def test_pages_show_the_store_numbers(base_url: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    index = httpx.get(base_url + "/repos", headers=auth)
    assert index.status_code == 200
    assert f'href="/repos/{REPO}"' in index.text and f'href="/repos/{OTHER}"' in index.text
    page = httpx.get(base_url + f"/repos/{REPO}", headers=auth).text
    assert '<div class="v" id="precision">52.0%</div>' in page
    assert 'data-k="funnel-candidates">35<' in page and 'data-k="funnel-accepted">14<' in page
    assert 'id="model-version">v2<' in page
    # self-contained: an inline chart, nothing fetched from anywhere
    assert "<svg" in page
    assert all(tag not in page for tag in ("<script", "<link", "src=", "url("))
    data = httpx.get(base_url + f"/repos/{REPO}.json", headers=auth).json()
    assert data["funnel"] == {"candidates": 35, "posted": 29, "labelled": 28, "accepted": 14}
    assert httpx.get(base_url + "/repos/no/such", headers=auth).status_code == 404


def test_chart_svg_gaps_and_empty() -> None:
    weeks = [Tally("2026-01-05", 10, 7, 2), Tally("2026-01-12", 3, 0, 0), Tally("2026-01-19", 4, 4, 0)]
    svg = acceptance_chart_svg(weeks)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<circle") == 2  # the unlabelled week has no point
    assert "<polyline" not in svg  # ...so no line joins across the gap
    assert "7 accepted / 9 labelled (77.8%)" in svg
    assert "no posted comments yet" in acceptance_chart_svg([])


def test_router_refuses_an_empty_token() -> None:
    with pytest.raises(DashboardAuthError):
        dashboard_router(Store.open(":memory:"), "")


def test_mounted_on_the_real_app(tmp_path: Path) -> None:
    """The router next to the webhook server's own routes (what `serve` wires): no clash, same auth."""
    store = Store.open(tmp_path / "app.sqlite")
    seed(store)
    app = create_app(
        store=store,
        webhook_secret=b"s",
        registry=CollectorRegistry(),
        queue=JobQueue(store),
        admin_token=TOKEN,
    )
    app.include_router(dashboard_router(store, TOKEN))
    with serve(app) as url:
        assert httpx.get(f"{url}/repos/{REPO}").status_code == 401
        page = httpx.get(f"{url}/repos/{REPO}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert page.status_code == 200 and 'id="precision">52.0%<' in page.text
        assert httpx.get(f"{url}/healthz").status_code in (200, 503)  # the server's own route still answers
    store.close()


def test_the_page_shows_what_is_held_back_and_every_retrain_decision(tmp_path: Path) -> None:
    """Issue #17: per rule and category what is suppressed, since when, from which labels; the
    retrain history with decisions and both scores. The rows are written the way production does."""
    store = Store.open(tmp_path / "learned.sqlite")
    t = Tenant(INSTALLATION, "acme/shop")

    def posted(pr: int, day: int, *, rule: str | None, title: str, category: str) -> int:
        at = f"2026-02-{day:02d}T12:00:00+00:00"
        review_id = records.claim_review(store, t, pr, f"{pr:040d}", "b" * 40, at)
        row = NewFinding(
            pr=pr,
            path=f"app/m{pr}.py",
            line=3,
            side="RIGHT",
            title=title,
            body=f"{title}.",
            severity="low",
            category=category,
            source=f"rule:{rule}" if rule else "llm",
            rule_id=rule,
            score=0.5,
            decision="post",
            reason="posted",
            fingerprint=f"fp-{pr}-{title}",
            comment_id=pr * 10,
        )
        [fid] = records.add_findings(store, t, review_id, [row], at)
        return fid

    def label(fid: int, label: str, source: str, weight: float, day: int) -> None:
        at = f"2026-02-{day:02d}T15:00:00+00:00"
        records.add_label(store, t, LabelEvent(fid, label, source, {"user": "ann"}, weight, at))  # type: ignore[arg-type]

    for pr in (1, 2, 3):  # a rule dismissed by 👎 on three PRs
        label(
            posted(pr, pr, rule="py.bare-except", title="Bare except", category="bug"),
            "dismissed",
            "reaction",
            1.0,
            pr,
        )
    for pr in (1, 2, 3, 4):  # an LLM remark nobody answered, four PRs merged
        fid = posted(pr, pr, rule=None, title="Prefer a comprehension", category="style")
        label(fid, "weak_dismissed", "untouched", 0.2, pr)
    fid = posted(5, 5, rule="py.sql-injection", title="SQL built from input", category="security")
    label(fid, "accepted", "suggestion", 1.0, 5)  # accepted: never held back
    for version, decision in ((1, "activated"), (2, "kept_previous")):
        metrics = {
            "split": "newest" if version == 1 else "after v1",
            "holdout_n": 3,
            "decision": decision,
            "holdout_log_loss": 0.41 + version / 10,
            "previous_log_loss": 0.5,
            "holdout_auc": None,
            "previous_auc": 0.75,
        }
        records.add_model_version(
            store,
            t,
            params="{}",
            metrics=metrics,
            n_labels=8,
            activate=decision == "activated",
            now=f"2026-02-0{5 + version}T00:00:00+00:00",
        )
    app = FastAPI()
    app.include_router(dashboard_router(store, TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve(app) as url:
        page = httpx.get(f"{url}/repos/acme/shop", headers=auth).text
        data = httpx.get(f"{url}/repos/acme/shop.json", headers=auth).json()
    store.close()
    learned = page[page.index('id="learned"') : page.index('id="models"')]
    rule = learned[learned.index('data-kind="rule:py.bare-except"') :].split("</tr>")[0]
    assert "<td>rule</td><td>rule py.bare-except</td>" in rule and "2026-02-03 15:00" in rule
    assert "3 dismissed, 0 ignored, on 3 PRs since 2026-02-01" in rule and "<td>never</td>" in rule
    style = learned[learned.index('data-kind="llm:style:comprehension prefer"') :].split("</tr>")[0]
    assert "<td>style</td>" in style and "0 dismissed, 4 ignored, on 4 PRs since 2026-02-01" in style
    assert "sql-injection" not in learned
    v2 = page[page.index('data-version="2"') :].split("</tr>")[0]
    assert "<td>after v1</td>" in v2 and "0.610 / 0.500" in v2 and "– / 0.750" in v2
    assert "<td>kept_previous</td>" in v2
    v1 = page[page.index('data-version="1"') :].split("</tr>")[0]
    assert "<td>activated</td>" in v1 and "active" in v1
    assert [x["kind"] for x in data["learned_suppressions"]] == [
        "rule:py.bare-except",
        "llm:style:comprehension prefer",
    ]
    assert data["learned_suppressions"][0]["reason"] == (
        "suppressed: rule py.bare-except dismissed 3 times since 2026-02-01, never accepted"
    )
