"""The GitHub App end to end, through real HTTP only.

A signed delivery goes to the real FastAPI server (uvicorn on a loopback port), is queued in
SQLite, claimed by the real Worker running the real review handler (reviewbot.app.app_review), which
talks to FakeGitHub (real HTTP, enforces GitHub's anchoring rules) and FakeLLM (real HTTP,
answers from the prompt's diff). The crash tests run `reviewbot worker` as a subprocess and
SIGKILL it mid-job.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from reviewbot.app.app_review import command_notifier, review_handlers
from reviewbot.app.github import GitHubApp
from reviewbot.app.github_types import Limits
from reviewbot.app.logs import JsonFormatter
from reviewbot.app.metrics import Metrics
from reviewbot.app.queue import JobQueue
from reviewbot.app.server import create_app
from reviewbot.app.store import Store
from reviewbot.app.webhooks import sign
from reviewbot.app.worker import Worker, builtin_handlers
from reviewbot.core.settings import Settings
from reviewbot.review.pipeline import NOT_IN_PR_DIFF
from tests.fakes.fake_github import FakeGitHub, FakePull, generate_app_key
from tests.fakes.fake_llm import FakeLLM, diff_lines
from tests.fakes.live_server import LiveServer

SECRET = b"e2e-webhook-secret"
REPO = "acme/shop"
INSTALLATION = 7
APP_ID = 42
ROOT = Path(__file__).resolve().parent.parent
#: The default-branch config of the test repos. The shipped prior scores these synthetic findings
#: ~0.13 (below the default 0.5 threshold); the tests are about the App, not the threshold.
CONFIG = {".github/reviewbot.yml": "min_acceptance: 0.01\n"}
_KEYS: tuple[str, str] | None = None


def app_keys() -> tuple[str, str]:
    global _KEYS
    if _KEYS is None:
        _KEYS = generate_app_key()
    return _KEYS


def serve_env(gh: FakeGitHub, llm: FakeLLM, db: Path, priv: str, secret: str, **extra: str) -> dict[str, str]:
    """The environment of a `reviewbot serve` subprocess against the fakes: this process's without
    its own REVIEWBOT_/OPENAI_ settings, then the fakes' URLs, the App's key and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWBOT_", "OPENAI_"))}
    env.update(
        {
            "REVIEWBOT_DATABASE_PATH": str(db),
            "REVIEWBOT_GITHUB_APP_ID": str(APP_ID),
            "REVIEWBOT_GITHUB_PRIVATE_KEY": priv,
            "REVIEWBOT_GITHUB_API_URL": gh.base_url,
            "REVIEWBOT_LLM_BASE_URL": llm.base_url,
            "REVIEWBOT_LLM_API_KEY": "test",
            "REVIEWBOT_LLM_MODEL": "fake-model",
            "REVIEWBOT_LOG_LEVEL": "ERROR",
            "REVIEWBOT_WEBHOOK_SECRET": secret,
            **extra,
        }
    )
    return env


def flag_bug_lines(request_json: dict[str, Any]) -> dict[str, Any]:
    """The fake model: one high-severity finding per RIGHT line of the diff mentioning BUG."""
    findings = []
    for path, lines in diff_lines(request_json).items():
        for side, line, code in lines:
            if side != "RIGHT" or "BUG" not in code:
                continue
            tag = code.split("BUG", 1)[1].strip(" -:#")
            findings.append(
                {
                    "path": path,
                    "line": line,
                    "end_line": None,
                    "side": "RIGHT",
                    "severity": "high",
                    "category": "bug",
                    "confidence": 0.95,
                    "title": f"Crash on empty input ({tag})",
                    "body": f"`{code.strip()}` divides by zero when the list is empty ({tag}).",
                    "suggestion": None,
                    "quoted_code": code,
                }
            )
    return {"findings": findings}


def module(n: int, bugs: dict[int, str] | None = None, name: str = "f") -> str:
    """A Python file of n lines; lines in `bugs` (1-based) carry `# BUG <tag>`."""
    out = []
    for i in range(1, n + 1):
        if bugs and i in bugs:
            out.append(f"total_{i} = sum(xs) / len(xs)  # BUG {bugs[i]}")
        else:
            out.append(f"{name}_{i} = {i}")
    return "\n".join(out) + "\n"


