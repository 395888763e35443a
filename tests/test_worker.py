"""worker.py: handlers run, fail, retry, dead-letter; leases are kept alive and lost leases stop
the job; graceful stop; per-installation limits; built-in installation and pause/resume jobs;
structured logs with the job's context and secrets redacted."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from reviewbot.app import webhooks
from reviewbot.app.logs import configure_logging, log_context
from reviewbot.app.metrics import Metrics
from reviewbot.app.queue import Job, JobQueue, iso
from reviewbot.app.store import Store
from reviewbot.app.worker import PermanentJobError, Worker, builtin_handlers, is_paused
from tests.fakes.clock import ManualClock

Clock = ManualClock


@pytest.fixture
def queue(store: Store, clock: Clock) -> JobQueue:
    return JobQueue(store, clock=clock, lease_seconds=30, max_attempts=3, backoff_base=5)


def make_worker(queue: JobQueue, handlers, **kw) -> Worker:
    kw.setdefault("worker_id", "w1")
    kw.setdefault("concurrency", 2)
    kw.setdefault("heartbeat_interval", 0.05)
    kw.setdefault("poll_interval", 0.05)
    return Worker(queue, handlers, **kw)


def state(queue: JobQueue, job_id: int) -> tuple[str, int, str | None]:
    job = queue.get(job_id)
    assert job is not None
    return job.state, job.attempts, job.last_error


async def test_runs_handlers_and_completes(queue: JobQueue) -> None:
    seen: list[tuple[int, dict]] = []

    async def handle(job: Job) -> None:
        seen.append((job.id, job.payload))

    ids = [queue.enqueue("echo", {"i": i}) for i in range(5)]
    metrics = Metrics(CollectorRegistry())
    n = await make_worker(queue, {"echo": handle}, metrics=metrics).run_until_idle()
    assert n == 5 and sorted(i for i, _ in seen) == ids
    assert all(state(queue, i)[0] == "done" for i in ids)
    assert metrics.registry.get_sample_value("reviewbot_jobs_total", {"kind": "echo", "outcome": "done"}) == 5


async def test_failure_retries_with_backoff_then_dead_letters(queue: JobQueue, clock: Clock) -> None:
    calls = 0

    async def flaky(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError(f"GitHub 502 #{calls}")

    job_id = queue.enqueue("review", {}, repo="o/r", pr=1)
    worker = make_worker(queue, {"review": flaky})
    await worker.run_until_idle()
    assert state(queue, job_id) == ("queued", 1, "RuntimeError: GitHub 502 #1")
    await worker.run_until_idle()
    assert calls == 1  # backing off: not retried before run_after
    clock.t += 5
    await worker.run_until_idle()
    assert state(queue, job_id)[:2] == ("queued", 2)
    clock.t += 10
    await worker.run_until_idle()
    st, attempts, error = state(queue, job_id)
    assert (st, attempts, calls) == ("dead", 3, 3)
    assert "GitHub 502 #3" in error and "gave up after 3 attempts" in error


async def test_permanent_error_and_unknown_kind_dead_letter_at_once(queue: JobQueue) -> None:
    async def bad(job: Job) -> None:
        raise PermanentJobError("PR o/r#1 no longer exists")

    a = queue.enqueue("review", {})
    b = queue.enqueue("mystery", {})
    await make_worker(queue, {"review": bad}).run_until_idle()
    assert state(queue, a) == ("dead", 1, "PermanentJobError: PR o/r#1 no longer exists")
    st, attempts, error = state(queue, b)
    assert (st, attempts) == ("dead", 1) and "no handler for job kind 'mystery'" in error
    assert {j.id for j in queue.dead_letters()} == {a, b}


async def test_heartbeats_keep_a_long_job_leased(store: Store) -> None:
    """Real clock, 0.3 s lease, a 1 s handler: the heartbeat keeps it; a rival never claims it."""
    q = JobQueue(store, lease_seconds=0.3)
    job_id = q.enqueue("slow", {})
    rival_claims = []

    async def slow(job: Job) -> None:
        for _ in range(10):
            await asyncio.sleep(0.1)
            rival_claims.append(q.claim("rival"))

    await make_worker(q, {"slow": slow}, heartbeat_interval=0.05).run_until_idle()
    assert rival_claims == [None] * 10
    assert state(q, job_id) == ("done", 1, None)


async def test_lost_lease_cancels_the_job(store: Store, clock: Clock) -> None:
    """Our lease ran out (e.g. the process was paused) and another worker took the job: this
    worker must stop working on it and must not mark it done."""
    q = JobQueue(store, clock=clock, lease_seconds=30)
    job_id = q.enqueue("slow", {})
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = make_worker(q, {"slow": slow}, heartbeat_interval=0.05)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    clock.t += 31  # the lease expired without a heartbeat in between
    other = JobQueue(store, clock=clock).claim("w2")
    assert other is not None and other.id == job_id
    await asyncio.wait_for(cancelled.wait(), 5)
    worker.stop()
    await asyncio.wait_for(run, 5)
    job = q.get(job_id)
    assert job.state == "running" and job.lease_owner == "w2"


async def test_graceful_stop_finishes_running_jobs_and_clears_heartbeat(
    queue: JobQueue, store: Store
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def handle(job: Job) -> None:
        started.set()
        await release.wait()

    job_id = queue.enqueue("x", {})
    worker = make_worker(queue, {"x": handle})
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    assert store.conn.execute("SELECT worker FROM heartbeats").fetchall() == [("w1",)]
    worker.stop()
    await asyncio.sleep(0.1)
    assert not run.done()  # waiting for the running job
    release.set()
    await asyncio.wait_for(run, 5)
    assert state(queue, job_id)[0] == "done"
    assert store.conn.execute("SELECT COUNT(*) FROM heartbeats").fetchone() == (0,)


async def test_stop_after_grace_releases_the_job(queue: JobQueue) -> None:
    started = asyncio.Event()

    async def stuck(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    job_id = queue.enqueue("x", {})
    worker = make_worker(queue, {"x": stuck}, shutdown_grace=0.1)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    worker.stop()
    await asyncio.wait_for(run, 5)
    # Given back without using up an attempt, so the next worker starts it at once.
    assert state(queue, job_id)[:2] == ("queued", 0)


async def test_notify_wakes_the_worker_before_the_poll_interval(queue: JobQueue) -> None:
    done = asyncio.Event()

    async def handle(job: Job) -> None:
        done.set()

    worker = make_worker(queue, {"x": handle}, poll_interval=30)
    run = asyncio.create_task(worker.run())
    await asyncio.sleep(0.05)
    worker.notify(queue.enqueue("x", {}))
    await asyncio.wait_for(done.wait(), 2)
    worker.stop()
    await asyncio.wait_for(run, 5)


async def test_per_installation_limit_and_concurrency(queue: JobQueue) -> None:
    running: dict[int, int] = {}
    peak: dict[int, int] = {}
    peak_total = 0

    async def handle(job: Job) -> None:
        nonlocal peak_total
        inst = job.installation_id
        running[inst] = running.get(inst, 0) + 1
        peak[inst] = max(peak.get(inst, 0), running[inst])
        peak_total = max(peak_total, sum(running.values()))
        await asyncio.sleep(0.05)
        running[inst] -= 1

    for i in range(4):
        queue.enqueue("x", {}, installation_id=1, repo="a/a", pr=i)
        queue.enqueue("x", {}, installation_id=2, repo="b/b", pr=i)
    worker = make_worker(queue, {"x": handle}, concurrency=4, per_installation_limit=1)
    run = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 10
    while queue.counts().get("done", 0) < 8:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    worker.stop()
    await asyncio.wait_for(run, 5)
    assert peak == {1: 1, 2: 1} and peak_total == 2


# --- built-in handlers ---------------------------------------------------------------------------


def _command(kind: str) -> dict:
    return {
        "kind": kind,
        "installation_id": 7,
        "repo": "acme/api",
        "pr": 3,
        "comment_id": 99,
        "user": "dev",
        "repo_id": 1234,
    }


async def test_pause_and_resume(queue: JobQueue, store: Store) -> None:
    handlers = builtin_handlers(store, queue.lock, clock=queue.clock)
    queue.enqueue("command.pause", _command("pause"), installation_id=7)
    await make_worker(queue, handlers).run_until_idle()
    assert is_paused(store, "acme/api")
    queue.enqueue("command.resume", _command("resume"), installation_id=7)
    await make_worker(queue, handlers).run_until_idle()
    assert not is_paused(store, "acme/api")
    assert queue.counts() == {"done": 2}


def _installation_job(queue: JobQueue, fixtures_dir: Path, name: str, **changes) -> None:
    event = name.split(".")[0]
    payload = json.loads((fixtures_dir / "webhooks" / f"{name}.json").read_text())
    action = webhooks.route(event, payload)
    spec = webhooks.plan(action)[0]
    data = {**spec.payload, **changes}
    queue.enqueue(spec.kind, data, installation_id=data["installation_id"])


async def test_installation_lifecycle_and_uninstall_deletes_tenant_data(
    queue: JobQueue, store: Store, fixtures_dir: Path
) -> None:
    handlers = builtin_handlers(store, queue.lock, clock=queue.clock)
    _installation_job(queue, fixtures_dir, "installation.created", installation_id=2)
    _installation_job(queue, fixtures_dir, "installation_repositories.added", installation_id=2)
    await make_worker(queue, handlers).run_until_idle()
    assert store.conn.execute("SELECT id, account FROM installations").fetchall() == [(2, "Codertocat")]
    assert sorted(r[0] for r in store.conn.execute("SELECT full_name FROM repositories")) == [
        "Codertocat/Hello-World",
        "Codertocat/Space",
    ]
    # Data of two tenants: installation 2 (being removed) and 9 (must survive).
    now = iso(time.time())
    c = store.conn
    c.execute("INSERT INTO installations (id, account, created_at) VALUES (9, 'other', ?)", (now,))
    c.execute(
        "INSERT INTO repositories (id, installation_id, full_name, added_at) VALUES (90, 9, 'other/x', ?)",
        (now,),
    )
    for inst, repo in ((2, "Codertocat/Hello-World"), (9, "other/x")):
        rid = c.execute(
            "INSERT INTO reviews (installation_id, repo, pr, head_sha, created_at)"
            " VALUES (?, ?, 1, 'abc', ?)",
            (inst, repo, now),
        ).lastrowid
        fid = c.execute(
            "INSERT INTO findings"
            " (review_id, installation_id, repo, pr, body, decision, fingerprint, created_at)"
            " VALUES (?, ?, ?, 1, 'b', 'post', 'fp', ?)",
            (rid, inst, repo, now),
        ).lastrowid
        c.execute(
            "INSERT INTO feedback (finding_id, installation_id, repo, label, source, at)"
            " VALUES (?, ?, ?, 'accepted', 'reaction', ?)",
            (fid, inst, repo, now),
        )
        c.execute(
            "INSERT INTO model_versions (installation_id, scope, version, params, created_at)"
            " VALUES (?, ?, 1, '{}', ?)",
            (inst, f"repo:{repo}", now),
        )
        queue.enqueue("review", {}, installation_id=inst, repo=repo, pr=1)
    _installation_job(queue, fixtures_dir, "installation.deleted", installation_id=2)
    handlers["review"] = _never
    await make_worker(queue, handlers, concurrency=1).run_until_idle()
    for table in ("reviews", "findings", "feedback", "model_versions", "repositories"):
        assert {r[0] for r in c.execute(f"SELECT installation_id FROM {table}")} == {9}, table
    assert c.execute("SELECT id FROM installations").fetchall() == [(9,)]
    assert {r[0] for r in c.execute("SELECT DISTINCT installation_id FROM jobs")} == {2, 9}
    assert c.execute("SELECT kind FROM jobs WHERE installation_id = 2").fetchall() == [("installation",)]


async def _never(job: Job) -> None:
    raise AssertionError("a review of the uninstalled tenant ran" if job.installation_id == 2 else "")


# --- logs ----------------------------------------------------------------------------------------


async def test_job_logs_are_json_with_context_and_secrets_redacted(queue: JobQueue) -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", stream, secrets=["sk-very-secret-key"])
    try:
        log = logging.getLogger("reviewbot.test")

        async def handle(job: Job) -> None:
            log.info("calling the LLM with key sk-very-secret-key", extra={"tokens": 12})

        queue.enqueue("x", {}, repo="acme/api", pr=42)
        await make_worker(queue, {"x": handle}).run_until_idle()
        with log_context(delivery_id="d-9"):
            try:
                raise ValueError("token sk-very-secret-key rejected")
            except ValueError:
                log.exception("oops")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert "sk-very-secret-key" not in stream.getvalue()
    mine = [ln for ln in lines if ln["logger"] == "reviewbot.test"]
    first = mine[0]
    assert first["msg"] == "calling the LLM with key [REDACTED]" and first["tokens"] == 12
    assert first["repo"] == "acme/api" and first["pr"] == 42 and first["job_id"] >= 1
    assert {"ts", "level", "logger", "msg"} <= set(first)
    assert mine[1]["delivery_id"] == "d-9" and "job_id" not in mine[1]
    assert "[REDACTED]" in mine[1]["exc"] and "ValueError" in mine[1]["exc"]
    done = [ln for ln in lines if ln["msg"] == "job done"]
    assert done and done[0]["repo"] == "acme/api"


# --- the command and the metrics helpers ---------------------------------------------------------


def test_reviewbot_worker_once_subprocess(tmp_path: Path, fixtures_dir: Path) -> None:
    """`reviewbot worker --once` against a database the server wrote: runs the built-in jobs and
    dead-letters a kind it has no handler for, naming it."""
    import os
    import subprocess
    import sys

    db = tmp_path / "rb.db"
    st = Store.open(db)
    q = JobQueue(st)
    _installation_job(q, fixtures_dir, "installation.created")
    q.enqueue("command.pause", _command("pause"), installation_id=7)
    unknown = q.enqueue("not-a-kind", {})
    st.close()
    from tests.fakes.fake_github import FakeGitHub, generate_app_key

    priv, pub = generate_app_key()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWBOT_")}
    env.update(
        REVIEWBOT_DATABASE_PATH=str(db),
        REVIEWBOT_LOG_LEVEL="WARNING",
        REVIEWBOT_GITHUB_APP_ID="42",
        REVIEWBOT_GITHUB_PRIVATE_KEY=priv,
    )
    with FakeGitHub(app_id=42, app_public_key=pub) as github:
        env["REVIEWBOT_GITHUB_API_URL"] = github.base_url
        p = subprocess.run(
            [sys.executable, "-m", "reviewbot", "worker", "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert p.returncode == 0, p.stderr
    assert "processed 3 job(s)" in p.stdout
    st = Store.open(db)
    try:
        q = JobQueue(st)
        assert is_paused(st, "acme/api")
        assert st.conn.execute("SELECT id, account FROM installations ORDER BY id").fetchall() == [
            (7, "acme"),
            (957387, "Codertocat"),
        ]
        job = q.get(unknown)
        assert job.state == "dead" and "no handler for job kind 'not-a-kind'" in job.last_error
    finally:
        st.close()


def test_metrics_helpers() -> None:
    from reviewbot.core.domain import Funnel, LLMUsage

    m = Metrics(CollectorRegistry())
    funnel = Funnel(candidates=7, posted=2)
    funnel.drop("low_score", 4)
    funnel.drop("duplicate")
    m.record_funnel("acme/api", funnel)
    m.record_llm_usage(LLMUsage(requests=3, prompt_tokens=100, completion_tokens=20, errors=1))
    m.record_github_call("post", 422, rate_remaining=4990, installation_id=7)
    with m.stage("llm"):
        pass
    m.observe_stage_timings({"fetch": 0.2, "unknown": 1.0})
    with pytest.raises(ValueError), m.stage("nope"):
        pass
    v = m.registry.get_sample_value
    assert v("reviewbot_funnel_candidates_total", {"repo": "acme/api"}) == 7
    assert v("reviewbot_funnel_posted_total", {"repo": "acme/api"}) == 2
    assert v("reviewbot_funnel_suppressed_total", {"repo": "acme/api", "reason": "low_score"}) == 4
    assert v("reviewbot_llm_tokens_total", {"kind": "prompt"}) == 100
    assert v("reviewbot_llm_errors_total", {"kind": "request"}) == 1
    assert v("reviewbot_github_api_calls_total", {"method": "POST", "status": "422"}) == 1
    assert v("reviewbot_github_rate_limit_remaining", {"installation": "7"}) == 4990
    assert v("reviewbot_stage_seconds_count", {"stage": "llm"}) == 1
    assert v("reviewbot_stage_seconds_count", {"stage": "fetch"}) == 1
    assert b"reviewbot_funnel_suppressed_total" in m.render()


def test_log_record_with_bad_args_is_not_lost() -> None:
    from reviewbot.app.logs import JsonFormatter, RedactSecrets

    record = logging.LogRecord("reviewbot.test", logging.INFO, __file__, 1, "two %s %s", ("hunter22",), None)
    assert RedactSecrets(["hunter22"]).filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert "two" in line["msg"] and "hunter22" not in line["msg"] and "[REDACTED]" in line["msg"]
