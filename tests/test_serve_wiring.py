"""How `serve`/`worker` put the pieces together: job kinds, the feedback tick, the dashboard."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from reviewbot.app.metrics import Metrics
from reviewbot.app.queue import JobQueue
from reviewbot.app.store import Store
from reviewbot.app.worker import Worker
from reviewbot.commands.serve_cmd import build_handlers, feedback_ticker
from reviewbot.core.settings import Settings

try:
    from tests.feedback_data import add_finding
except ImportError:  # tests/ run as a plain folder
    from feedback_data import add_finding  # type: ignore[no-redef]


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env(database_path=str(tmp_path / "rb.db"))


def test_every_job_kind_the_server_queues_has_a_handler(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "rb.db")
    queue = JobQueue(store)
    handlers = build_handlers(_settings(tmp_path), store, queue=queue, metrics=Metrics(CollectorRegistry()))
    for kind in (
        "review",
        "command.review",
        "command.pause",
        "command.resume",
        "installation",
        "feedback",
        "poll_feedback",
        "conversation",
        "retrain",
    ):
        assert kind in handlers, kind


def test_feedback_job_without_an_app_dead_letters_with_the_settings_to_set(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "rb.db")
    queue = JobQueue(store)
    handlers = build_handlers(_settings(tmp_path), store, queue=queue, metrics=Metrics(CollectorRegistry()))
    job_id = queue.enqueue(
        "feedback",
        {"webhook_event": "ping", "webhook": {}},
        installation_id=1,
        repo="o/r",
        pr=1,
        head_sha=None,
        dedupe_key=None,
    )
    worker = Worker(queue, handlers, worker_id="t", concurrency=1, poll_interval=0.05)
    asyncio.run(worker.run_until_idle(timeout=20))
    job = queue.get(job_id)
    assert job is not None and job.state == "dead"
    assert "REVIEWBOT_GITHUB_APP_ID" in (job.last_error or "")


def test_feedback_tick_queues_reaction_polls_for_repos_with_recent_comments(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "rb.db")
    now = datetime.now(UTC).isoformat()
    add_finding(
        store,
        repo="acme/api",
        pr=3,
        created_at=now,
        path="a.py",
        category="bug",
        rule_id=None,
        score=0.8,
        comment_id=501,
        installation_id=7,
    )
    add_finding(
        store,
        repo="acme/old",
        pr=1,
        created_at="2020-01-01T00:00:00+00:00",
        path="b.py",
        category="bug",
        rule_id=None,
        score=0.8,
        comment_id=502,
    )
    queue = JobQueue(store)
    worker = Worker(queue, {}, worker_id="t", concurrency=1)

    async def one_tick() -> None:
        task = asyncio.create_task(feedback_ticker(queue, worker, interval=60))
        await asyncio.sleep(0.3)
        worker.stop()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(one_tick())
    rows = store.conn.execute("SELECT kind, repo, installation_id FROM jobs").fetchall()
    assert rows == [("poll_feedback", "acme/api", 7)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_mounts_the_dashboard_behind_the_admin_token(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWBOT_", "OPENAI_"))}
    env.update(
        {
            "REVIEWBOT_WEBHOOK_SECRET": "s3cret",
            "REVIEWBOT_ADMIN_TOKEN": "admin-token-123",
            "REVIEWBOT_DATABASE_PATH": str(tmp_path / "rb.db"),
        }
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reviewbot",
            "serve",
            "--no-worker",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        assert httpx.get(f"{base}/repos", timeout=5).status_code == 401
        ok = httpx.get(f"{base}/repos", headers={"Authorization": "Bearer admin-token-123"}, timeout=5)
        assert ok.status_code == 200 and "text/html" in ok.headers["content-type"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_old_deliveries_and_finished_jobs_are_pruned_live_and_dead_ones_kept(tmp_path: Path) -> None:
    from datetime import timedelta

    from reviewbot.app.retention import prune

    store = Store.open(tmp_path / "rb.db")
    now = datetime.now(UTC)
    old, recent = (now - timedelta(days=30)).timestamp(), (now - timedelta(days=1)).timestamp()
    clock = [old]
    queue = JobQueue(store, clock=lambda: clock[0])
    for i, when in enumerate((old, recent)):
        store.conn.execute(
            "INSERT INTO deliveries (id, event, received_at) VALUES (?, 'ping', ?)",
            (f"d{i}", datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds")),
        )
    done, dead, queued = (queue.enqueue("x", {}, dedupe_key=f"k{i}") for i in range(3))
    for job_id, state in ((done, "done"), (dead, "dead")):
        store.conn.execute("UPDATE jobs SET state = ? WHERE id = ?", (state, job_id))
    assert prune(store, now=now) == {"deliveries": 1, "jobs": 1}
    assert [r[0] for r in store.conn.execute("SELECT id FROM deliveries")] == ["d1"]
    assert sorted(r[0] for r in store.conn.execute("SELECT id FROM jobs")) == [dead, queued]