class World:
    """FakeGitHub + FakeLLM + the server + a worker thread, over one database (a SQLite file, or
    the PostgreSQL URL given as `database`)."""

    def __init__(self, tmp: Path, *, github: FakeGitHub | None = None, database: str | None = None) -> None:
        priv, pub = app_keys()
        self.priv = priv
        self.gh = (github or FakeGitHub(app_id=APP_ID, app_public_key=pub)).start()
        self.llm = FakeLLM(responder=flag_bug_lines).start()
        self.db = tmp / "reviewbot.db"
        self.database = database or str(self.db)
        self.store = Store.open(self.database)
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.queue = JobQueue(self.store)
        self.worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self.server = LiveServer(
            create_app(
                store=self.store,
                webhook_secret=SECRET,
                registry=self.registry,
                queue=self.queue,
                enqueue_hook=self._wake,
                metrics=self.metrics,
            )
        ).__enter__()
        self.deliveries = 0

    def settings(self) -> Settings:
        return Settings(
            github_app_id=APP_ID,
            github_private_key=self.priv,
            github_api_url=self.gh.base_url,
            llm_base_url=self.llm.base_url,
            llm_api_key="test",
            llm_model="fake-model",
            llm_max_concurrency=8,
            database_path=str(self.db),
            database_url=self.database if self.store.is_postgres else None,
        )

    def _wake(self, job_id: int) -> None:
        if self.worker is not None:
            self.worker.notify(job_id)

    worker_id = "w-test"
    poll_interval = 0.1

    def make_queue(self, store: Store) -> JobQueue:
        return JobQueue(store, lease_seconds=30)

    def make_app(self) -> GitHubApp:
        return GitHubApp(
            APP_ID,
            self.priv,
            base_url=self.gh.base_url,
            limits=Limits(write_interval=0, backoff=0.01),
            on_call=self.metrics.record_github_call,
        )

    def review_job_handlers(self, store: Store, queue: JobQueue, app: GitHubApp) -> dict[str, Any]:
        return review_handlers(self.settings(), store, queue=queue, metrics=self.metrics, app=app)

    def start_worker(self) -> None:
        """The real Worker with the real handlers (as build_handlers wires them), on its own loop and
        connection; the App's write spacing is off so the tests do not wait between POSTs. The
        make_* hooks are what a variant world (tests/test_faults.py) changes."""
        ready = threading.Event()

        def main() -> None:
            store = Store.open(self.database)
            queue = self.make_queue(store)
            app = self.make_app()
            handlers = builtin_handlers(store, queue.lock, clock=queue.clock, notify=command_notifier(app))
            handlers.update(self.review_job_handlers(store, queue, app))
            self.worker = Worker(
                queue,
                handlers,
                worker_id=self.worker_id,
                concurrency=2,
                heartbeat_interval=1,
                poll_interval=self.poll_interval,
                metrics=self.metrics,
            )
            ready.set()
            try:
                asyncio.run(self.worker.run())
            finally:
                store.close()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        ready.wait(10)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self._thread is not None:
            self._thread.join(10)
        self.server.__exit__(None, None, None)
        self.store.close()
        self.llm.close()
        self.gh.stop()

    # -- GitHub's side ----------------------------------------------------------------------

    def repo_payload(self) -> dict[str, Any]:
        return {"id": self.gh.repos[REPO].id, "full_name": REPO}

    def deliver(self, event: str, payload: dict[str, Any], delivery: str | None = None) -> httpx.Response:
        body = json.dumps(payload).encode()
        delivery = delivery or f"d-{uuid.uuid4().hex[:12]}"
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(SECRET, body),
            "Content-Type": "application/json",
        }
        r = httpx.post(f"{self.server.url}/webhook", content=body, headers=headers, timeout=10)
        assert r.status_code in (200, 202), r.text
        return r

    def pr_event(self, action: str, pr: FakePull, *, before: str | None = None) -> dict[str, Any]:
        return {
            "action": action,
            "number": pr.number,
            "pull_request": {
                "number": pr.number,
                "state": "open",
                "title": pr.title,
                "draft": pr.draft,
                "user": {"login": pr.author, "type": pr.author_type},
                "labels": [{"name": name} for name in pr.labels],
                "head": {"sha": pr.head_sha, "ref": pr.head_ref},
                "base": {"sha": pr.base_sha, "ref": "main"},
            },
            "before": before,
            "repository": self.repo_payload(),
            "installation": {"id": INSTALLATION},
            "sender": {"login": pr.author, "type": pr.author_type},
        }

    def comment(self, pr: FakePull, body: str, user: str = "alice") -> tuple[dict[str, Any], dict[str, Any]]:
        c = self.gh.add_issue_comment(REPO, pr.number, body, user=user)
        payload = {
            "action": "created",
            "issue": {"number": pr.number, "pull_request": {"url": f"{self.gh.base_url}/x"}},
            "comment": {"id": c["id"], "body": body, "user": {"login": user, "type": "User"}},
            "repository": self.repo_payload(),
            "installation": {"id": INSTALLATION},
            "sender": {"login": user, "type": "User"},
        }
        return c, payload

    # -- waiting and reading ----------------------------------------------------------------

    def settle(self, timeout: float = 20.0) -> None:
        """Until no job is queued or running (failed attempts surface with their error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = self.rows(
                "SELECT id, kind, state, last_error FROM jobs WHERE state IN ('queued', 'running')"
            )
            if not live:
                return
            time.sleep(0.05)
        raise AssertionError(f"jobs did not settle: {live}")

    def rows(self, sql: str, *args: object) -> list[tuple]:
        with self.queue.lock:
            return self.store.conn.execute(sql, args).fetchall()

    def reviews(self, pr: int = 1) -> list[dict[str, Any]]:
        return self.gh.posted_reviews(REPO, pr)

    def checks(self, sha: str) -> list[dict[str, Any]]:
        return [c for c in self.gh.check_runs if c["head_sha"] == sha]


def comment_fps(review: dict[str, Any]) -> set[str]:
    from reviewbot.review.render import parse_fingerprint

    return {parse_fingerprint(c["body"]) for c in review["comments"]}


def valid_anchor(gh: FakeGitHub, pr: int, comment: dict[str, Any]) -> bool:
    files = {f.filename: f for f in gh.pull_files(REPO, pr)}
    f = files.get(comment["path"])
    return f is not None and any(comment["line"] in h.lines_on(comment["side"]) for h in f.hunks)


# ---------------------------------------------------------------------------------------------


def test_opened_posts_one_review_then_redelivery_and_synchronize(world: World) -> None:
    gh = world.gh
    gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(40), "b.py": module(40, name="g")})
    pr = gh.add_pull(
        REPO, 1, head_files={"a.py": module(40, {5: "a5", 30: "a30"}), "b.py": module(40, {8: "b8"}, "g")}
    )

    r = world.deliver("pull_request", world.pr_event("opened", pr), delivery="first")
    assert r.status_code == 202
    world.settle()

    [review] = world.reviews()
    assert review["event"] == "COMMENT" and review["commit_id"] == pr.head_sha
    assert len(review["comments"]) == 3
    assert all(valid_anchor(gh, 1, c) for c in review["comments"])
    assert gh.rejected_reviews == []
    [check] = world.checks(pr.head_sha)
    assert check["name"] == "reviewbot" and check["conclusion"] == "neutral"
    assert "3 comments posted" in check["output"]["title"] and "Funnel" in check["output"]["summary"]
    [(state, gh_review, check_id, funnel, usage)] = world.rows(
        "SELECT state, github_review_id, check_run_id, funnel, usage FROM reviews"
    )
    assert (state, gh_review, check_id) == ("posted", review["id"], check["id"])
    assert json.loads(funnel)["posted"] == 3 and json.loads(usage)["requests"] >= 1
    posted = world.rows("SELECT fingerprint, github_comment_id FROM findings WHERE decision = 'post'")
    assert len(posted) == 3 and all(cid for _, cid in posted)
    assert {fp for fp, _ in posted} == comment_fps(review)
    assert world.registry.get_sample_value("reviewbot_funnel_posted_total", {"repo": REPO}) == 3
    assert world.registry.get_sample_value("reviewbot_review_seconds_count") == 1
    assert world.registry.get_sample_value("reviewbot_stage_seconds_count", {"stage": "llm"}) == 1

    # Redelivery of the same delivery id: acknowledged, nothing new.
    assert world.deliver("pull_request", world.pr_event("opened", pr), delivery="first").status_code == 200
    # A new delivery for the same head (e.g. reopened): still one review for that SHA.
    world.deliver("pull_request", world.pr_event("reopened", pr))
    world.settle()
    assert len(world.reviews()) == 1 and len(world.checks(pr.head_sha)) == 1
    assert world.rows("SELECT COUNT(*) FROM reviews") == [(1,)]

    # synchronize: b.py gets a new bug; the old ones stay (now context or untouched).
    old_head = pr.head_sha
    n_requests = len(world.llm.requests)
    gh.push(REPO, 1, {"b.py": module(40, {8: "b8", 20: "b20"}, "g")})
    world.deliver("pull_request", world.pr_event("synchronize", pr, before=old_head))
    world.settle()
    first, second = world.reviews()
    assert second["commit_id"] == pr.head_sha
    assert [c["line"] for c in second["comments"]] == [20]
    assert comment_fps(first).isdisjoint(comment_fps(second))
    # only what changed since the last reviewed SHA went to the LLM: b.py around line 20
    seen = [diff_lines(req) for req in world.llm.requests[n_requests:]]
    assert {p for d in seen for p in d} == {"b.py"}
    assert all(n > 10 for d in seen for _, n, _ in d["b.py"])
    assert world.rows("SELECT COUNT(*) FROM reviews WHERE state = 'posted'") == [(2,)]

    # A stale job (its head is no longer the PR's) reviews nothing: the newer job did.
    stale = world.pr_event("synchronize", pr, before=None)
    stale["pull_request"]["head"]["sha"] = old_head
    world.deliver("pull_request", stale)
    world.settle()
    assert len(world.reviews()) == 2

    # The database is lost: the bot's own review on GitHub still makes the head "reviewed".
    with world.queue.lock:
        world.store.conn.execute("DELETE FROM findings")
        world.store.conn.execute("DELETE FROM reviews")
    world.deliver("pull_request", world.pr_event("reopened", pr))
    world.settle()
    assert len(world.reviews()) == 2
    assert world.rows("SELECT head_sha, state, github_review_id FROM reviews") == [
        (pr.head_sha, "posted", second["id"])
    ]
    assert world.rows("SELECT line, github_comment_id FROM findings") == [(20, second["comments"][0]["id"])]


def test_review_logs_are_json_with_delivery_job_repo_and_pr(world: World) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("reviewbot.app.app_review")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        world.gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(20)})
        pr = world.gh.add_pull(REPO, 1, head_files={"a.py": module(20, {3: "a3"})})
        world.deliver("pull_request", world.pr_event("opened", pr), delivery="log-delivery")
        world.settle()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [done] = [r for r in lines if r["msg"] == "review job: posted"]
    assert done["delivery_id"] == "log-delivery" and done["repo"] == REPO and done["pr"] == 1
    assert isinstance(done["job_id"], int) and done["posted"] == 1
    assert {"fetch", "llm", "post"} <= set(done["seconds"])


def test_incremental_review_anchors_against_the_full_pr_diff(world: World) -> None:
    gh = world.gh
    # base line 5 carries a BUG marker; the PR first changes it, then a push restores it: the
    # compare diff shows line 5 as added, the PR diff does not contain it at all.
    base = module(40, {5: "base5"})
    gh.add_repo(REPO, INSTALLATION, {**CONFIG, "c.py": base})
    first = base.replace("total_5 = sum(xs) / len(xs)  # BUG base5", "f_5 = 5")
    first = first.replace("f_30 = 30", "total_30 = sum(xs) / len(xs)  # BUG c30")
    pr = gh.add_pull(REPO, 1, head_files={"c.py": first})
    world.deliver("pull_request", world.pr_event("opened", pr))
    world.settle()
    [review] = world.reviews()
    assert [c["line"] for c in review["comments"]] == [30]

    old = pr.head_sha
    restored = first.replace("f_5 = 5", "total_5 = sum(xs) / len(xs)  # BUG base5")
    restored = restored.replace("f_33 = 33", "total_33 = sum(xs) / len(xs)  # BUG c33")
    gh.push(REPO, 1, {"c.py": restored})
    world.deliver("pull_request", world.pr_event("synchronize", pr, before=old))
    world.settle()
    _, second = world.reviews()
    assert [c["line"] for c in second["comments"]] == [33]
    assert gh.rejected_reviews == []  # the line-5 finding was never sent to GitHub
    held = world.rows("SELECT line, decision, reason FROM findings WHERE line = 5")
    assert held == [(5, "suppress", NOT_IN_PR_DIFF)]


def test_config_comes_from_the_default_branch(world: World) -> None:
    gh = world.gh
    gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(20)})
    pr = gh.add_pull(
        REPO, 1, head_files={"a.py": module(20, {3: "a3"}), ".github/reviewbot.yml": "enabled: false\n"}
    )
    world.deliver("pull_request", world.pr_event("opened", pr))
    world.settle()
    [review] = world.reviews()
    assert [c["path"] for c in review["comments"]] == ["a.py"]


def test_broken_default_branch_config_posts_a_check_naming_file_and_line(world: World) -> None:
    gh = world.gh
    gh.add_repo(
        REPO,
        INSTALLATION,
        {"a.py": module(20), ".github/reviewbot.yml": "min_acceptance: 0.01\nmax_comments: -3\n"},
    )
    pr = gh.add_pull(REPO, 1, head_files={"a.py": module(20, {3: "a3"})})
    world.deliver("pull_request", world.pr_event("opened", pr))
    world.settle()
    assert world.reviews() == []
    [check] = world.checks(pr.head_sha)
    assert check["conclusion"] == "neutral"
    assert ".github/reviewbot.yml:2" in check["output"]["title"]
    assert "max_comments" in check["output"]["text"]
    assert world.llm.requests == []


def test_drafts_and_bots_skipped_commands_review_pause_resume(world: World) -> None:
    gh = world.gh
    gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(20)})
    draft = gh.add_pull(REPO, 1, head_files={"a.py": module(20, {3: "a3"})}, draft=True)
    bot = gh.add_pull(
        REPO, 2, head_files={"a.py": module(20, {4: "a4"})}, author="dependabot[bot]", author_type="Bot"
    )
    world.deliver("pull_request", world.pr_event("opened", draft))
    world.deliver("pull_request", world.pr_event("opened", bot))
    world.settle()
    assert world.reviews(1) == [] and world.reviews(2) == [] and gh.check_runs == []

    # `@reviewbot review` on the draft: 👀, then a review of the current head.
    c, payload = world.comment(draft, "@reviewbot review please")
    world.deliver("issue_comment", payload)
    world.settle()
    [review] = world.reviews(1)
    assert review["commit_id"] == draft.head_sha and len(review["comments"]) == 1
    assert [r["content"] for r in gh.reactions[("issue", c["id"])]] == ["eyes"]

    # A second forced review of the same head never reposts a finding already on the PR.
    _, payload = world.comment(draft, "@reviewbot review")
    world.deliver("issue_comment", payload)
    world.settle()
    first, again = world.reviews(1)
    assert again["comments"] == [] and "nothing worth a comment" in again["body"]

    # pause: 👍, then a new push is not reviewed; resume: reviewed again.
    c, payload = world.comment(draft, "@reviewbot pause")
    world.deliver("issue_comment", payload)
    world.settle()
    assert [r["content"] for r in gh.reactions[("issue", c["id"])]] == ["+1"]
    gh.pulls[(REPO, 1)].draft = False
    old = draft.head_sha
    gh.push(REPO, 1, {"a.py": module(20, {3: "a3", 12: "a12"})})
    world.deliver("pull_request", world.pr_event("synchronize", draft, before=old))
    world.settle()
    assert len(world.reviews(1)) == 2
    _, payload = world.comment(draft, "@reviewbot resume")
    world.deliver("issue_comment", payload)
    world.deliver("pull_request", world.pr_event("synchronize", draft, before=old))
    world.settle()
    third = world.reviews(1)[-1]
    assert len(world.reviews(1)) == 3 and [c["line"] for c in third["comments"]] == [12]


class PickyGitHub(FakeGitHub):
    """Refuses review comments on some paths (as GitHub does for reasons we cannot predict)."""

    refuse: set[str] = set()

    def _validate_review_comment(self, pr: Any, c: dict[str, Any]) -> list[str]:
        if c.get("path") in self.refuse:
            return ["Pull request review thread line must be part of the diff"]
        return super()._validate_review_comment(pr, c)


def test_comments_github_rejects_are_recorded_and_the_rest_posted(tmp_path: Path) -> None:
    gh = PickyGitHub(app_id=APP_ID, app_public_key=app_keys()[1])
    gh.refuse = {"b.py"}
    w = World(tmp_path, github=gh)
    w.start_worker()
    try:
        gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(20), "b.py": module(20, name="g")})
        pr = gh.add_pull(
            REPO, 1, head_files={"a.py": module(20, {3: "a3"}), "b.py": module(20, {4: "b4"}, "g")}
        )
        w.deliver("pull_request", w.pr_event("opened", pr))
        w.settle()
        [review] = w.reviews()
        assert [c["path"] for c in review["comments"]] == ["a.py"]
        assert "1 comment was left out" in review["body"]
        rows = w.rows("SELECT path, decision, reason, github_comment_id FROM findings ORDER BY path")
        assert rows[0][0] == "a.py" and rows[0][1] == "post" and rows[0][3]
        assert rows[1][:2] == ("b.py", "suppress") and rows[1][2].startswith("rejected by GitHub:")
        [(funnel,)] = w.rows("SELECT funnel FROM reviews")
        assert json.loads(funnel)["posted"] == 1
    finally:
        w.close()


# --- crashes: `reviewbot worker` as a subprocess, SIGKILLed mid-job --------------------------


def worker_env(w: World) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWBOT_", "OPENAI_"))}
    env.update(
        {
            "REVIEWBOT_DATABASE_PATH": str(w.db),
            "REVIEWBOT_GITHUB_APP_ID": str(APP_ID),
            **({"REVIEWBOT_DATABASE_URL": w.database} if w.store.is_postgres else {}),
            "REVIEWBOT_GITHUB_PRIVATE_KEY": w.priv,
            "REVIEWBOT_GITHUB_API_URL": w.gh.base_url,
            "REVIEWBOT_LLM_BASE_URL": w.llm.base_url,
            "REVIEWBOT_LLM_API_KEY": "test",
            "REVIEWBOT_LLM_MODEL": "fake-model",
            "REVIEWBOT_LOG_LEVEL": "WARNING",
        }
    )
    return env


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def kill_and_restart(w: World, when: Callable[[], bool]) -> None:
    """Start `reviewbot worker`, SIGKILL it once `when()` holds, let the lease run out (moved to the
    past: the lease is 120 s in production), then run `reviewbot worker --once`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reviewbot", "worker"],
        env=worker_env(w),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # the worker and its job process are two interpreters to start on a loaded machine
        wait_until(lambda: when() or proc.poll() is not None, timeout=90)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    [(state,)] = w.rows("SELECT state FROM jobs WHERE kind = 'review'")
    assert state == "running"  # the dead worker still holds it
    w.rows("UPDATE jobs SET lease_expires_at = '2000-01-01T00:00:00.000000+00:00' WHERE state = 'running'")
    w.llm.latency = 0
    done = subprocess.run(
        [sys.executable, "-m", "reviewbot", "worker", "--once"],
        env=worker_env(w),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def bare_world(tmp_path: Path, database: str) -> Iterator[World]:
    w = World(tmp_path, database=database)  # no in-process worker: the subprocess is the worker
    yield w
    w.close()


def test_worker_killed_during_the_llm_call_still_one_review(bare_world: World) -> None:
    w = bare_world
    w.gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(20)})
    pr = w.gh.add_pull(REPO, 1, head_files={"a.py": module(20, {3: "a3"})})
    w.llm.latency = 30
    w.deliver("pull_request", w.pr_event("opened", pr))
    kill_and_restart(w, lambda: w.llm.in_flight > 0)
    assert w.rows("SELECT state FROM reviews") == [("posted",)]
    [review] = w.reviews()
    assert len(review["comments"]) == 1
    assert w.rows("SELECT state FROM jobs WHERE kind = 'review'") == [("done",)]


