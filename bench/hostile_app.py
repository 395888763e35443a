"""Issue #11 (the App and server side): attacks on `reviewbot serve`, measured against the real
server as a subprocess with the fake GitHub and fake LLM. Writes the figures section of
RELIABILITY.md ("## Hostile input (issue #11): the App and server") and exits non-zero when a
target is missed.

    .venv/bin/python bench/hostile_app.py            # ~3 minutes on 2 cores
    .venv/bin/python bench/hostile_app.py --no-write # print only

Measured:
1. CPU off the event loop: a hostile PR (one added line of `<` and N spaces: quadratic in the
   prompt's tag-defusing regex on the code of issue #11) is reviewed while another tenant's
   delivery arrives. Once with handlers on the worker's loop inside the server process
   (REVIEWBOT_JOB_PROCESSES=false: the architecture of issue #11), once in job processes (the
   default). Target (job processes): ack < 1 s, /healthz < 1 s, the other review posted.
2. Slow and half-open connections: 300 silent + 100 trickling connections; how long they are
   held, whether a signed delivery gets through meanwhile and right after. Target: every one
   closed within the header deadline + 2 s; the delivery after the deadline acknowledged.
3. Forged bodies: 16 unsigned-but-claiming 25 MB bodies (4 at a time); the server's peak RSS
   growth. Target: < 100 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks_md import write_section  # noqa: E402
from ingest import stop_server  # noqa: E402

from reviewbot.app.http_guard import HEADER_TIMEOUT, MAX_CONNECTIONS  # noqa: E402
from reviewbot.app.webhooks import sign  # noqa: E402
from tests.fakes.fake_github import FakeGitHub, signed_delivery  # noqa: E402
from tests.fakes.fake_llm import FakeLLM  # noqa: E402
from tests.fakes.live_server import free_port  # noqa: E402
from tests.test_app_e2e import APP_ID, CONFIG, app_keys, flag_bug_lines, module, serve_env  # noqa: E402

RELIABILITY = ROOT / "RELIABILITY.md"
SECTION = "## Hostile input (issue #11): the App and server"
SECRET = "bench-hostile-secret"


def deliver(base: str, payload: dict[str, Any], timeout: float = 60) -> tuple[int, float]:
    body, headers = signed_delivery(SECRET, "pull_request", payload)
    started = time.monotonic()
    try:
        status = httpx.post(f"{base}/webhook", content=body, headers=headers, timeout=timeout).status_code
    except httpx.HTTPError:
        status = 0
    return status, time.monotonic() - started


def ping(base: str) -> int:
    body = json.dumps({"zen": "z", "hook_id": 1}).encode()
    headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": uuid.uuid4().hex,
        "X-Hub-Signature-256": sign(SECRET.encode(), body),
    }
    try:
        return httpx.post(f"{base}/webhook", content=body, headers=headers, timeout=10).status_code
    except httpx.HTTPError:
        return 0


def wait_for(cond: Any, timeout: float) -> float | None:
    started = time.monotonic()
    while not cond():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.05)
    return time.monotonic() - started


@contextlib.contextmanager
def serve(gh: FakeGitHub, llm: FakeLLM, db: Path, priv: str, **extra: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = serve_env(gh, llm, db, priv, SECRET, **extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "reviewbot", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    try:
        if wait_for(up, 60) is None:
            raise RuntimeError("serve did not come up")
        yield base, proc.pid
    finally:
        stop_server(proc, timeout=60)


def job_state(db: Path, repo: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT state FROM jobs WHERE kind = 'review' AND repo = ?", (repo,)).fetchone()
    return row[0] if row else None


# --- 1. CPU off the event loop -------------------------------------------------------------------


def hostile_pr_run(processes: bool, spaces: int, priv: str, pub: str) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeGitHub(app_id=APP_ID, app_public_key=pub) as gh,
        FakeLLM(responder=flag_bug_lines) as llm,
    ):
        db = Path(tmp) / "rb.db"
        gh.add_repo("evil/repo", 1, {**CONFIG, "a.py": module(10)})
        hostile = gh.add_pull("evil/repo", 1, head_files={"a.py": module(10) + "<" + " " * spaces + "x\n"})
        gh.add_repo("good/repo", 2, {**CONFIG, "b.py": module(20)})
        good = gh.add_pull("good/repo", 1, head_files={"b.py": module(20, {3: "b3"})})
        extra = {"REVIEWBOT_JOB_PROCESSES": "true" if processes else "false", "REVIEWBOT_JOB_TIMEOUT": "60"}
        with serve(gh, llm, db, priv, **extra) as (base, _pid):
            t0 = time.monotonic()
            deliver(base, gh.opened_event(hostile, 1))
            wait_for(lambda: job_state(db, "evil/repo") == "running", 30)
            time.sleep(3)
            status, ack = deliver(base, gh.opened_event(good, 2))
            h0 = time.monotonic()
            try:
                health_ok = httpx.get(f"{base}/healthz", timeout=30).status_code in (200, 503)
            except httpx.HTTPError:
                health_ok = False
            health = time.monotonic() - h0
            reviewed = wait_for(lambda: bool(gh.posted_reviews("good/repo", 1)), 120)
            hostile_done = wait_for(lambda: job_state(db, "evil/repo") != "running", 120)
            return {
                "mode": "job processes" if processes else "worker on the server's loop",
                "ack": ack,
                "ack_status": status,
                "health": health,
                "health_ok": health_ok,
                "reviewed_after": reviewed,
                "hostile_seconds": None if hostile_done is None else time.monotonic() - t0,
            }


# --- 2. slow and half-open connections -------------------------------------------------------


def slow_connections(base: str, port: int, silent: int, trickle: int) -> dict[str, Any]:
    closed_after: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def hold(trickling: bool) -> None:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            with lock:
                closed_after.append(0.0)
            return
        started = time.monotonic()
        s.settimeout(0.2)
        try:
            while not stop.is_set():
                if trickling:
                    s.sendall(b"X")
                try:
                    if s.recv(1) == b"":
                        break
                except TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            with lock:
                closed_after.append(time.monotonic() - started)
            s.close()

    threads = [
        threading.Thread(target=hold, args=(i >= silent,), daemon=True) for i in range(silent + trickle)
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)
    during = ping(base)
    wait_for(lambda: len(closed_after) == len(threads), HEADER_TIMEOUT + 20)
    stop.set()
    for t in threads:
        t.join(5)
    after = ping(base)
    return {
        "held": len(threads),
        "closed": len(closed_after),
        "max_held": max(closed_after, default=0),
        "ping_during": during,
        "ping_after": after,
    }


# --- 3. forged bodies ----------------------------------------------------------------------------


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def forged_bodies(base: str, pid: int, n: int = 16, size: int = 25 * 1024 * 1024) -> dict[str, Any]:
    chunk = b"x" * 65536
    before = rss_kib(pid)

    def one() -> int:
        def body() -> Iterator[bytes]:
            for _ in range(size // len(chunk)):
                yield chunk

        try:
            return httpx.post(
                f"{base}/webhook",
                content=body(),
                timeout=60,
                headers={
                    "X-GitHub-Event": "ping",
                    "X-GitHub-Delivery": uuid.uuid4().hex,
                    "X-Hub-Signature-256": "sha256=" + "0" * 64,
                },
            ).status_code
        except httpx.HTTPError:
            return 0

    statuses: list[int] = []
    peak = before
    for _ in range(n // 4):
        threads = []
        results: list[int] = []

        def run(into: list[int] = results) -> None:
            into.append(one())

        for _ in range(4):
            t = threading.Thread(target=run)
            t.start()
            threads.append(t)
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_kib(pid))
            time.sleep(0.05)
        statuses += results
    return {
        "bodies": n,
        "statuses": sorted(set(statuses)),
        "rss_before_mb": before / 1024,
        "peak_growth_mb": (peak - before) / 1024,
        "after_mb": rss_kib(pid) / 1024,
    }


# --- report ----------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", type=int, default=12_000, help="length of the hostile line")
    ap.add_argument("--no-write", action="store_true", help="print, do not rewrite RELIABILITY.md")
    args = ap.parse_args()
    priv, pub = app_keys()
    runs = [hostile_pr_run(False, args.spaces, priv, pub), hostile_pr_run(True, args.spaces, priv, pub)]
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        gh = stack.enter_context(FakeGitHub(app_id=APP_ID, app_public_key=pub))
        llm = stack.enter_context(FakeLLM(responder=flag_bug_lines))
        base, pid = stack.enter_context(serve(gh, llm, Path(tmp) / "rb.db", priv))
        port = int(base.rsplit(":", 1)[1])
        slow = slow_connections(base, port, silent=300, trickle=100)
        forged = forged_bodies(base, pid)

    after = runs[1]
    misses = []
    if not (after["ack_status"] == 202 and after["ack"] < 1.0):
        misses.append(f"ack while a hostile PR is reviewed: {after['ack']:.2f} s (target < 1 s)")
    if not (after["health_ok"] and after["health"] < 1.0):
        misses.append(f"/healthz while a hostile PR is reviewed: {after['health']:.2f} s (target < 1 s)")
    if after["reviewed_after"] is None:
        misses.append("the other tenant was not reviewed")
    if slow["max_held"] > HEADER_TIMEOUT + 2 or slow["ping_after"] != 202:
        misses.append(f"slow connections held {slow['max_held']:.1f} s or the delivery after failed")
    if forged["peak_growth_mb"] >= 100:
        misses.append(f"forged bodies grew RSS by {forged['peak_growth_mb']:.0f} MB (target < 100)")

    def secs(v: float | None) -> str:
        return "never" if v is None else f"{v:.2f} s"

    rows = "\n".join(
        f"| {r['mode']} | {secs(r['ack'])} ({r['ack_status'] or 'no answer'}) | {secs(r['health'])} | "
        f"{secs(r['reviewed_after'])} | {secs(r['hostile_seconds'])} |"
        for r in runs
    )
    text = f"""{SECTION}

