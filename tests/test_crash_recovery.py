"""Crash recovery: `reviewbot worker` (a subprocess, production code and settings) SIGKILLed at
each stage of a review job, then restarted.

The worker is stopped at a stage without any test hook in the product: the fake servers hold the
request that marks the stage (a gate), the test SIGKILLs the worker while it waits, and the held
request is then dropped unprocessed, as if the process died before it reached the server.

Stages: while fetching (a head file read held), after fetching (the LLM request held), after the
LLM answered (the review POST held), and after posting, before recording (the check-run POST
held: the review is on GitHub, the database does not know yet). The dead worker's lease is moved
to the past (production leases are 120 s), and `reviewbot worker --once` runs. For every stage:
exactly one review for the head SHA, every finding of the model posted once and recorded once,
the database intact (integrity check, WAL, still writable).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from reviewbot.app.queue import JobQueue
from reviewbot.app.store import Store
from reviewbot.review.render import parse_fingerprint
from tests.fakes.fake_github import FakeGitHub
from tests.test_app_e2e import (
    APP_ID,
    CONFIG,
    INSTALLATION,
    REPO,
    ROOT,
    World,
    app_keys,
    module,
    wait_until,
    worker_env,
)

BUGS = {4: "a4", 17: "a17", 29: "a29"}


class GatedGitHub(FakeGitHub):
    """Holds the first request matching (method, path prefix) until `release`, then drops it."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.gate: tuple[str, str] | None = None
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.dropped: list[str] = []

    def _handle(self, h: Any) -> None:
        path = unquote(urlsplit(h.path).path)
        gate = self.gate
        if gate is not None and h.command == gate[0] and path.startswith(gate[1]):
            self.gate = None
            self.arrived.set()
            self.release.wait(60)
            self.dropped.append(f"{h.command} {path}")
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        super()._handle(h)


@pytest.fixture
def world(tmp_path: Path, database: str) -> Iterator[World]:
    gh = GatedGitHub(app_id=APP_ID, app_public_key=app_keys()[1])
    w = World(tmp_path, github=gh, database=database)  # no in-process worker: the subprocess is the worker
    yield w
    gh.release.set()
    w.close()