def test_worker_killed_after_posting_before_recording_never_reposts(bare_world: World) -> None:
    w = bare_world
    w.gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(20)})
    pr = w.gh.add_pull(REPO, 1, head_files={"a.py": module(20, {3: "a3"})})
    # the review is posted, then the check-run POST hangs: the worker dies before recording
    w.gh.slow_next(1, delay=3, path_prefix=f"/repos/{REPO}/check-runs", method="POST")
    w.deliver("pull_request", w.pr_event("opened", pr))
    kill_and_restart(
        w, lambda: len(w.reviews()) == 1 and any(r.path.endswith("/check-runs") for r in list(w.gh.requests))
    )
    [review] = w.reviews()
    assert w.rows("SELECT state, github_review_id FROM reviews") == [("posted", review["id"])]
    [(fp, cid, reason)] = w.rows("SELECT fingerprint, github_comment_id, reason FROM findings")
    assert reason == "recovered from GitHub after a restart"
    assert cid == review["comments"][0]["id"] and {fp} == comment_fps(review)
    wait_until(lambda: bool(w.gh.check_runs))  # the hung POST finishes before the fake stops


# --- the pure helpers of the handler -----------------------------------------------------------


def _decision(path: str, line: int, end_line: int | None = None, side: str = "RIGHT") -> Any:
    from reviewbot.core.domain import Candidate, Decision

    cand = Candidate(id="c", path=path, line=line, end_line=end_line, side=side, body="b")  # type: ignore[arg-type]
    return Decision(cand, "post", "posted", 0.9, "high", "bug", "k", f"fp-{path}-{line}-{end_line}")