Figures from `.venv/bin/python bench/hostile_app.py` (writes this section; exits non-zero when a
target is missed): `reviewbot serve` as a subprocess, the fake GitHub and fake LLM, 2 shared cores.
Tests: `tests/test_hostile_app.py`, `tests/test_hostile_serve.py`, `tests/test_server_limits.py`,
`tests/test_job_process.py`, `tests/test_queue.py`.

**A hostile PR while another tenant's PR arrives** (one added line of `<` and {args.spaces:,}
spaces; on the code of issue #11 the prompt's tag-defusing regex is quadratic on it, inside one C
call that holds the GIL). "Worker on the server's loop" is `REVIEWBOT_JOB_PROCESSES=false`, the
architecture of issue #11; job processes are the default now (per-job timeout
`REVIEWBOT_JOB_TIMEOUT`, 600 s, kills the job's process).

| Mode | Other tenant's ack | /healthz | Other tenant reviewed after | Hostile job ended after |
| --- | ---: | ---: | ---: | ---: |
{rows}

**Slow and half-open connections** ({slow["held"]} at once: 300 silent, 100 sending one byte
every 0.2 s; header deadline {HEADER_TIMEOUT:.0f} s, cap {MAX_CONNECTIONS} open connections):
all closed by the server after at most {slow["max_held"]:.1f} s (issue #11: 600 held for 120 s and
more); a signed delivery during the flood got {slow["ping_during"] or "no answer"}, right after it
{slow["ping_after"]}.

