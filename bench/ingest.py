"""Webhook ingest benchmark: signed deliveries at a `reviewbot serve --no-worker` on loopback.

The load generator is `wrk` (C, epoll: far cheaper per request than the server, so the figures are
the server's, not the client's): a Lua script (bench/ingest_wrk.lua) rotates through deliveries
signed beforehand. A no-op FastAPI app under the same uvicorn, measured the same way, stands beside
it as the baseline: what any Python ASGI server costs on this machine. Install wrk with
`apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`; `--client python` is the older
pure-Python client (httpx, costlier per request than the server; kept for the correctness test).

Mixed events (PR opened / synchronize, `@reviewbot` commands, review-thread and reply feedback,
installation changes, pings, ignored check runs), 10% sent again with the same delivery id, 5%
forged (wrong signature), sent concurrently as fast as the server acknowledges them. Afterwards
the database is compared with what was sent: every valid delivery stored exactly once, each with
exactly the jobs its event calls for, nothing from a forged one.

    python bench/ingest.py --write         # wrk at 1, 8, 16 in flight; writes "Webhook ingest"
    python bench/ingest.py --duration 3 --concurrency 16
    python bench/ingest.py --client python -n 100

Exit status 1 when it misses its target: any delivery lost or processed twice, a forgery accepted,
an error status, or a p99 acknowledgement over 50 ms (`--p99-target-ms`) at any level in flight;
2 when wrk is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import hmac
import json
import math
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_md import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "webhooks"
SECTION = "## Webhook ingest"
WRK_SCRIPT = Path(__file__).resolve().parent / "ingest_wrk.lua"

# (fixture, weight, jobs the delivery must create). Stated here, not computed by reviewbot code.
TEMPLATES: list[tuple[str, int, int]] = [
    ("pull_request.opened", 30, 1),
    ("pull_request.synchronize", 20, 2),  # review + feedback (did the push address a finding)
    ("issue_comment.command_pause", 8, 1),
    ("pull_request_review_thread.resolved", 8, 1),
    ("pull_request_review_comment.reply", 8, 1),
    ("installation_repositories.added", 4, 1),
    ("ping", 6, 0),
    ("check_run.created", 8, 0),
    ("issue_comment.plain_issue", 8, 0),
]


@dataclass
class Delivery:
    id: str
    event: str
    body: bytes
    signature: str
    kind: str  # 'valid' | 'repeat' | 'forged'
    jobs: int


@dataclass
class Result:
    delivery: Delivery
    status: int
    seconds: float
    outcome: str = ""
    server_ms: float | None = None  # from the Server-Timing header


@dataclass
class Report:
    sent: int = 0
    unique_valid: int = 0
    repeats: int = 0
    forged: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: int = 0
    lost: int = 0
    double: int = 0
    forged_accepted: int = 0
    jobs_expected: int = 0
    jobs_found: int = 0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    server_p50_ms: float = 0.0
    server_p99_ms: float = 0.0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.double or self.forged_accepted or self.errors or self.problems)


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def build_deliveries(n: int, secret: bytes, *, seed: int = 1, fixtures: Path = FIXTURES) -> list[Delivery]:
    """n deliveries: ~85% unique valid, 10% repeats of earlier valid ones, 5% forged."""
    rng = random.Random(seed)
    templates = [
        (json.loads((fixtures / f"{name}.json").read_text()), name, w, jobs) for name, w, jobs in TEMPLATES
    ]
    n_repeat, n_forged = n // 10, n // 20
    valid: list[Delivery] = []
    for i in range(n - n_repeat - n_forged):
        payload, name, _, jobs = rng.choices(templates, weights=[t[2] for t in templates])[0]
        payload = copy.deepcopy(payload)
        event = name.split(".")[0]
        # Unique PR numbers, SHAs and comment ids: no dedupe between deliveries, so the expected
        # job count per delivery is exact.
        sha = hashlib.sha1(f"{seed}-{i}".encode()).hexdigest()
        if "pull_request" in payload:
            payload["pull_request"]["number"] = 10_000 + i
            payload["pull_request"]["head"]["sha"] = sha
        if "issue" in payload:
            payload["issue"]["number"] = 10_000 + i
        if "comment" in payload:
            payload["comment"]["id"] = 50_000_000 + i
        body = json.dumps(payload).encode()
        valid.append(Delivery(f"bench-{seed}-{i}", event, body, sign(secret, body), "valid", jobs))
    repeats = [
        Delivery(d.id, d.event, d.body, d.signature, "repeat", d.jobs) for d in rng.sample(valid, n_repeat)
    ]
    forged = []
    for j in range(n_forged):
        d = rng.choice(valid)
        bad = sign(b"not-the-secret", d.body) if j % 2 else "sha256=" + "0" * 64
        forged.append(Delivery(f"forged-{seed}-{j}", d.event, d.body, bad, "forged", 0))
    out = valid + repeats + forged
    rng.shuffle(out)
    return out


async def send_all(url: str, deliveries: list[Delivery], *, concurrency: int = 8) -> list[Result]:
    results: list[Result] = []
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    for d in deliveries:
        queue.put_nowait(d)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:

        async def one() -> None:
            while True:
                try:
                    d = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": d.event,
                    "X-GitHub-Delivery": d.id,
                    "X-Hub-Signature-256": d.signature,
                    "User-Agent": "GitHub-Hookshot/bench",
                }
                start = time.perf_counter()
                try:
                    r = await client.post(url, content=d.body, headers=headers)
                    status = r.status_code
                    timing = r.headers.get("server-timing", "")
                    server_ms = float(timing.split("dur=")[1]) if "dur=" in timing else None
                    try:
                        outcome = r.json().get("outcome", "")
                    except ValueError:
                        outcome = ""
                except httpx.HTTPError as exc:
                    status, outcome, server_ms = 0, f"error: {type(exc).__name__}", None
                results.append(Result(d, status, time.perf_counter() - start, outcome, server_ms))

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return results


def check(db_path: Path, deliveries: list[Delivery], results: list[Result], seconds: float) -> Report:
    rep = Report(sent=len(results), seconds=seconds)
    valid = {d.id: d for d in deliveries if d.kind == "valid"}
    rep.unique_valid = len(valid)
    rep.repeats = sum(d.kind == "repeat" for d in deliveries)
    rep.forged = sum(d.kind == "forged" for d in deliveries)
    per_id_accepts: dict[str, int] = {}
    for r in results:
        if r.status == 202:
            rep.accepted += 1
            per_id_accepts[r.delivery.id] = per_id_accepts.get(r.delivery.id, 0) + 1
            if r.delivery.kind == "forged":
                rep.forged_accepted += 1
        elif r.status == 200 and r.outcome == "duplicate":
            rep.duplicates += 1
        elif r.status == 401:
            rep.rejected += 1
            if r.delivery.kind != "forged":
                rep.problems.append(f"{r.delivery.id}: valid delivery rejected")
        else:
            rep.errors += 1
            if len(rep.problems) < 10:
                rep.problems.append(f"{r.delivery.id}: HTTP {r.status} {r.outcome}")
    rep.double += sum(1 for n in per_id_accepts.values() if n > 1)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        stored = {row[0] for row in conn.execute("SELECT id FROM deliveries")}
        jobs_per = dict(
            conn.execute(
                "SELECT json_extract(payload, '$.delivery_id'), COUNT(*) FROM jobs GROUP BY 1"
            ).fetchall()
        )
        rep.jobs_found = int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    finally:
        conn.close()
    rep.lost = sum(1 for i in valid if i not in stored)
    rep.forged_accepted += sum(1 for d in deliveries if d.kind == "forged" and d.id in stored)
    rep.jobs_expected = sum(d.jobs for d in valid.values())
    for i, d in valid.items():
        got = jobs_per.get(i, 0)
        if got > d.jobs:
            rep.double += 1
        elif got < d.jobs and i in stored:
            rep.lost += 1
    unknown = set(jobs_per) - set(valid)
    if unknown:
        rep.problems.append(f"jobs for deliveries never sent validly: {sorted(unknown)[:5]}")
    lat = sorted(r.seconds * 1000 for r in results if r.status)
    if lat:
        rep.p50_ms, rep.p99_ms, rep.max_ms = _pct(lat, 0.5), _pct(lat, 0.99), lat[-1]
    srv = sorted(r.server_ms for r in results if r.server_ms is not None)
    if srv:
        rep.server_p50_ms, rep.server_p99_ms = _pct(srv, 0.5), _pct(srv, 0.99)
    return rep


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    db_path: Path, secret: str, port: int, *, worker: bool = False, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`reviewbot serve` in a subprocess, returned once /healthz says the database is usable
    (without a worker /healthz answers 503: deliveries would wait for one). With `worker` the
    App's credentials must be in `env` (serve refuses to start a worker without them)."""
    env = {
        **os.environ,
        **(env or {}),
        "REVIEWBOT_WEBHOOK_SECRET": secret,
        "REVIEWBOT_DATABASE_PATH": str(db_path),
        "REVIEWBOT_HOST": "127.0.0.1",
        "REVIEWBOT_PORT": str(port),
        "REVIEWBOT_LOG_LEVEL": "WARNING",
    }
    args = [sys.executable, "-m", "reviewbot", "serve"] + ([] if worker else ["--no-worker"])
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(ROOT))
    return wait_healthy(proc, port)