def test_restrict_to_diff_keeps_only_what_the_pr_diff_accepts() -> None:
    from reviewbot.core.domain import ReviewResult
    from reviewbot.review.diff import parse_diff
    from reviewbot.review.pipeline import restrict_to_diff

    full = parse_diff(
        "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n"
        "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n@@ -20,3 +20,3 @@\n t\n-u\n+U\n v\n"
    )
    files = {f.path: f for f in full}
    ok, far, across, other, left = (
        _decision("x.py", 2),
        _decision("x.py", 10),
        _decision("x.py", 2, 21),
        _decision("y.py", 1),
        _decision("x.py", 2, side="LEFT"),
    )
    result = ReviewResult(posted=[ok, far, across, other, left])
    result.funnel.posted = 5
    moved = restrict_to_diff(result, files)
    assert result.posted == [ok, left] and moved == [far, across, other]
    assert all(d.decision == "suppress" and d.reason == NOT_IN_PR_DIFF for d in moved)
    assert result.funnel.posted == 2 and result.funnel.dropped == {NOT_IN_PR_DIFF: 3}


def test_config_error_check_names_file_and_line() -> None:
    from reviewbot.app.app_review import config_error_check
    from reviewbot.core.config import ConfigError, load_config

    with pytest.raises(ConfigError) as err:
        load_config("max_comments: 3\nmin_severity: loud\n")
    title, summary, text = config_error_check(err.value.messages)
    assert ".github/reviewbot.yml:2" in title and "min_severity" in text and "not reviewed" in summary