def crash_at(w: World, reached: Callable[[], bool], dead: Callable[[], None] = lambda: None) -> int:
    """Run `reviewbot worker`, SIGKILL it once `reached()`, expire its lease, run `worker --once`.

    `dead()` runs while the worker is dead (to inspect what it left). Returns how many LLM requests
    had been made when it died."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reviewbot", "worker"],
        env=worker_env(w),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: reached() or proc.poll() is not None, timeout=90)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    llm_at_kill = len(w.llm.requests)
    dead()
    gh = w.gh
    assert isinstance(gh, GatedGitHub)
    gh.release.set()  # the held request is dropped: it never reached "GitHub"
    w.llm.latency = 0
    assert w.rows("SELECT state FROM jobs WHERE kind = 'review'") == [("running",)]
    w.rows("UPDATE jobs SET lease_expires_at = '2000-01-01T00:00:00.000000+00:00' WHERE state = 'running'")
    done = subprocess.run(
        [sys.executable, "-m", "reviewbot", "worker", "--once"],
        env=worker_env(w),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return llm_at_kill


def assert_recovered(w: World, head_sha: str, *, recovered_from_github: bool) -> None:
    reviews = [r for r in w.reviews() if r["commit_id"] == head_sha]
    assert len(reviews) == 1, f"{len(reviews)} reviews for one head SHA"
    [review] = reviews
    assert review["event"] == "COMMENT"
    fps = [parse_fingerprint(c["body"]) for c in review["comments"]]
    assert len(fps) == len(BUGS) and len(set(fps)) == len(fps), "a finding lost or posted twice"
    assert sorted(c["line"] for c in review["comments"]) == sorted(BUGS)
    assert w.rows("SELECT state, github_review_id FROM reviews") == [("posted", review["id"])]
    rows = w.rows("SELECT fingerprint, github_comment_id, reason FROM findings WHERE decision = 'post'")
    assert sorted(fp for fp, _, _ in rows) == sorted(fps), "the database lost or doubled a finding"
    assert {cid for _, cid, _ in rows} == {c["id"] for c in review["comments"]}
    recovered = {reason for _, _, reason in rows} == {"recovered from GitHub after a restart"}
    assert recovered is recovered_from_github
    assert w.rows("SELECT state FROM jobs WHERE kind = 'review'") == [("done",)]
    # the database is intact and still takes work
    if not w.store.is_postgres:
        with sqlite3.connect(w.db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store = Store.open(w.database)
    try:
        queue = JobQueue(store)
        job_id = queue.enqueue("noop", {})
        job = queue.claim("after-crash")
        assert job is not None and job.id == job_id and queue.complete(job)
    finally:
        store.close()


def start(w: World) -> Any:
    w.gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(40)})
    pr = w.gh.add_pull(REPO, 1, head_files={"a.py": module(40, BUGS)})
    w.deliver("pull_request", w.pr_event("opened", pr))
    return pr


def gate(w: World, method: str, prefix: str) -> GatedGitHub:
    gh = w.gh
    assert isinstance(gh, GatedGitHub)
    gh.gate = (method, prefix)
    return gh


def test_killed_while_fetching(world: World) -> None:
    gh = gate(world, "GET", f"/repos/{REPO}/contents/a.py")
    pr = start(world)
    assert crash_at(world, gh.arrived.is_set) == 0  # it died before asking the model
    assert gh.dropped
    assert_recovered(world, pr.head_sha, recovered_from_github=False)


def test_killed_after_fetching_while_the_llm_thinks(world: World) -> None:
    world.llm.latency = 60
    pr = start(world)
    crash_at(world, lambda: world.llm.in_flight > 0)
    assert_recovered(world, pr.head_sha, recovered_from_github=False)


def test_killed_after_the_llm_answered_before_posting(world: World) -> None:
    gh = gate(world, "POST", f"/repos/{REPO}/pulls/1/reviews")
    pr = start(world)
    crash_at(world, gh.arrived.is_set)
    answered = [r for r in world.llm.received if r.path.endswith("/chat/completions") and r.status == 200]
    assert len(answered) >= 1  # the model had answered; its findings died with the worker
    assert_recovered(world, pr.head_sha, recovered_from_github=False)


def test_killed_after_posting_before_recording(world: World) -> None:
    gh = gate(world, "POST", f"/repos/{REPO}/check-runs")
    pr = start(world)

    def left_behind() -> None:
        assert len(world.reviews()) == 1  # on GitHub, unknown to the database
        assert world.rows("SELECT state FROM reviews") == [("pending",)]

    n_llm = crash_at(world, gh.arrived.is_set, left_behind)
    assert_recovered(world, pr.head_sha, recovered_from_github=True)
    assert len(world.llm.requests) == n_llm  # recovery reads GitHub, it does not review again
    [check] = world.checks(pr.head_sha)  # the check run the dead worker never created
    assert check["name"] == "reviewbot" and f"{len(BUGS)} comments posted" in check["output"]["title"]


def test_killed_inside_a_write_transaction_leaves_a_usable_database(tmp_path: Path) -> None:
    """SIGKILL while a process holds SQLite's write lock mid-transaction (BEGIN IMMEDIATE, WAL):
    the half-written transaction is gone, the file is intact, and the next writer gets the lock at
    once (no stale lock, no waiting for the busy timeout)."""
    import time

    db = tmp_path / "kill.db"
    store = Store.open(db)
    JobQueue(store).enqueue("before", {})
    store.close()
    script = (
        "import sys, time\n"
        "from reviewbot.app.store import Store\n"
        "s = Store.open(sys.argv[1])\n"
        "s.conn.execute('BEGIN IMMEDIATE')\n"
        "for i in range(5000):\n"
        '    s.conn.execute("INSERT INTO jobs (kind, payload, run_after, created_at, updated_at) "\n'
        "                   \"VALUES ('half', '{}', 'x', 'x', 'x')\")\n"
        "print('in transaction', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(db)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"in transaction"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    started = time.monotonic()
    store = Store.open(db)
    try:
        queue = JobQueue(store)
        job_id = queue.enqueue("after", {})
        assert time.monotonic() - started < 5  # the lock died with the process
        kinds = [r[0] for r in store.conn.execute("SELECT kind FROM jobs ORDER BY id")]
        assert kinds == ["before", "after"] and job_id
        assert store.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        store.close()


def test_a_frozen_worker_that_wakes_after_its_lease_ran_out_does_not_post_again(world: World) -> None:
    """A worker frozen mid-job (SIGSTOP: a VM pause, a stalled host) past its lease: another worker
    takes the job over and posts the review. When the frozen one wakes up with the model's answer
    in hand, it must not post a second review for the same head SHA."""
    from tests.test_app_e2e import flag_bug_lines

    first = threading.Event()
    release = threading.Event()

    def gated_model(request_json: dict[str, Any]) -> dict[str, Any]:
        if not first.is_set():
            first.set()  # the frozen worker's request: answered only once it is frozen
            release.wait(60)
        return flag_bug_lines(request_json)

    world.llm.responder = gated_model
    pr = start(world)
    frozen = subprocess.Popen(
        [sys.executable, "-m", "reviewbot", "worker"],
        env=worker_env(world),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: first.is_set() or frozen.poll() is not None, timeout=90)
        assert frozen.poll() is None
        os.kill(frozen.pid, signal.SIGSTOP)
        world.rows(  # its lease runs out while it is frozen
            "UPDATE jobs SET lease_expires_at = '2000-01-01T00:00:00.000000+00:00' WHERE state = 'running'"
        )
        done = subprocess.run(
            [sys.executable, "-m", "reviewbot", "worker", "--once"],
            env=worker_env(world),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert len(world.reviews()) == 1  # the second worker reviewed it
        release.set()  # the frozen worker's answer is waiting for it
        os.kill(frozen.pid, signal.SIGCONT)
        wait_until(lambda: bool(world.llm.received) and world.llm.in_flight == 0, timeout=30)
        import time

        time.sleep(3)  # time to post, had it been going to
    finally:
        release.set()
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen.pid, signal.SIGCONT)
            os.kill(frozen.pid, signal.SIGKILL)
        frozen.wait(10)
    reviews = [r for r in world.reviews() if r["commit_id"] == pr.head_sha]
    assert len(reviews) == 1, f"{len(reviews)} reviews for one head SHA"
    assert len(world.checks(pr.head_sha)) == 1
    assert world.rows("SELECT state FROM reviews") == [("posted",)]
