"""`serve` and `worker` with good and broken credentials, /healthz telling the truth, and the
Docker key layout of docs/deploy.md read as the container's user (uid 10001)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from reviewbot.app.github import GitHubApp
from reviewbot.app.queue import JobQueue
from reviewbot.app.server import create_app
from reviewbot.app.store import Store
from reviewbot.app.worker import Worker
from reviewbot.cli import app
from reviewbot.commands.serve_cmd import github_auth_probe
from reviewbot.core.settings import Settings, github_app_credentials
from tests.fakes.fake_github import FakeGitHub, generate_app_key
from tests.fakes.live_server import LiveServer

ROOT = Path(__file__).resolve().parent.parent
CONTAINER_UID = 10001
as_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switching to uid 10001 needs root"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWBOT_", "OPENAI_"))}
    env.update(extra)
    return env


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reviewbot", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_app_key()


# --- refusing to start -----------------------------------------------------------------------


def test_serve_without_app_credentials_refuses_in_one_line(tmp_path: Path) -> None:
    p = _run("serve", env=_env(REVIEWBOT_WEBHOOK_SECRET="s", REVIEWBOT_DATABASE_PATH=str(tmp_path / "a.db")))
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        "REVIEWBOT_GITHUB_APP_ID is not set: the GitHub App needs its app id to authenticate as the app"
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "/nonexistent/reviewbot.pem",
            "REVIEWBOT_GITHUB_PRIVATE_KEY: is neither PEM text nor an existing file",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----",
            "REVIEWBOT_GITHUB_PRIVATE_KEY: not a usable private key",
        ),
    ],
)
@pytest.mark.parametrize("command", [["serve"], ["worker"]])
def test_a_bad_key_is_one_line_naming_the_variable(
    command: list[str], key: str, expected: str, tmp_path: Path
) -> None:
    env = _env(
        REVIEWBOT_WEBHOOK_SECRET="s",
        REVIEWBOT_DATABASE_PATH=str(tmp_path / "a.db"),
        REVIEWBOT_GITHUB_APP_ID="42",
        REVIEWBOT_GITHUB_PRIVATE_KEY=key,
    )
    p = _run(*command, env=env)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), p.stderr
    assert "Traceback" not in p.stderr


def test_serve_no_worker_needs_no_credentials_and_is_unhealthy_until_a_worker_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["serve", "--no-worker", "--port", "1"], env={"REVIEWBOT_WEBHOOK_SECRET": ""}
    )
    assert result.exit_code == 1  # the secret is still required
    store = Store.open(tmp_path / "rb.db")
    try:
        with LiveServer(
            create_app(store=store, webhook_secret=b"s", registry=CollectorRegistry(), queue=JobQueue(store))
        ) as srv:
            r = httpx.get(f"{srv.url}/healthz")
        assert r.status_code == 503 and r.json()["worker"] == "none" and r.json()["database"] == "ok"
    finally:
        store.close()


# --- /healthz and the worker's credentials ---------------------------------------------------


def _probe_once(db: Path, app_: GitHubApp, worker_id: str) -> None:
    """Run the worker's credential probe until it has recorded GitHub's answer."""

    async def main() -> None:
        store = Store.open(db)
        queue = JobQueue(store)
        worker = Worker(queue, {}, worker_id=worker_id)
        task = asyncio.create_task(github_auth_probe(app_, queue, worker, interval=60))
        try:
            for _ in range(200):
                row = store.conn.execute(
                    "SELECT github_auth FROM heartbeats WHERE worker = ?", (worker_id,)
                ).fetchone()
                if row and row[0]:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the probe recorded nothing")
        finally:
            worker.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            store.close()

    asyncio.run(main())


@pytest.fixture
def health(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], httpx.Response]]]:
    db = tmp_path / "rb.db"
    store = Store.open(db)
    with LiveServer(
        create_app(store=store, webhook_secret=b"s", registry=CollectorRegistry(), queue=JobQueue(store))
    ) as srv:
        yield db, lambda: httpx.get(f"{srv.url}/healthz")
    store.close()


def test_healthz_is_503_when_github_refuses_the_workers_key(
    health: tuple[Path, Callable[[], httpx.Response]], keys: tuple[str, str]
) -> None:
    db, get = health
    priv, pub = keys
    other, _ = generate_app_key()  # a key of some other App: parses, but GitHub refuses it
    with FakeGitHub(app_id=42, app_public_key=pub) as gh:
        _probe_once(db, GitHubApp(42, other, base_url=gh.base_url), "w-bad")
        r = get()
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "degraded" and body["worker"] == "auth_failed"
        assert "401" in body["worker_error"] and "could not be decoded" in body["worker_error"]

        _probe_once(db, GitHubApp(42, priv, base_url=gh.base_url), "w-good")  # a second, good worker
        r = get()
        assert r.status_code == 200 and r.json()["worker"] == "ok"


def test_healthz_is_503_when_the_database_cannot_grow(tmp_path: Path) -> None:
    """A full disk as SQLite sees it: no page can be added."""
    store = Store.open(tmp_path / "rb.db")
    store.conn.execute(
        "INSERT INTO heartbeats (worker, at) VALUES ('w', strftime('%Y-%m-%dT%H:%M:%f+00:00'))"
    )
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    try:
        with LiveServer(
            create_app(store=store, webhook_secret=b"s", registry=CollectorRegistry(), queue=JobQueue(store))
        ) as srv:
            r = httpx.get(f"{srv.url}/healthz")
        assert r.status_code == 503
        assert r.json()["status"] == "error" and "full" in r.json()["database"]
    finally:
        store.close()


def test_healthz_is_503_when_the_disk_is_nearly_full(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "rb.db")
    store.conn.execute(
        "INSERT INTO heartbeats (worker, at) VALUES ('w', strftime('%Y-%m-%dT%H:%M:%f+00:00'))"
    )
    free = {"bytes": 10**9}
    try:
        server = create_app(
            store=store,
            webhook_secret=b"s",
            registry=CollectorRegistry(),
            queue=JobQueue(store),
            disk_free=lambda _p: free["bytes"],
        )
        with LiveServer(server) as srv:
            assert httpx.get(f"{srv.url}/healthz").status_code == 200
            free["bytes"] = 5 * 1024 * 1024
            r = httpx.get(f"{srv.url}/healthz")
        assert r.status_code == 503 and r.json()["database"].startswith("error: 5242880 bytes free")
    finally:
        store.close()


# --- as the container's user ------------------------------------------------------------------


def _as_uid(uid: int, fn: Callable[[], str]) -> str:
    """Run `fn` in a forked child that has switched to `uid` (like the container's USER)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            out = fn()
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            out = f"raised {type(exc).__name__}: {exc}"
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return data.decode()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory another user can traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="reviewbot-uid-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _documented_key_install() -> tuple[int, int, int]:
    """(mode, owner uid, group gid) from the `install ... reviewbot.pem` line of docs/deploy.md."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    m = re.search(r"install -m (\d+) -o (\d+) -g (\d+) reviewbot\.pem", text)
    assert m, "docs/deploy.md no longer shows how to install the key"
    return int(m.group(1), 8), int(m.group(2)), int(m.group(3))


def _load_key_as_container(key: Path) -> str:
    def load() -> str:
        _, _, warnings = github_app_credentials(Settings(github_app_id=42, github_private_key=str(key)))
        return "ok " + " | ".join(warnings)

    return _as_uid(CONTAINER_UID, load)


@as_root
def test_the_documented_docker_key_layout_is_readable_by_the_container_user(
    open_dir: Path, keys: tuple[str, str]
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"--uid {CONTAINER_UID}" in dockerfile and "USER reviewbot" in dockerfile
    mode, uid, gid = _documented_key_install()
    assert uid == CONTAINER_UID
    etc = open_dir / "etc-reviewbot"  # sudo install -d -m 0755 /etc/reviewbot
    etc.mkdir(mode=0o755)
    key = etc / "reviewbot.pem"  # bind-mounted as is: owner and mode carry into the container
    key.write_text(keys[0])
    os.chown(key, uid, gid)
    key.chmod(mode)
    assert _load_key_as_container(key) == "ok "  # readable, and no "too open" warning


@as_root
def test_a_key_owned_by_someone_else_is_refused_naming_the_variable(
    open_dir: Path, keys: tuple[str, str]
) -> None:
    key = open_dir / "reviewbot.pem"  # the old docs: your own key, chmod 600
    key.write_text(keys[0])
    key.chmod(0o600)
    out = _load_key_as_container(key)
    assert out.startswith("raised InvalidSettingError: REVIEWBOT_GITHUB_PRIVATE_KEY: cannot read key file")
    assert "Permission denied" in out


@as_root
def test_serve_refuses_a_database_it_cannot_write(open_dir: Path) -> None:
    db = open_dir / "reviewbot.db"
    Store.open(db).close()  # root's file in root's directory: read-only to uid 10001
    for f in open_dir.iterdir():
        f.chmod(0o644)

    def serve() -> str:
        result = CliRunner().invoke(
            app,
            ["serve", "--no-worker"],
            env={"REVIEWBOT_WEBHOOK_SECRET": "s", "REVIEWBOT_DATABASE_PATH": str(db)},
        )
        return f"{result.exit_code} {result.stderr.strip()}"

    out = _as_uid(CONTAINER_UID, serve)
    code, _, message = out.partition(" ")
    assert code == "1", out
    assert message.startswith("REVIEWBOT_DATABASE_PATH: cannot ") and str(db) in message
    assert len(message.splitlines()) == 1


def test_store_probe_write_fails_on_a_read_only_connection(tmp_path: Path) -> None:
    Store.open(tmp_path / "rb.db").close()
    conn = sqlite3.connect(f"file:{tmp_path / 'rb.db'}?mode=ro", uri=True, isolation_level=None)
    store = Store(conn, str(tmp_path / "rb.db"))
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.probe_write("2026-01-01T00:00:00+00:00")
    store.close()


def test_the_unknown_variable_warning_is_a_json_log_line(tmp_path: Path) -> None:
    env = _env(REVIEWBOT_DATABASE_PATH=str(tmp_path / "a.db"), REVIEWBOT_GITHUB_APP_IDD="42")
    p = _run("worker", env=env)
    assert p.returncode == 1  # no App id: refused, after logging
    first, *rest = p.stderr.strip().splitlines()
    record = json.loads(first)
    assert record["level"].lower() == "warning"
    assert "REVIEWBOT_GITHUB_APP_IDD is not a reviewbot setting" in record["msg"]
    assert "did you mean REVIEWBOT_GITHUB_APP_ID" in record["msg"]
    assert rest == [
        "REVIEWBOT_GITHUB_APP_ID is not set: the GitHub App needs its app id to authenticate as the app"
    ]
