"""server.py through real HTTP: uvicorn on a free loopback port in a thread, httpx as GitHub.

Also the deployable command itself (`reviewbot serve` as a subprocess, what the Dockerfile runs)
and the ingest benchmark at a small size."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from reviewbot.app.queue import JobQueue, iso
from reviewbot.app.server import ServerConfigError, create_app
from reviewbot.app.store import Store
from reviewbot.app.webhooks import sign
from tests.fakes.clock import ManualClock
from tests.fakes.live_server import LiveServer

SECRET = b"test-webhook-secret"
REPO = "Codertocat/Hello-World"
ROOT = Path(__file__).resolve().parent.parent


Clock = ManualClock


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def woken() -> list[int]:
    return []


@pytest.fixture
def live(store: Store, registry: CollectorRegistry, clock: Clock, woken: list[int]) -> Iterator[LiveServer]:
    queue = JobQueue(store, clock=clock)
    app = create_app(
        store=store,
        webhook_secret=SECRET,
        registry=registry,
        queue=queue,
        enqueue_hook=woken.append,
        max_body_bytes=64 * 1024,
        admin_token="admin-tok",
        clock=clock,
        heartbeat_stale_seconds=60,
    )
    with LiveServer(app) as srv:
        yield srv


def payload(fixtures_dir: Path, name: str) -> bytes:
    return (fixtures_dir / "webhooks" / f"{name}.json").read_bytes()


def post(
    url: str, body: bytes, *, event: str, delivery: str, signature: str | None = "auto"
) -> httpx.Response:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}
    if signature == "auto":
        signature = sign(SECRET, body)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return httpx.post(f"{url}/webhook", content=body, headers=headers, timeout=10)


def rows(store: Store, sql: str, *args: object) -> list[tuple]:
    return store.conn.execute(sql, args).fetchall()


# --- the webhook edge ----------------------------------------------------------------------------


def test_signed_pull_request_is_stored_with_its_job(
    live: LiveServer, store: Store, fixtures_dir: Path, woken: list[int]
) -> None:
    r = post(live.url, payload(fixtures_dir, "pull_request.opened"), event="pull_request", delivery="d-1")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["outcome"] == "queued" and body["job_id"]
    assert rows(store, "SELECT id, event, action, job_id FROM deliveries") == [
        ("d-1", "pull_request", "opened", body["job_id"])
    ]
    (kind, state, repo, pr, sha, job_payload) = rows(
        store, "SELECT kind, state, repo, pr, head_sha, payload FROM jobs"
    )[0]
    assert (kind, state, repo, pr) == ("review", "queued", "Codertocat/Hello-World", 2)
    assert json.loads(job_payload)["delivery_id"] == "d-1"
    assert woken == [body["job_id"]]


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "sha1=abc", "garbage"])
def test_missing_or_wrong_signature_is_401_and_stores_nothing(
    live: LiveServer, store: Store, fixtures_dir: Path, signature: str | None
) -> None:
    r = post(
        live.url,
        payload(fixtures_dir, "pull_request.opened"),
        event="pull_request",
        delivery="d-x",
        signature=signature,
    )
    assert r.status_code == 401
    assert rows(store, "SELECT COUNT(*) FROM deliveries") == [(0,)]
    assert rows(store, "SELECT COUNT(*) FROM jobs") == [(0,)]


def test_signature_is_checked_before_parsing(live: LiveServer) -> None:
    # Unsigned garbage is 401 (not 400): nothing reads a body that is not GitHub's.
    r = post(live.url, b"{not json", event="pull_request", delivery="d", signature=None)
    assert r.status_code == 401


def test_signature_of_another_body_is_rejected(live: LiveServer, fixtures_dir: Path) -> None:
    body = payload(fixtures_dir, "pull_request.opened")
    r = post(live.url, body + b" ", event="pull_request", delivery="d", signature=sign(SECRET, body))
    assert r.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"x"',
        b'{"action": "opened"}',
        b'{"action": "opened", "pull_request": {"number": "2"}}',
        b"\xff\xfe",
    ],
)
def test_malformed_payload_is_400(live: LiveServer, store: Store, body: bytes) -> None:
    r = post(live.url, body, event="pull_request", delivery="d-bad")
    assert r.status_code == 400, r.text
    assert "malformed" in r.json()["error"]
    assert rows(store, "SELECT COUNT(*) FROM deliveries") == [(0,)]


def test_missing_delivery_header_is_400(live: LiveServer) -> None:
    body = b'{"zen": "x"}'
    r = httpx.post(
        f"{live.url}/webhook",
        content=body,
        headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign(SECRET, body)},
    )
    assert r.status_code == 400


def test_duplicate_delivery_is_acknowledged_not_processed(
    live: LiveServer, store: Store, fixtures_dir: Path
) -> None:
    body = payload(fixtures_dir, "pull_request.synchronize")
    first = post(live.url, body, event="pull_request", delivery="dup-1")
    second = post(live.url, body, event="pull_request", delivery="dup-1")
    assert first.status_code == 202 and first.json()["outcome"] == "queued"
    assert second.status_code == 200 and second.json()["outcome"] == "duplicate"
    assert second.json()["job_id"] == first.json()["job_id"]
    assert rows(store, "SELECT COUNT(*) FROM deliveries") == [(1,)]
    assert rows(store, "SELECT kind FROM jobs ORDER BY id") == [("review",), ("feedback",)]


def test_delivery_and_job_are_one_transaction(live: LiveServer, store: Store, fixtures_dir: Path) -> None:
    """If the job cannot be written, the delivery is not recorded either: GitHub's retry (or a
    redelivery) is then processed, instead of being swallowed as a 'duplicate' with no job."""
    store.conn.execute(
        "CREATE TRIGGER no_jobs BEFORE INSERT ON jobs BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    body = payload(fixtures_dir, "pull_request.opened")
    r = post(live.url, body, event="pull_request", delivery="tx-1")
    assert r.status_code == 500
    assert rows(store, "SELECT COUNT(*) FROM deliveries") == [(0,)]
    store.conn.execute("DROP TRIGGER no_jobs")
    r = post(live.url, body, event="pull_request", delivery="tx-1")
    assert r.status_code == 202 and r.json()["outcome"] == "queued"
    assert rows(store, "SELECT COUNT(*) FROM jobs") == [(1,)]


def test_a_delivery_waits_for_another_writer_off_the_event_loop(
    live: LiveServer, store: Store, fixtures_dir: Path
) -> None:
    """Deliveries are stored on the event loop when nothing holds SQLite's writer lock (issue #14);
    while another connection holds it, the write waits on a thread: the server keeps answering."""
    if store.is_postgres:
        pytest.skip("SQLite's writer lock")
    other = store.reopen()
    other.conn.execute("BEGIN IMMEDIATE")
    body = payload(fixtures_dir, "pull_request.opened")
    answer: list[httpx.Response] = []
    sender = threading.Thread(
        target=lambda: answer.append(post(live.url, body, event="pull_request", delivery="w-1"))
    )
    sender.start()
    try:
        time.sleep(0.3)
        assert not answer  # waiting for the writer lock
        started = time.monotonic()
        forged = post(live.url, body, event="pull_request", delivery="w-2", signature="sha256=" + "0" * 64)
        assert forged.status_code == 401 and time.monotonic() - started < 2  # the loop is free
    finally:
        other.conn.execute("ROLLBACK")
        other.close()
        sender.join(10)
    assert answer and answer[0].status_code == 202, answer
    assert rows(store, "SELECT id FROM deliveries") == [("w-1",)]
    assert len(rows(store, "SELECT id FROM jobs")) == 1


def test_ignored_events_are_acknowledged_and_recorded(
    live: LiveServer, store: Store, fixtures_dir: Path
) -> None:
    r = post(live.url, payload(fixtures_dir, "check_run.created"), event="check_run", delivery="ign-1")
    assert r.status_code == 202 and r.json()["outcome"] == "ignored"
    r = post(live.url, payload(fixtures_dir, "ping"), event="ping", delivery="ping-1")
    assert r.status_code == 202 and r.json()["outcome"] == "ping" and r.json()["zen"]
    assert rows(store, "SELECT id, job_id FROM deliveries ORDER BY id") == [("ign-1", None), ("ping-1", None)]
    assert rows(store, "SELECT COUNT(*) FROM jobs") == [(0,)]


def test_commands_and_installation_changes_become_jobs(
    live: LiveServer, store: Store, fixtures_dir: Path
) -> None:
    post(
        live.url, payload(fixtures_dir, "issue_comment.command_pause"), event="issue_comment", delivery="c-1"
    )
    post(live.url, payload(fixtures_dir, "installation.deleted"), event="installation", delivery="i-1")
    assert rows(store, "SELECT kind FROM jobs ORDER BY id") == [("command.pause",), ("installation",)]


def test_declared_oversize_body_is_413_without_reading_it(live: LiveServer) -> None:
    """Content-Length over the limit: answered before the body is sent (we send 1 KB of 1 GB)."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as s:
        s.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Event: ping\r\nX-GitHub-Delivery: big\r\nX-Hub-Signature-256: sha256=00\r\n"
            b"Content-Length: 1073741824\r\n\r\n" + b"x" * 1024
        )
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head[:100]


