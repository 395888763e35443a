"""Issue #11 item 6: unauthenticated senders cannot exhaust /webhook. The real server (uvicorn with
reviewbot.app.http_guard's protocol, as `reviewbot serve` runs it) on a loopback port, raw sockets."""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from reviewbot.app.http_guard import guarded_h11, guarded_httptools
from reviewbot.app.queue import JobQueue
from reviewbot.app.server import create_app
from reviewbot.app.store import Store
from reviewbot.app.webhooks import sign
from tests.fakes.live_server import LiveServer

SECRET = b"limits-secret"
HEADER_TIMEOUT = 1.0
CAP = 16


@pytest.fixture(params=[guarded_httptools, guarded_h11], ids=["httptools", "h11"])
def live(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    store = Store.open(tmp_path / "s.db")
    app = create_app(
        store=store,
        webhook_secret=SECRET,
        registry=CollectorRegistry(),
        queue=JobQueue(store),
        body_timeout=1.0,
    )
    guard = request.param(header_timeout=HEADER_TIMEOUT, max_connections=CAP)
    with LiveServer(app, http=guard) as srv:
        yield srv
    store.close()


def ping(url: str, delivery: str) -> httpx.Response:
    body = json.dumps({"zen": "hi", "hook_id": 1}).encode()
    headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(SECRET, body),
        "Content-Type": "application/json",
    }
    return httpx.post(f"{url}/webhook", content=body, headers=headers, timeout=5)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (recv gives b'' or a reset), or None if it did not."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return time.monotonic() - started
            if data.startswith(b"HTTP/1.1 4"):  # an error answer counts as being let go
                return time.monotonic() - started
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - started
    except TimeoutError:
        return None


def test_a_silent_connection_is_closed_after_the_header_deadline(live: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", live.port)) as s:
        waited = closed_within(s, HEADER_TIMEOUT + 3)
    assert waited is not None and waited < HEADER_TIMEOUT + 1


def test_a_trickled_request_head_does_not_extend_the_deadline(live: LiveServer) -> None:
    head = b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200
    with socket.create_connection(("127.0.0.1", live.port)) as s:
        started = time.monotonic()
        closed = False
        for byte in head:
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > HEADER_TIMEOUT + 2:
                break
        if not closed:
            closed = closed_within(s, 0.5) is not None
    assert closed and time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_slow_body_gets_408_and_a_forged_body_401(live: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", live.port)) as s:
        s.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"{" * 10
        )
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 408")
    r = httpx.post(f"{live.url}/webhook", content=b"{}", headers={"X-GitHub-Event": "ping"})
    assert r.status_code == 401  # no signature header: refused before the body is read


def test_connections_beyond_the_cap_are_refused_and_slots_come_back(live: LiveServer) -> None:
    held = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(CAP)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", live.port)) as extra:
            assert closed_within(extra, 2) is not None  # over the cap: closed at once
        # the held (silent) connections hit the header deadline; a signed delivery then gets in
        time.sleep(HEADER_TIMEOUT + 0.5)
        assert ping(live.url, "after-flood").status_code == 202
    finally:
        for s in held:
            s.close()


def test_a_forged_25_mb_body_is_not_buffered_in_memory(tmp_path: Path) -> None:
    """Before: the whole body was collected in a list and joined before the signature check (two
    copies in RAM per connection); now it streams through the HMAC into a 1 MiB spool."""
    store = Store.open(tmp_path / "m.db")
    app = create_app(
        store=store,
        webhook_secret=SECRET,
        registry=CollectorRegistry(),
        queue=JobQueue(store),
        body_timeout=300,
    )
    with LiveServer(app) as live:
        _forged_body_peak(live)
    store.close()


def _forged_body_peak(live: LiveServer) -> None:
    chunk = b"x" * 65536

    def body() -> Iterator[bytes]:
        for _ in range(20 * 16):  # 20 MiB
            yield chunk

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        r = httpx.post(
            f"{live.url}/webhook",
            content=body(),
            timeout=30,
            headers={
                "X-GitHub-Event": "ping",
                "X-GitHub-Delivery": "forged",
                "X-Hub-Signature-256": "sha256=" + "0" * 64,
            },
        )
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert r.status_code == 401
    assert peak < 6 * 1024 * 1024, f"{peak / 2**20:.1f} MiB held while reading a forged body"
