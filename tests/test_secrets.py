"""Secrets never leave: after a full App run, scan everything the process wrote or served.

The run (real server, real worker, fake GitHub and fake LLM over HTTP) covers a review whose model
tries to publish every secret it can name, an LLM error whose message quotes the API key, a
`@reviewbot review` command and a job that dead-letters. Then the JSON log stream, the jobs'
error texts, the SQLite files (database, WAL) byte for byte, the dashboard HTML and JSON, the
health, metrics and dead-letter endpoints, and every request body sent to GitHub are scanned for
the private key, the webhook secret, the installation tokens and the LLM key.

Also: a private key file readable by group or others is warned about.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from reviewbot.app.app_review import github_app_from_settings
from reviewbot.app.logs import configure_logging
from reviewbot.app.queue import JobQueue
from reviewbot.app.server import create_app
from reviewbot.core.settings import Settings, settings_secrets
from reviewbot.learning.dashboard import dashboard_router
from tests.fakes.fake_llm import diff_lines
from tests.fakes.live_server import LiveServer
from tests.test_app_e2e import CONFIG, INSTALLATION, REPO, SECRET, module
from tests.test_faults import LLM_KEY, RWorld

ADMIN_TOKEN = "admin-secret-token-5b2f9e"


def leaking_model(world: RWorld) -> Any:
    """A model that puts every secret it could learn into its findings."""

    def respond(request_json: dict[str, Any]) -> dict[str, Any]:
        tokens = list(world.gh.tokens)
        pem_lines = [ln for ln in world.priv.splitlines() if "-----" not in ln]
        findings = []
        for path, lines in diff_lines(request_json).items():
            right = [(n, code) for side, n, code in lines if side == "RIGHT" and "BUG" in code]
            for i, (n, code) in enumerate(right):
                findings.append(
                    {
                        "path": path,
                        "line": n,
                        "end_line": None,
                        "side": "RIGHT",
                        "severity": "high",
                        "category": "security",
                        "confidence": 0.99,
                        "title": f"Leak {i}: {SECRET.decode()} {tokens[0] if tokens else ''}",
                        "body": f"key={LLM_KEY}\nwebhook={SECRET.decode()}\n"
                        f"token={' '.join(tokens)}\n{world.priv}",
                        "suggestion": f"x = '{pem_lines[1]}'",
                        "quoted_code": code,
                    }
                )
        return {"findings": findings}

    return respond


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[RWorld, str]]:
    stream = io.StringIO()
    w = RWorld(tmp_path, secrets=None)
    secrets = settings_secrets(w.settings().model_copy(update={"webhook_secret": SecretStr(SECRET.decode())}))
    w.secrets = secrets
    handler = configure_logging("DEBUG", stream, secrets=secrets)
    try:
        w.llm.responder = leaking_model(w)
        w.start_worker()
        gh = w.gh
        gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(30)})
        pr = gh.add_pull(REPO, 1, head_files={"a.py": module(30, {4: "a4", 20: "a20"})})
        # an LLM error whose message quotes the key (as OpenAI's 401 does), then normal answers
        w.llm.enqueue_fault(401, message=f"Incorrect API key provided: {LLM_KEY}. You can find yours at ...")
        w.deliver("pull_request", w.pr_event("opened", pr))
        w.settle(timeout=60)
        _, payload = w.comment(pr, "@reviewbot review")
        w.deliver("issue_comment", payload)
        w.settle(timeout=60)
        # a job that dead-letters: the PR is gone
        gone = gh.add_pull(REPO, 2, head_files={"a.py": module(30, {7: "a7"})})
        gh.fail_next(1000, 404, f"/repos/{REPO}/pulls/2", "GET")
        w.deliver("pull_request", w.pr_event("opened", gone))
        w.settle(timeout=60)
        yield w, stream.getvalue()
    finally:
        logging.getLogger().removeHandler(handler)
        w.close()


def never(w: RWorld) -> dict[str, str]:
    """name -> value of everything that must not appear anywhere."""
    out = {"webhook secret": SECRET.decode(), "LLM key": LLM_KEY, "admin token": ADMIN_TOKEN}
    for i, token in enumerate(w.gh.tokens):
        out[f"installation token {i}"] = token
    for i, line in enumerate(ln for ln in w.priv.splitlines() if "-----" not in ln):
        out[f"private key line {i}"] = line
    return out


def assert_clean(where: str, text: str | bytes, secrets: dict[str, str]) -> None:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    for name, value in secrets.items():
        for form in {value.encode(), value.encode("utf-16-le")}:
            assert form not in data, f"{name} found in {where}"


def test_nothing_leaks_after_a_full_run(run: tuple[RWorld, str]) -> None:
    w, logs = run
    secrets = never(w)
    assert any(k.startswith("installation token") for k in secrets), "no token was ever issued"
    assert len(w.reviews()) == 2  # the opened review and the forced one
    assert w.rows("SELECT state FROM jobs WHERE pr = 2 AND kind = 'review'") == [("dead",)]

    # 1. the JSON log stream (DEBUG: httpx, githubkit, openai, uvicorn included)
    assert logs.count("\n") > 20
    for line in logs.splitlines():
        json.loads(line)
    assert_clean("the logs", logs, secrets)
    assert "[REDACTED]" in logs  # the 401's message was logged, masked

    # 2. error texts kept for operators
    for (error,) in w.rows("SELECT last_error FROM jobs WHERE last_error IS NOT NULL"):
        assert_clean("jobs.last_error", error, secrets)

    # 3. everything GitHub received (request bodies) and shows (reviews, comments, check runs)
    for req in w.gh.requests:
        assert_clean(f"{req.method} {req.path} body", json.dumps(req.body), secrets)
        assert "authorization" not in req.headers  # the fake strips it; tokens only ever go there
    for review in w.reviews():
        assert review["event"] == "COMMENT"
        assert_clean("a posted review", json.dumps(review), secrets)
    assert_clean("the check runs", json.dumps(w.gh.check_runs), secrets)

    # 4. the dashboard, health, metrics and admin endpoints
    app = FastAPI()
    app.include_router(dashboard_router(w.store, ADMIN_TOKEN))
    served = create_app(
        store=w.store,
        webhook_secret=SECRET,
        registry=CollectorRegistry(),
        queue=JobQueue(w.store),
        admin_token=ADMIN_TOKEN,
    )
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with LiveServer(app) as dash, LiveServer(served) as srv:
        pages = [
            httpx.get(f"{dash.url}/repos", headers=auth),
            httpx.get(f"{dash.url}/repos/{REPO}", headers=auth),
            httpx.get(f"{dash.url}/repos/{REPO}.json", headers=auth),
            httpx.get(f"{srv.url}/healthz"),
            httpx.get(f"{srv.url}/metrics"),
            httpx.get(f"{srv.url}/admin/dead-letters", headers=auth),
        ]
    assert [p.status_code for p in pages] == [200, 200, 200, 200, 200, 200], [p.text[:200] for p in pages]
    secrets_but_admin = {k: v for k, v in secrets.items() if k != "admin token"}
    for page in pages:
        assert_clean(f"GET {page.url.path}", page.content, secrets_but_admin)
        assert ADMIN_TOKEN.encode() not in page.content
    assert REPO in pages[1].text

    # 5. the database files, byte for byte (WAL included, before and after a checkpoint)
    files = [p for p in w.db.parent.iterdir() if p.name.startswith(w.db.name)]
    assert any(p.name.endswith("-wal") for p in files)
    for path in files:
        assert_clean(path.name, path.read_bytes(), secrets)
    with sqlite3.connect(w.db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert_clean(w.db.name, w.db.read_bytes(), secrets)


def test_a_private_key_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.fakes.fake_github import generate_app_key

    pem, _ = generate_app_key()
    key = tmp_path / "app.pem"
    key.write_text(pem)
    os.chmod(key, 0o644)
    settings = Settings(github_app_id=42, github_private_key=str(key))
    [warning] = settings.private_key_warnings()
    assert "REVIEWBOT_GITHUB_PRIVATE_KEY" in warning and "chmod 600" in warning and "644" in warning
    with caplog.at_level(logging.WARNING):
        assert github_app_from_settings(settings) is not None  # the App still starts, loudly
    assert "accessible by group/others" in caplog.text
    assert "BEGIN" not in caplog.text and pem.splitlines()[1] not in caplog.text

    os.chmod(key, 0o600)
    assert settings.private_key_warnings() == []
    os.chmod(key, 0o640)  # group-readable is also too open
    assert settings.private_key_warnings()
    # the key given as PEM text (an env var): no file, no warning, and never echoed
    inline = Settings(github_app_id=42, github_private_key=pem)
    assert inline.private_key_warnings() == []
    assert pem.splitlines()[1] not in repr(inline) + str(inline.model_dump())


def test_the_worker_wiring_hands_every_configured_secret_to_the_review(tmp_path: Path) -> None:
    """`review_handlers` (what `reviewbot serve/worker` runs) passes the settings' secrets on, so
    the masking above is what production does, not only what this harness does."""
    from reviewbot.app.app_review import review_handlers
    from reviewbot.app.store import Store
    from tests.fakes.fake_github import generate_app_key

    pem, _ = generate_app_key()
    settings = Settings(
        github_app_id=42,
        github_private_key=pem,
        webhook_secret=SECRET.decode(),
        llm_api_key=LLM_KEY,
        admin_token=ADMIN_TOKEN,
    )
    store = Store.open(tmp_path / "w.db")
    try:
        handlers = review_handlers(
            settings, store, queue=JobQueue(store), metrics=None, app=github_app_from_settings(settings)
        )
        secrets = handlers["review"].__self__.secrets  # type: ignore[attr-defined]
    finally:
        store.close()
    for value in (SECRET.decode(), LLM_KEY, ADMIN_TOKEN, pem.splitlines()[1]):
        assert value in secrets


def test_review_cli_report_never_carries_the_llm_key(tmp_path: Path) -> None:
    """`reviewbot review --format json` with a model that echoes the configured key (one with no
    recognisable shape, as a vLLM or Azure key may be): the report masks it."""
    from reviewbot.adapters.local import build_repo_from_dirs
    from tests.fakes.fake_llm import FakeLLM
    from tests.test_review_e2e import DEMO, run_cli

    key = "local-vllm-key-9f3b27d1c4"

    def echo_key(request_json: dict[str, Any]) -> dict[str, Any]:
        findings = []
        for path, lines in diff_lines(request_json).items():
            for side, n, code in lines[:3]:
                findings.append(
                    {
                        "path": path,
                        "line": n,
                        "side": side,
                        "severity": "high",
                        "category": "bug",
                        "confidence": 0.9,
                        "title": f"uses {key}",
                        "body": f"The key is {key}.",
                        "suggestion": f"x = '{key}'",
                        "quoted_code": code,
                    }
                )
        return {"findings": findings}

    base, head = build_repo_from_dirs(tmp_path / "demo", DEMO / "before", DEMO / "after")
    with FakeLLM(responder=echo_key) as llm:
        env = {"REVIEWBOT_LLM_BASE_URL": llm.base_url, "REVIEWBOT_LLM_API_KEY": key}
        args = ["review", str(tmp_path / "demo"), "--base", base, "--head", head, "--format", "json"]
        proc = run_cli(*args, env=env)
        assert llm.requests
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["findings"] or report["suppressed"]
    assert key not in proc.stdout and key not in proc.stderr
    assert "[REDACTED]" in proc.stdout