def test_streamed_oversize_body_is_413(live: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 1024  # 100 KB > the 64 KB limit of this app, no Content-Length

    r = httpx.post(
        f"{live.url}/webhook",
        content=chunks(),
        headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "big2", "X-Hub-Signature-256": "sha256=00"},
    )
    assert r.status_code == 413


def test_default_limit_is_25_mb_and_big_payloads_are_accepted(
    store: Store, registry: CollectorRegistry, fixtures_dir: Path
) -> None:
    app = create_app(store=store, webhook_secret=SECRET, registry=registry, queue=JobQueue(store))
    with LiveServer(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 26214401\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 413")
        big = json.loads(payload(fixtures_dir, "pull_request.opened"))
        big["pull_request"]["body"] = "x" * 3_000_000  # a 3 MB PR description: parsed off the event loop
        r = post(srv.url, json.dumps(big).encode(), event="pull_request", delivery="big-ok")
        assert r.status_code == 202 and r.json()["outcome"] == "queued"


def test_server_refuses_to_start_without_a_secret(store: Store, registry: CollectorRegistry) -> None:
    with pytest.raises(ServerConfigError, match="REVIEWBOT_WEBHOOK_SECRET"):
        create_app(store=store, webhook_secret=b"", registry=registry, queue=JobQueue(store))


def test_concurrent_deliveries_each_stored_once(live: LiveServer, store: Store, fixtures_dir: Path) -> None:
    """Threads posting the same and different deliveries at once: one row and one job each."""
    body = json.loads(payload(fixtures_dir, "pull_request.opened"))
    bodies = []
    for i in range(20):
        body["pull_request"]["number"] = 100 + i
        body["pull_request"]["head"]["sha"] = f"{i:040d}"
        bodies.append(json.dumps(body).encode())
    statuses: list[int] = []

    def send(i: int) -> None:
        statuses.append(
            post(live.url, bodies[i % 20], event="pull_request", delivery=f"c-{i % 20}").status_code
        )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 40 + [202] * 20
    assert rows(store, "SELECT COUNT(*) FROM deliveries") == [(20,)]
    assert rows(store, "SELECT COUNT(*), COUNT(DISTINCT pr) FROM jobs") == [(20, 20)]


# --- health, metrics, admin ----------------------------------------------------------------------


def test_healthz_reports_database_worker_and_queue(
    live: LiveServer, store: Store, clock: Clock, fixtures_dir: Path
) -> None:
    none = httpx.get(f"{live.url}/healthz")
    assert none.status_code == 503  # no worker: a delivery would be queued and never run
    h = none.json()
    assert h == {
        "status": "degraded",
        "database": "ok",
        "worker": "none",
        "worker_heartbeat_age_seconds": None,
        "queue_depth": 0,
        "dead_letters": 0,
    }
    store.conn.execute("INSERT INTO heartbeats (worker, at) VALUES ('w1', ?)", (iso(clock.t - 5),))
    post(live.url, payload(fixtures_dir, "pull_request.opened"), event="pull_request", delivery="h-1")
    r = httpx.get(f"{live.url}/healthz")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["worker"] == "ok" and h["queue_depth"] == 1
    assert h["worker_heartbeat_age_seconds"] == pytest.approx(5, abs=0.01)
    clock.t += 120  # the worker stopped heartbeating
    stale = httpx.get(f"{live.url}/healthz")
    assert stale.status_code == 503
    assert stale.json()["status"] == "degraded" and stale.json()["worker"] == "stale"


def test_metrics_text(live: LiveServer, fixtures_dir: Path) -> None:
    post(live.url, payload(fixtures_dir, "pull_request.opened"), event="pull_request", delivery="m-1")
    post(live.url, payload(fixtures_dir, "pull_request.opened"), event="pull_request", delivery="m-1")
    post(live.url, b"{}", event="pull_request", delivery="m-2", signature=None)
    r = httpx.get(f"{live.url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'reviewbot_webhook_deliveries_total{event="pull_request",outcome="queued"} 1.0' in text
    assert 'reviewbot_webhook_deliveries_total{event="pull_request",outcome="duplicate"} 1.0' in text
    assert 'reviewbot_webhook_deliveries_total{event="-",outcome="unauthorized"} 1.0' in text
    assert "reviewbot_queue_depth 1.0" in text
    assert "reviewbot_webhook_ack_seconds_count 3.0" in text
    for name in (
        "reviewbot_stage_seconds",
        "reviewbot_review_seconds",
        "reviewbot_llm_tokens",
        "reviewbot_github_api_calls",
        "reviewbot_github_rate_limit_remaining",
        "reviewbot_funnel_posted",
    ):
        assert f"# TYPE {name}" in text


def test_admin_dead_letters_need_the_token(live: LiveServer, store: Store) -> None:
    q = JobQueue(store)
    job_id = q.enqueue("nothing", {})
    job = q.claim("w")
    q.fail(job, "no handler", permanent=True)
    assert httpx.get(f"{live.url}/admin/dead-letters").status_code == 401
    assert (
        httpx.get(f"{live.url}/admin/dead-letters", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    r = httpx.get(f"{live.url}/admin/dead-letters", headers={"Authorization": "Bearer admin-tok"})
    assert r.status_code == 200 and r.json()[0]["id"] == job_id and r.json()[0]["error"] == "no handler"
    r = httpx.post(f"{live.url}/admin/jobs/{job_id}/retry", headers={"Authorization": "Bearer admin-tok"})
    assert r.status_code == 200 and q.get(job_id).state == "queued"


# --- the real command and the ingest benchmark ---------------------------------------------------


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_ingest", ROOT / "bench" / "ingest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_ingest"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_reviewbot_serve_subprocess(tmp_path: Path, fixtures_dir: Path) -> None:
    """What the Dockerfile runs: `reviewbot serve` with a worker, healthz, a signed ping, a pause
    command processed by the in-process worker, then a clean stop."""
    from tests.fakes.fake_github import FakeGitHub, generate_app_key

    bench = _load_bench()
    port = bench.free_port()
    db = tmp_path / "data" / "reviewbot.db"
    priv, pub = generate_app_key()
    github = FakeGitHub(app_id=42, app_public_key=pub).start()
    creds = {
        "REVIEWBOT_GITHUB_APP_ID": "42",
        "REVIEWBOT_GITHUB_PRIVATE_KEY": priv,
        "REVIEWBOT_GITHUB_API_URL": github.base_url,
    }
    proc = bench.start_server(db, SECRET.decode(), port, worker=True, env=creds)
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/healthz").json()["database"] == "ok"
        r = post(url, payload(fixtures_dir, "ping"), event="ping", delivery="sp-1")
        assert r.status_code == 202 and r.json()["outcome"] == "ping"
        assert post(url, b"{}", event="ping", delivery="sp-2", signature="sha256=00").status_code == 401
        r = post(
            url, payload(fixtures_dir, "issue_comment.command_pause"), event="issue_comment", delivery="sp-3"
        )
        assert r.status_code == 202
        deadline = time.monotonic() + 10
        while True:
            conn = sqlite3.connect(db)
            try:
                row = conn.execute("SELECT paused FROM repositories WHERE full_name = ?", (REPO,)).fetchone()
            finally:
                conn.close()
            if row and row[0] == 1:
                break
            assert time.monotonic() < deadline, "the worker did not run the pause command"
            time.sleep(0.1)
        health = httpx.get(f"{url}/healthz").json()
        assert health["status"] == "ok" and health["worker"] == "ok"
        # The Dockerfile's HEALTHCHECK command, run as Docker would, against this server.
        check = subprocess.run(
            dockerfile_healthcheck(), env={**os.environ, "REVIEWBOT_PORT": str(port)}, timeout=30
        )
        assert check.returncode == 0
    finally:
        bench.stop_server(proc)
        github.stop()
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]


def dockerfile_healthcheck() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK"))
    argv = json.loads(line[line.index("CMD") + 3 :].strip())
    return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]


def test_dockerfile_runs_the_tested_command() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.replace("\\\n", " ").splitlines()]
    assert lines[-1] == 'CMD ["reviewbot", "serve"]'
    assert any(ln.startswith("FROM python:3.11-slim") for ln in lines)
    user = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    assert "VOLUME /data" in lines and "EXPOSE 8000" in lines
    assert "REVIEWBOT_DATABASE_PATH=/data/reviewbot.db" in text
    assert "/healthz" in " ".join(dockerfile_healthcheck())


def test_app_manifest_subscribes_to_what_we_route_with_least_permissions() -> None:
    manifest = yaml.safe_load((ROOT / "app.yml").read_text())
    assert manifest["public"] is False
    assert manifest["hook_attributes"]["url"].endswith("/webhook")
    routed = {"pull_request", "issue_comment", "pull_request_review_comment", "pull_request_review_thread"}
    assert routed <= set(manifest["default_events"])
    assert manifest["default_permissions"] == {
        "pull_requests": "write",
        "contents": "read",
        "checks": "write",
        "issues": "write",
        "metadata": "read",
        "actions": "read",  # SARIF artifacts (sarif_in.artifacts)
    }


def test_serve_without_secret_exits_1_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env["REVIEWBOT_DATABASE_PATH"] = str(tmp_path / "x.db")
    p = subprocess.run(
        [sys.executable, "-m", "reviewbot", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "REVIEWBOT_WEBHOOK_SECRET" in lines[0]


def test_ingest_benchmark_small() -> None:
    """100 deliveries (10% repeated, 5% forged) from another process's point of view: 0 lost, 0 twice."""
    bench = _load_bench()
    rep = bench.run(100, concurrency=8, seed=7)
    assert rep.problems == []
    assert (rep.lost, rep.double, rep.forged_accepted, rep.errors) == (0, 0, 0, 0)
    assert rep.accepted == rep.unique_valid == 85 and rep.duplicates == 10 and rep.rejected == 5
    assert rep.jobs_found == rep.jobs_expected > 0


async def test_uninstall_through_the_edge_deletes_the_tenant(tmp_path: Path, fixtures_dir: Path) -> None:
    """installation.created and a PR for installation 1, then installation.deleted, all as signed
    HTTP deliveries; a worker over the same queue runs the jobs: nothing of installation 1 remains,
    and the queued review of the uninstalled tenant never runs."""
    import asyncio

    from reviewbot.app.worker import Worker, builtin_handlers

    store = Store.open(tmp_path / "e2e.db")
    queue = JobQueue(store)
    app = create_app(store=store, webhook_secret=SECRET, registry=CollectorRegistry(), queue=queue)
    created = json.loads(payload(fixtures_dir, "installation.created"))
    created["installation"]["id"] = 1
    deleted = json.loads(payload(fixtures_dir, "installation.deleted"))
    deleted["installation"]["id"] = 1
    reviewed: list[int] = []

    async def review(job) -> None:
        reviewed.append(job.id)

    try:
        with LiveServer(app) as srv:
            send = asyncio.to_thread
            r1 = await send(post, srv.url, json.dumps(created).encode(), event="installation", delivery="e-1")
            worker = Worker(queue, {**builtin_handlers(store, queue.lock), "review": review}, worker_id="w")
            await worker.run_until_idle()
            assert rows(store, "SELECT id FROM installations") == [(1,)]
            pr = payload(fixtures_dir, "pull_request.opened")
            r2 = await send(post, srv.url, pr, event="pull_request", delivery="e-2")
            r3 = await send(post, srv.url, json.dumps(deleted).encode(), event="installation", delivery="e-3")
            assert [r.status_code for r in (r1, r2, r3)] == [202, 202, 202]
            await Worker(
                queue, {**builtin_handlers(store, queue.lock), "review": review}, worker_id="w", concurrency=1
            ).run_until_idle()
        assert reviewed == []
        assert rows(store, "SELECT COUNT(*) FROM installations") == [(0,)]
        assert rows(store, "SELECT COUNT(*) FROM repositories") == [(0,)]
        assert rows(store, "SELECT COUNT(*) FROM deliveries WHERE installation_id = 1") == [(0,)]
        assert rows(store, "SELECT kind, state FROM jobs") == [("installation", "done")]
    finally:
        store.close()


def test_github_test_vector_through_http(tmp_path: Path) -> None:
    """GitHub's documented vector passes the server's signature check (then 400: not JSON)."""
    store = Store.open(tmp_path / "v.db")
    app = create_app(
        store=store,
        webhook_secret=b"It's a Secret to Everybody",
        registry=CollectorRegistry(),
        queue=JobQueue(store),
    )
    good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    try:
        with LiveServer(app) as srv:
            headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "v-1"}
            ok = httpx.post(
                f"{srv.url}/webhook",
                content=b"Hello, World!",
                headers={**headers, "X-Hub-Signature-256": good},
            )
            bad = httpx.post(
                f"{srv.url}/webhook",
                content=b"Hello, World?",
                headers={**headers, "X-Hub-Signature-256": good},
            )
        assert (ok.status_code, bad.status_code) == (400, 401)
    finally:
        store.close()
