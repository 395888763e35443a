"""Tenant isolation: two installations on one server, one database.

Installation A (acme) and installation B (globex) get pull requests with identical code, so their
findings have identical fingerprints. A dismisses every finding and gets a retrained model; B's
review must not see any of it (it posts the same findings, scored by the shipped prior, the only
thing the tenants share), and B's dashboard page shows none of A's data. Then A uninstalls: every
table is scanned and nothing of A is left, while B's data is intact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from reviewbot.app.app_review import ReviewRequest, acceptance_model, dismissed_fingerprints
from reviewbot.app.queue import iso
from reviewbot.app.records import Tenant
from reviewbot.filter.acceptance import load_prior
from reviewbot.learning.dashboard import dashboard_router
from reviewbot.learning.retrain import RetrainPolicy, retrain_repo
from tests.test_app_e2e import module
from tests.test_faults import RWorld
from tests.test_server import LiveServer

A = {"installation": 7, "account": "acme", "repo": "acme/shop", "repo_id": 501}
B = {"installation": 8, "account": "globex", "repo": "globex/web", "repo_id": 802}
CONFIG = {".github/reviewbot.yml": "min_acceptance: 0.01\n"}
BUGS = {3: "t3", 9: "t9", 15: "t15", 21: "t21"}
ADMIN = "tenant-admin-token"


def installation_event(t: dict[str, Any], action: str) -> dict[str, Any]:
    return {
        "action": action,
        "installation": {"id": t["installation"], "account": {"login": t["account"], "type": "Organization"}},
        "repositories": [{"id": t["repo_id"], "full_name": t["repo"]}],
        "sender": {"login": t["account"], "type": "User"},
    }


@pytest.fixture
def world(tmp_path: Path) -> Iterator[RWorld]:
    w = RWorld(tmp_path)
    w.start_worker()
    yield w
    w.close()


def posted(w: RWorld, repo: str) -> list[tuple[int, str, float]]:
    return w.rows(
        "SELECT id, fingerprint, score FROM findings WHERE repo = ? AND decision = 'post' ORDER BY line", repo
    )


def review(w: RWorld, t: dict[str, Any]) -> Any:
    w.gh.add_repo(t["repo"], t["installation"], {**CONFIG, "a.py": module(30)})
    pr = w.gh.add_pull(t["repo"], 1, head_files={"a.py": module(30, BUGS)})
    w.deliver("pull_request", w.gh.opened_event(pr, t["installation"]))
    w.settle(timeout=60)
    return pr


def test_one_installations_feedback_never_reaches_another(world: RWorld) -> None:
    w = world
    for t in (A, B):
        w.deliver("installation", installation_event(t, "created"))
    w.settle()

    review(w, A)
    a_posted = posted(w, A["repo"])
    assert len(a_posted) == 4
    # A dismisses every finding (thumbs-down), and its model is retrained on that
    now = datetime.now(UTC)
    with w.queue.lock, w.store.transaction() as conn:
        for fid, _, _ in a_posted:
            conn.execute(
                "INSERT INTO feedback (finding_id, installation_id, repo, label, source, provenance, at) "
                "VALUES (?, ?, ?, 'dismissed', 'reaction', ?, ?)",
                (
                    fid,
                    A["installation"],
                    A["repo"],
                    json.dumps({"user": "a-dev", "finding": fid}),
                    iso(now.timestamp()),
                ),
            )
    prior = load_prior()
    trained = retrain_repo(
        w.store,
        Tenant(A["installation"], A["repo"]),
        now=now,
        prior=prior,
        policy=RetrainPolicy(min_train=2, min_holdout=1, tolerance=100.0),
    )
    assert trained.activated, trained
    req_a = ReviewRequest(A["installation"], A["repo"], 1, "x")
    req_b = ReviewRequest(B["installation"], B["repo"], 1, "y")
    assert acceptance_model(w.store, req_a, lambda: prior) is not prior  # A has its own model now
    assert dismissed_fingerprints(w.store, req_a) == {fp for _, fp, _ in a_posted}
    # the model is A's: written with A's installation id, never found under B's, even for a repo
    # of the same name (a transferred or re-created repository)
    assert w.rows("SELECT installation_id FROM model_versions") == [(A["installation"],)]
    b_named_like_a = ReviewRequest(B["installation"], A["repo"], 1, "z")
    assert acceptance_model(w.store, b_named_like_a, lambda: prior) is prior

    # B: the same code, so the same fingerprints A dismissed; none of A's data applies to B
    review(w, B)
    b_posted = posted(w, B["repo"])
    assert {fp for _, fp, _ in b_posted} == {fp for _, fp, _ in a_posted}  # same findings...
    assert [s for _, _, s in b_posted] == [s for _, _, s in a_posted]  # ...scored by the same prior
    [b_review] = w.gh.posted_reviews(B["repo"], 1)
    assert len(b_review["comments"]) == 4  # ...and posted, despite A's dismissals
    assert acceptance_model(w.store, req_b, lambda: prior) is prior
    assert dismissed_fingerprints(w.store, req_b) == set()
    # a request naming A's repo under B's installation id sees nothing of A either
    assert dismissed_fingerprints(w.store, ReviewRequest(B["installation"], A["repo"], 1, "z")) == set()

    # B's dashboard page carries B's numbers only
    app = FastAPI()
    app.include_router(dashboard_router(w.store, ADMIN))
    with LiveServer(app) as dash:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        page_b = httpx.get(f"{dash.url}/repos/{B['repo']}.json", headers=auth).json()
        html_b = httpx.get(f"{dash.url}/repos/{B['repo']}", headers=auth).text
        page_a = httpx.get(f"{dash.url}/repos/{A['repo']}.json", headers=auth).json()
    assert "acme" not in json.dumps(page_b) and "acme" not in html_b
    assert json.dumps(page_b) != json.dumps(page_a)
    assert "a-dev" not in json.dumps(page_b) + html_b


def tenant_rows(w: RWorld, t: dict[str, Any]) -> dict[str, int]:
    """table -> rows that mention the tenant (its installation id, repo, account or scopes)."""
    out: dict[str, int] = {}
    tables = [r[0] for r in w.rows("SELECT name FROM sqlite_master WHERE type = 'table'")]
    needles = (t["repo"], f"org:{t['account']}", f"repo:{t['repo']}")
    for table in tables:
        if table in ("schema_migrations", "sqlite_sequence", "heartbeats"):
            continue
        cols = [r[1] for r in w.rows(f"PRAGMA table_info({table})")]
        n = 0
        for row in w.rows(f"SELECT * FROM {table}"):
            rec = dict(zip(cols, row, strict=True))
            if (
                rec.get("installation_id") == t["installation"]
                or (table == "installations" and rec.get("id") == t["installation"])
                or any(isinstance(v, str) and any(x in v for x in needles) for v in rec.values())
            ):
                n += 1
        if n:
            out[table] = n
    return out


def test_uninstall_deletes_that_installations_data_everywhere(world: RWorld) -> None:
    w = world
    for t in (A, B):
        w.deliver("installation", installation_event(t, "created"))
    w.settle()
    for t in (A, B):
        review(w, t)
    fid = posted(w, A["repo"])[0][0]
    with w.queue.lock, w.store.transaction() as conn:
        conn.execute(
            "INSERT INTO feedback (finding_id, installation_id, repo, label, source, at) "
            "VALUES (?, ?, ?, 'accepted', 'reaction', ?)",
            (fid, A["installation"], A["repo"], iso(0)),
        )
        conn.execute(
            "INSERT INTO reaction_polls (github_comment_id, repo, etag, polled_at) VALUES (1, ?, 'e', ?)",
            (A["repo"], iso(0)),
        )
        conn.execute(
            "INSERT INTO model_versions (scope, version, params, created_at) VALUES (?, 1, '{}', ?)",
            (f"repo:{A['repo']}", iso(0)),
        )
    before_a, before_b = tenant_rows(w, A), tenant_rows(w, B)
    for table in ("installations", "repositories", "deliveries", "jobs", "reviews", "findings"):
        assert before_a.get(table) and before_b.get(table), (table, before_a, before_b)
    assert {"feedback", "reaction_polls", "model_versions"} <= set(before_a)

    w.deliver("installation", installation_event(A, "deleted"))
    w.settle()

    left = tenant_rows(w, A)
    # only the uninstall job itself (the record that the deletion ran) may remain
    assert set(left) <= {"jobs", "deliveries"}, left
    assert left.get("jobs", 0) <= 1
    kinds = w.rows("SELECT kind FROM jobs WHERE installation_id = ?", A["installation"])
    assert kinds in ([], [("installation",)])
    assert tenant_rows(w, B) == before_b  # the other tenant is untouched
    assert w.gh.posted_reviews(B["repo"], 1)