def test_a_push_with_nothing_to_post_adds_no_review(world: World) -> None:
    """Issue #17: every fixing push got a new review saying 'found nothing worth a comment'.
    Now such a push adds no review; its check run carries the funnel, and the head counts as
    reviewed (a redelivery does not review it again)."""
    gh = world.gh
    gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(20)})
    pr = gh.add_pull(REPO, 1, head_files={"a.py": module(20, {3: "a3"})})
    world.deliver("pull_request", world.pr_event("opened", pr))
    world.settle()
    [first] = world.reviews()
    assert [c["line"] for c in first["comments"]] == [3]

    old = pr.head_sha
    fixed = gh.push(REPO, 1, {"a.py": module(20)})  # the fix: nothing new to say
    world.deliver("pull_request", world.pr_event("synchronize", pr, before=old))
    world.settle()
    assert world.reviews() == [first]
    [check] = world.checks(fixed)
    assert check["output"]["title"].startswith("0 comments posted from")
    assert world.rows("SELECT state, github_review_id FROM reviews WHERE head_sha = ?", fixed) == [
        ("posted", None)
    ]
    llm_calls = len(world.llm.requests)
    world.deliver("pull_request", world.pr_event("synchronize", pr, before=old))
    world.settle()
    assert world.reviews() == [first] and len(world.llm.requests) == llm_calls
    assert len(world.checks(fixed)) == 1

    # a later push with something to say is reviewed as usual, from the quiet head on
    gh.push(REPO, 1, {"b.py": module(20, {9: "b9"}, name="g")})
    world.deliver("pull_request", world.pr_event("synchronize", pr, before=fixed))
    world.settle()
    _, later = world.reviews()
    assert [(c["path"], c["line"]) for c in later["comments"]] == [("b.py", 9)]
