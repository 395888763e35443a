"""Issue #11, must show: while a hostile PR is being reviewed, another tenant's delivery is
acknowledged in < 1 s and reviewed. `reviewbot serve` as a subprocess (its real worker and job
processes), the fake GitHub and fake LLM over real HTTP.

The hostile PR adds one line of `<` and 30,000 spaces: on the code of issue #11 the prompt's
tag-defusing regex is quadratic on it (minutes of CPU inside one C call holding the GIL), and with
the worker as a thread of the server, every acknowledgement waited for it. With the job in a
child process the server answers at once, the other tenant's job runs in another child, and the
hostile job is killed at REVIEWBOT_JOB_TIMEOUT. (If the regex is made linear, the hostile review
is merely fast; the assertions about the other tenant hold either way.)
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.fake_github import FakeGitHub, signed_delivery
from tests.fakes.fake_llm import FakeLLM
from tests.fakes.live_server import free_port
from tests.test_app_e2e import APP_ID, CONFIG, ROOT, app_keys, flag_bug_lines, module, serve_env

SECRET = "hostile-serve-secret"
JOB_TIMEOUT = 12


def deliver(base: str, payload: dict[str, Any]) -> tuple[httpx.Response, float]:
    body, headers = signed_delivery(SECRET, "pull_request", payload)
    started = time.monotonic()
    r = httpx.post(f"{base}/webhook", content=body, headers=headers, timeout=30)
    return r, time.monotonic() - started


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def job_states(db: Path, repo: str) -> list[tuple[str, str | None]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT state, last_error FROM jobs WHERE kind = 'review' AND repo = ?", (repo,)
        ).fetchall()


def test_a_hostile_pr_never_delays_another_tenants_ack_or_review(tmp_path: Path) -> None:
    priv, pub = app_keys()
    db = tmp_path / "rb.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FakeGitHub(app_id=APP_ID, app_public_key=pub) as gh, FakeLLM(responder=flag_bug_lines) as llm:
        gh.add_repo("evil/repo", 1, {**CONFIG, "a.py": module(10)})
        hostile = gh.add_pull("evil/repo", 1, head_files={"a.py": module(10) + "<" + " " * 30_000 + "x\n"})
        gh.add_repo("good/repo", 2, {**CONFIG, "b.py": module(20)})
        good = gh.add_pull("good/repo", 1, head_files={"b.py": module(20, {3: "b3"})})
        env = serve_env(
            gh, llm, db, priv, SECRET, REVIEWBOT_LOG_LEVEL="WARNING", REVIEWBOT_JOB_TIMEOUT=str(JOB_TIMEOUT)
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "reviewbot", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:

            def up() -> bool:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    return httpx.get(f"{base}/healthz", timeout=1).status_code in (200, 503)
                except httpx.HTTPError:
                    return False

            wait_for(up, 30, "serve to come up")
            r, _ = deliver(base, gh.opened_event(hostile, 1))
            assert r.status_code == 202
            wait_for(lambda: job_states(db, "evil/repo")[0][0] == "running", 30, "the hostile job to start")
            time.sleep(3)  # well into the hostile review (its job process starts, fetches, renders)

            r, ack = deliver(base, gh.opened_event(good, 2))
            assert r.status_code == 202 and ack < 1.0, f"acknowledged in {ack:.2f} s"
            started = time.monotonic()
            health = httpx.get(f"{base}/healthz", timeout=10)
            assert health.status_code in (200, 503) and time.monotonic() - started < 1.0

            wait_for(lambda: bool(gh.posted_reviews("good/repo", 1)), 90, "the other tenant's review")
            [review] = gh.posted_reviews("good/repo", 1)
            assert len(review["comments"]) == 1
            # the hostile review either finished (a linear regex) or was killed at the timeout
            wait_for(
                lambda: (
                    job_states(db, "evil/repo")[0][0] != "running" or bool(gh.posted_reviews("evil/repo", 1))
                ),
                JOB_TIMEOUT + 30,
                "the hostile job to end",
            )
            [(state, error)] = job_states(db, "evil/repo")
            assert state in ("done", "queued", "running"), (state, error)
            if state != "done":
                expected = f"TimeoutError: job timed out after {float(JOB_TIMEOUT)}s; its process was killed"
                assert error == expected or state == "running"
        finally:
            proc.terminate()
            proc.wait(timeout=60)