def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    """`proc` once its /healthz says the database is usable; raises if it exits or takes 120 s."""
    deadline = time.monotonic() + 120  # importing the stack takes long on a loaded machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"server exited {proc.returncode}: {err}")
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            if health.status_code in (200, 503) and health.json().get("database") == "ok":
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not become healthy within 120 s")


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL if it takes longer than `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(n: int = 1000, *, concurrency: int = 8, seed: int = 1, workdir: Path | None = None) -> Report:
    """Start a server on a free loopback port, send, stop it, check the database."""
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    base = Path(tmp.name) if tmp else Path(workdir)  # type: ignore[arg-type]
    try:
        db = base / "ingest.db"
        secret = "bench-" + hashlib.sha256(str(seed).encode()).hexdigest()[:16]
        deliveries = build_deliveries(n, secret.encode(), seed=seed)
        port = free_port()
        proc = start_server(db, secret, port)
        try:
            start = time.perf_counter()
            results = asyncio.run(
                send_all(f"http://127.0.0.1:{port}/webhook", deliveries, concurrency=concurrency)
            )
            seconds = time.perf_counter() - start
        finally:
            stop_server(proc)
        return check(db, deliveries, results, seconds)
    finally:
        if tmp:
            tmp.cleanup()


P99_TARGET_MS = 50.0


def verdict(reports: list[tuple[int, Report]], p99_target_ms: float = P99_TARGET_MS) -> tuple[bool, str]:
    """(met the target?, what to print): correct in every run AND p99 within the target in every run."""
    ok = all(rep.ok for _, rep in reports)
    slow = [c for c, rep in reports if rep.p99_ms > p99_target_ms]
    if not ok:
        return False, "FAIL (deliveries lost, processed twice, or a forgery accepted)"
    if slow:
        levels = ", ".join(str(c) for c in slow)
        return False, f"FAIL: p99 over the {p99_target_ms:g} ms target at {levels} in flight"
    return True, "PASS"


def render(reports: list[tuple[int, Report]], n: int, p99_target_ms: float = P99_TARGET_MS) -> str:
    _, said = verdict(reports, p99_target_ms)
    levels = " ".join(str(c) for c, _ in reports)
    lines = [
        SECTION,
        "",
        f"`python bench/ingest.py -n {n} --concurrency {levels}`: a separate process sends {n} signed",
        "deliveries (mixed events; 10% sent again with the same delivery id, 5% forged) to",
        "`reviewbot serve --no-worker` on 127.0.0.1 (SQLite WAL on local disk) with that many requests in",
        "flight, then checks the database against what was sent. Targets: 0 lost, 0 processed twice,",
        f"every forgery rejected, p99 acknowledgement <= {p99_target_ms:g} ms. `ack` is measured by the",
        "client (network, queueing and the client's own CPU included); `in server` is the Server-Timing the",
        "server reports.",
        "",
        "| in flight | sent | unique valid | repeats | forged | accepted (202) | duplicate (200) |"
        " rejected (401) | other | lost | processed twice | forged accepted | jobs expected / stored |"
        " p50 ack | p99 ack | p50 / p99 in server | throughput |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for conc, rep in reports:
        lines.append(
            f"| {conc} | {rep.sent} | {rep.unique_valid} | {rep.repeats} | {rep.forged} | {rep.accepted}"
            f" | {rep.duplicates} | {rep.rejected} | {rep.errors} | {rep.lost} | {rep.double}"
            f" | {rep.forged_accepted} | {rep.jobs_expected} / {rep.jobs_found}"
            f" | {rep.p50_ms:.1f} ms | {rep.p99_ms:.1f} ms"
            f" | {rep.server_p50_ms:.1f} / {rep.server_p99_ms:.1f} ms | {rep.sent / rep.seconds:.0f}/s |"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines += [
        "",
        f"Result: **{said}** (last run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on"
        f" {os.cpu_count()} CPUs shared with other work, load average {load:.1f} at the end; client and"
        " server on the same machine).",
        "",
    ]
    return "\n".join(lines)


# --- wrk: a load generator cheaper than the server ----------------------------------------------


@dataclass
class WrkRun:
    """What one wrk run saw: latency from wrk's histogram, statuses and requests per thread."""

    requests: int = 0
    seconds: float = 0.0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    server_p50_ms: float | None = None
    server_p99_ms: float | None = None
    socket_errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    sent: list[int] = field(default_factory=list)  # requests issued per thread (thread k: index k-1)
    busy: list[int] = field(default_factory=list)  # per thread: sum over requests of others unanswered
    answered: list[int] = field(default_factory=list)  # responses per thread

    @property
    def sampled_in_flight(self) -> float:
        """Requests in flight once each request went out (itself included), summed over threads.
        wrk asks thread 1's script for one request it never sends (script_verify_request, before
        the run): that one stays unanswered, so thread 1's count and each of its samples lose it."""
        total = 0.0
        for k, (busy, sent) in enumerate(zip(self.busy, self.sent, strict=True)):
            if k == 0 and sent > 1:
                busy, sent = busy - (sent - 1), sent - 1
            if sent:
                total += busy / sent + 1
        return total


def write_wrk_requests(deliveries: list[Delivery], path: Path) -> None:
    """One line per delivery for the Lua script: id, event, signature, JSON body (one line)."""
    with path.open("w", encoding="utf-8") as out:
        for d in deliveries:
            body = d.body.decode()
            assert "\n" not in body and "\t" not in body
            out.write(f"{d.id}\t{d.event}\t{d.signature}\t{body}\n")


def wrk_threads(connections: int) -> int:
    return max(1, min(connections, os.cpu_count() or 1))


def run_wrk(url: str, requests_file: Path, *, connections: int, seconds: float) -> WrkRun:
    """wrk with `connections` requests in flight for `seconds`; raises when wrk is missing."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError("wrk is not installed: apt-get install -y wrk (or brew install wrk)")
    threads = wrk_threads(connections)
    env = {**os.environ, "INGEST_WRK_REQUESTS": str(requests_file), "INGEST_WRK_THREADS": str(threads)}
    cmd = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-1500:]} {out.stderr[-1500:]}")
    raw = json.loads(line[len("RESULT ") :])
    run = WrkRun(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        mean_ms=raw["mean_us"] / 1000,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        socket_errors=sum(raw["errors"].values()),
    )
    if raw["server_p50_ms"] >= 0:
        run.server_p50_ms, run.server_p99_ms = raw["server_p50_ms"], raw["server_p99_ms"]
    for t in sorted(raw["threads"], key=lambda t: t["id"]):
        run.sent.append(t["sent"])
        run.busy.append(t.get("busy", 0))
        run.answered.append(t.get("answered", t["sent"]))
        run.statuses.update({int(code): n for code, n in t["statuses"].items()})
    return run


def in_flight(run: WrkRun) -> float:
    """Throughput x wrk's mean latency (Little's law), beside the sampled figure. Not trusted
    alone: at ~980 acks/s it comes out near half the sampled figure (wrk's mean ack below the
    level / throughput), a disagreement not explained yet (BENCHMARKS.md says so)."""
    return run.requests / max(run.seconds, 1e-9) * run.mean_ms / 1000


def requested(deliveries: list[Delivery], sent: list[int]) -> list[Delivery]:
    """The deliveries wrk asked for, in the Lua script's rotation (thread k takes lines k, k+T...)."""
    out = []
    for k, n in enumerate(sent):
        share = deliveries[k :: len(sent)]
        out += [share[i % len(share)] for i in range(n)] if share else []
    return out


def check_wrk(db_path: Path, deliveries: list[Delivery], run: WrkRun) -> Report:
    """The database against what wrk sent. A request wrk issued but never saw answered (at most one
    per connection when the run's time is up) may or may not be stored: neither counts as lost."""
    asked = requested(deliveries, run.sent)
    rep = Report(
        sent=run.requests,
        seconds=run.seconds,
        p50_ms=run.p50_ms,
        p99_ms=run.p99_ms,
        max_ms=run.max_ms,
        server_p50_ms=run.server_p50_ms or 0.0,
        server_p99_ms=run.server_p99_ms or 0.0,
    )
    first = {d.id: d for d in asked if d.kind == "valid"}
    rep.unique_valid = len(first)
    rep.repeats = len(asked) - len({d.id for d in asked})  # the same delivery id asked again
    rep.forged = sum(d.kind == "forged" for d in asked)
    rep.accepted, rep.duplicates, rep.rejected = run.statuses[202], run.statuses[200], run.statuses[401]
    rep.errors = run.socket_errors + sum(n for code, n in run.statuses.items() if code not in (200, 202, 401))
    if rep.errors:
        rep.problems.append(f"statuses {dict(run.statuses)}, {run.socket_errors} socket error(s)")
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        stored = {row[0] for row in conn.execute("SELECT id FROM deliveries")}
        jobs_per = dict(
            conn.execute("SELECT json_extract(payload, '$.delivery_id'), COUNT(*) FROM jobs GROUP BY 1")
        )
        rep.jobs_found = int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    finally:
        conn.close()
    unanswered = max(0, len(asked) - run.requests)
    by_id = {d.id: d for d in deliveries if d.kind == "valid"}
    sent_valid = {d.id for d in asked if d.kind in ("valid", "repeat")}
    rep.lost = max(0, sum(1 for i in sent_valid if i not in stored) - unanswered)
    rep.forged_accepted = sum(1 for d in asked if d.kind == "forged" and d.id in stored)
    rep.jobs_expected = sum(by_id[i].jobs for i in sent_valid if i in stored)
    rep.double = sum(1 for i, got in jobs_per.items() if i in by_id and got > by_id[i].jobs)
    rep.double += sum(1 for i in stored if i not in by_id and i not in sent_valid)
    return rep


def noop_server_main(port: int) -> None:
    """The baseline: a FastAPI app that reads the body and answers 202, under uvicorn with the
    options `reviewbot serve` uses (its guarded HTTP protocol, no access log)."""
    import uvicorn
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    app = FastAPI()

    async def webhook(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"outcome": "queued"}, status_code=202)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"database": "ok"})

    # plain routes: the handlers' annotations are strings here (postponed evaluation)
    app.add_route("/webhook", webhook, methods=["POST"])
    app.add_route("/healthz", healthz, methods=["GET"])

    from reviewbot.app.http_guard import guarded_http

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        http=guarded_http(),
    )


def start_noop(port: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(Path(__file__).resolve()), "--noop-server", str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(ROOT))
    return wait_healthy(proc, port)


@dataclass
class Level:
    """One level of requests in flight: reviewbot (checked against its database) and the no-op."""

    connections: int
    reviewbot: Report
    noop: WrkRun
    run: WrkRun  # reviewbot's wrk run

    @property
    def in_flight(self) -> float:
        return in_flight(self.run)

    @property
    def sampled(self) -> float:
        return self.run.sampled_in_flight


#: The generator must really keep this share of the requested level in flight (Little's law),
#: else the row does not measure that level and the bench fails.
IN_FLIGHT_FLOOR = 0.8


def short_levels(levels: list[Level]) -> list[str]:
    """Levels where wrk did not keep the requests in flight that the row claims."""
    return [
        f"{lv.connections} requested, {lv.sampled:.1f} in flight"
        for lv in levels
        if lv.sampled < IN_FLIGHT_FLOOR * lv.connections
    ]


def run_level(
    connections: int,
    deliveries: list[Delivery],
    requests_file: Path,
    secret: str,
    *,
    seconds: float,
    workdir: Path,
) -> Level:
    """reviewbot on a fresh database, then the no-op app, each driven by wrk for `seconds`."""
    db = workdir / f"ingest-{connections}.db"
    port = free_port()
    proc = start_server(db, secret, port)
    try:
        run = run_wrk(
            f"http://127.0.0.1:{port}/webhook", requests_file, connections=connections, seconds=seconds
        )
    finally:
        stop_server(proc)
    report = check_wrk(db, deliveries, run)
    port = free_port()
    proc = start_noop(port)
    try:
        noop = run_wrk(
            f"http://127.0.0.1:{port}/webhook", requests_file, connections=connections, seconds=seconds
        )
    finally:
        stop_server(proc)
    level = Level(connections, report, noop, run)
    print(
        f"{connections} requested in flight: {level.sampled:.1f} sampled as requests went out; "
        f"{level.in_flight:.1f} by throughput {run.requests / max(run.seconds, 1e-9):.0f}/s x wrk's "
        f"corrected mean ack {run.mean_ms:.2f} ms; no-op {noop.sampled_in_flight:.1f} / "
        f"{in_flight(noop):.1f}",
        file=sys.stderr,
    )
    return level


def render_wrk(levels: list[Level], *, seconds: float, n: int, p99_target_ms: float = P99_TARGET_MS) -> str:
    _, said = verdict([(lv.connections, lv.reviewbot) for lv in levels], p99_target_ms)
    short = short_levels(levels)
    if short:
        said = f"FAIL: the generator did not keep the level in flight ({'; '.join(short)})"
    conc = " ".join(str(lv.connections) for lv in levels)
    lines = [
        SECTION,
        "",
        f"`python bench/ingest.py --write --duration {seconds:g} --concurrency {conc}` (needs `wrk`:",
        "`apt-get install -y wrk`): `wrk` (C, far cheaper per request than the server) keeps that many",
        f"signed deliveries in flight for {seconds:g} s against `reviewbot serve --no-worker` on 127.0.0.1",
        f"(SQLite WAL on local disk, a fresh database per level), rotating through {n} deliveries signed",
        "beforehand (mixed events; 10% repeats of a delivery id, 5% forged); the database is then checked",
        "against what was sent. Beside it, the same wrk run against a no-op FastAPI app under the same",
        "uvicorn (reads the body, answers 202): the floor any Python ASGI server has on this machine.",
        "Targets: 0 lost, 0 processed twice, every forgery rejected, no error status, p99 ack <=",
        f"{p99_target_ms:g} ms at every level. `ack` is wrk's (connect excluded, queueing in the server",
        "included; wrk adds synthetic samples for slow responses, coordinated-omission correction, so",
        "p50/p99 are upper bounds); `in server` is the Server-Timing reviewbot reports. `measured in",
        "flight`: sampled (as each request went out, its thread's unanswered requests + 1, summed over",
        "threads; one request per connection, no pipelining) / throughput x wrk's mean ack (Little's",
        "law). The bench fails when the sample is under "
        f"{IN_FLIGHT_FLOOR:.0%} of the level. `mean ack (Little)` = sampled",
        "in flight / throughput. **Open question**: where the two in-flight figures disagree (at ~980",
        "acks/s wrk's mean ack is about half the Little mean), either wrk's latencies (corrected for",
        "coordinated omission before its done() sees them) understate the acks, p99 included, or the",
        "sample overstates what is in flight; at ~2,000 acks/s on a quieter machine they agree (15.7 /",
        "16.7 at 16). Read the p99 column with that in mind.",
        "",
        "| in flight | measured in flight | mean ack (Little) | requests | accepted (202) | duplicate (200)"
        " | rejected (401)"
        " | other | lost |"
        " processed twice | forged accepted | p50 ack | p99 ack | p50 / p99 in server | throughput |"
        " no-op p50 | no-op p99 | no-op throughput |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in levels:
        r, b = lv.reviewbot, lv.noop
        lines.append(
            f"| {lv.connections} | {lv.sampled:.1f} / {lv.in_flight:.1f}"
            f" | {lv.sampled / max(r.sent / max(r.seconds, 1e-9), 1e-9) * 1000:.1f} ms"
            f" | {r.sent} | {r.accepted}"
            f" | {r.duplicates}"
            f" | {r.rejected} | {r.errors}"
            f" | {r.lost} | {r.double} | {r.forged_accepted} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms"
            f" | {r.server_p50_ms:.1f} / {r.server_p99_ms:.1f} ms | {r.sent / max(r.seconds, 1e-9):.0f}/s"
            f" | {b.p50_ms:.1f} ms | {b.p99_ms:.1f} ms | {b.requests / max(b.seconds, 1e-9):.0f}/s |"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines += [
        "",
        f"Result: **{said}** (last run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on"
        f" {os.cpu_count()} CPUs shared with other work, load average {load:.1f} at the end; wrk and"
        " the server on the same machine).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--client", choices=("wrk", "python"), default="wrk", help="load generator (wrk)")
    ap.add_argument(
        "-n",
        type=int,
        default=None,
        help="deliveries: signed beforehand for wrk (20000), sent per run by python (1000)",
    )
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    ap.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 8, 16], help="requests in flight; one run each"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--p99-target-ms", type=float, default=P99_TARGET_MS, help="p99 acknowledgement target")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md (wrk only)")
    ap.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)  # the default now
    ap.add_argument("--noop-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.noop_server:
        noop_server_main(args.noop_server)
        return 0
    if args.client == "python":
        n = args.n or 1000
        reports = [(c, run(n, concurrency=c, seed=args.seed)) for c in args.concurrency]
        print(render(reports, n, args.p99_target_ms))
        for _, rep in reports:
            for p in rep.problems[:10]:
                print("problem:", p, file=sys.stderr)
        return 0 if verdict(reports, args.p99_target_ms)[0] else 1
    if shutil.which("wrk") is None:
        print(
            "bench/ingest.py: wrk is not installed: apt-get install -y wrk (Debian/Ubuntu) or "
            "brew install wrk; or --client python (slower than the server it measures)",
            file=sys.stderr,
        )
        return 2
    n = args.n or 20_000
    with tempfile.TemporaryDirectory() as tmp:
        secret = "bench-" + hashlib.sha256(str(args.seed).encode()).hexdigest()[:16]
        deliveries = build_deliveries(n, secret.encode(), seed=args.seed)
        requests_file = Path(tmp) / "requests.tsv"
        write_wrk_requests(deliveries, requests_file)
        levels = [
            run_level(c, deliveries, requests_file, secret, seconds=args.duration, workdir=Path(tmp))
            for c in args.concurrency
        ]
    text = render_wrk(levels, seconds=args.duration, n=n, p99_target_ms=args.p99_target_ms)
    print(text)
    for lv in levels:
        for p in lv.reviewbot.problems[:10]:
            print("problem:", p, file=sys.stderr)
    if args.write:
        write_section(SECTION, text)
    ok = verdict([(lv.connections, lv.reviewbot) for lv in levels], args.p99_target_ms)[0]
    return 0 if ok and not short_levels(levels) else 1


if __name__ == "__main__":
    sys.exit(main())