**Forged 25 MB bodies** ({forged["bodies"]}, 4 at a time, a well-formed but wrong signature):
answered {forged["statuses"]}; the server's RSS grew by at most {forged["peak_growth_mb"]:.0f} MB
(from {forged["rss_before_mb"]:.0f} MB; issue #11: 600 MB after they closed). A request without a
signature header is refused before its body is read.

Attacks and what answers them now:

- *A PR author silences the bot* by posting a review with `<!-- reviewbot:head=SHA -->`, or
  suppresses a finding by pasting its fingerprint marker in a comment (as a human or as another
  App's bot): markers count only on reviews and comments authored by the App's own bot account,
  checked by numeric id (`GET /app` gives the slug, `GET /users/<slug>[bot]` the id, once per
  process). Before: 0 comments and a green check; now the review is posted.
- *An older event cancels a newer head* (`synchronize` then a late or redelivered `opened`):
  review jobs carry the event's `pull_request.updated_at`; a job supersedes only queued jobs of an
  older head, and an event older than a live job's is born superseded. Before: 0 reviews for both
  heads; now the newer head is reviewed once and redelivering any old event changes nothing.
- *Bad luck looks like poison*: a lease lost to a worker's death is counted apart from failed
  attempts (`lease_losses`, cap 10, vs 5 failed attempts); a job that loses its lease 10 times is
  dead-lettered as `poison: the lease ran out 10 times ...`, and a job whose process dies is a
  failed attempt with the exit code. A review posted but left `pending` (the run died after
  posting and the head moved on) is recorded from GitHub on the next run of the PR.

Limits that remain:

- The connection cap is a cap, not fairness: a sender holding {MAX_CONNECTIONS} connections delays
  everyone else by up to the header deadline ({HEADER_TIMEOUT:.0f} s) per round. Put a reverse
  proxy in front that limits connections per client address (docs/deploy.md); GitHub's delivery
  addresses are published (`GET /meta`, `hooks`) and can be allow-listed.
- A job process costs a Python interpreter (about 80-120 MB with the review stack loaded) per
  `REVIEWBOT_WORKER_CONCURRENCY`; the first job of each process waits for it to start (1-3 s).
- The job timeout ends a frozen review but the job retries (backoff 10 s, 20 s, ...) up to 5
  times before it is dead-lettered: a hostile PR costs 5 x the timeout of one worker slot.
- Head recency relies on `pull_request.updated_at`; an event without it supersedes nothing (the
  handler still skips a head that is no longer the PR's, at the price of a few API calls).
"""
    print(text)
    if not args.no_write:
        write_section(SECTION, text, path=RELIABILITY)
    for m in misses:
        print(f"MISSED: {m}", file=sys.stderr)
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
