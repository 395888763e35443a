"""reviewbot.app.job_process through the real Worker and queue: handlers in spawned child processes, a
per-job timeout that kills a job frozen inside one C call (a backtracking regex holds the GIL),
while another installation's job runs to completion; a job that kills its process is failed, then
dead-lettered, with that reason; metrics recorded in the child reach the parent's registry."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from reviewbot.app.job_process import JobProcessPool, MetricsRecorder, replay
from reviewbot.app.metrics import Metrics
from reviewbot.app.queue import Job, JobQueue
from reviewbot.app.store import Store
from reviewbot.app.worker import Handler, PermanentJobError, Worker


def pool_handlers(marker_dir: str, *, metrics: Any) -> dict[str, Handler]:
    """Built in the child (spawn imports this module by name)."""

    async def ok(job: Job) -> None:
        metrics.review_seconds.observe(1.5)
        Path(marker_dir, f"done-{job.id}").write_text(str(os.getpid()))

    async def boom(job: Job) -> None:
        raise RuntimeError("GitHub said 502")

    async def permanent(job: Job) -> None:
        raise PermanentJobError("the PR is gone")

    async def spin(job: Job) -> None:
        Path(marker_dir, f"spinning-{job.id}").write_text(str(os.getpid()))
        re.match(r"(a+)+$", "a" * 64 + "b")  # exponential, inside one C call: the GIL is held

    async def die(job: Job) -> None:
        os._exit(3)

    return {"ok": ok, "boom": boom, "permanent": permanent, "spin": spin, "die": die}


def run_worker(queue: JobQueue, pool: JobProcessPool, *, until: Any, limit: float = 90) -> None:
    """The real Worker with the pool's handlers (the pool times the jobs, as `serve` wires it)."""
    worker = Worker(
        queue,
        pool.handlers(["ok", "boom", "permanent", "spin", "die"]),
        worker_id="w",
        concurrency=2,
        per_installation_limit=1,
        heartbeat_interval=0.2,
        poll_interval=0.05,
    )

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + limit
        while not until() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        worker.stop()
        await task

    try:
        asyncio.run(main())
    finally:
        pool.close()


def test_results_errors_and_metrics_cross_the_process_boundary(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "q.db")
    queue = JobQueue(store, backoff_base=3600)
    metrics = Metrics(CollectorRegistry())
    pool = JobProcessPool(pool_handlers, (str(tmp_path),), size=2, metrics=metrics)
    kinds = ["ok", "boom", "permanent"]
    ids = {kind: queue.enqueue(kind, {}, installation_id=i) for i, kind in enumerate(kinds)}

    def settled() -> bool:
        return all(queue.get(i).state != "queued" and queue.get(i).state != "running" for i in ids.values())

    run_worker(queue, pool, until=settled)
    assert queue.get(ids["ok"]).state == "done"
    assert int((tmp_path / f"done-{ids['ok']}").read_text()) != os.getpid()  # ran in a child
    boom = queue.get(ids["boom"])
    assert boom.state == "queued" and "RuntimeError: GitHub said 502" in (boom.last_error or "")
    perm = queue.get(ids["permanent"])
    assert perm.state == "dead" and "the PR is gone" in (perm.last_error or "")
    assert metrics.review_seconds._sum.get() == 1.5  # observed in the child, replayed here
    store.close()


def test_a_frozen_job_is_killed_at_the_timeout_while_another_tenant_is_served(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "q.db")
    queue = JobQueue(store, backoff_base=3600)
    pool = JobProcessPool(pool_handlers, (str(tmp_path),), size=2, timeout=4)
    pool.prewarm(2)  # the timeout starts when a ready process has the job, never before
    frozen = queue.enqueue("spin", {}, installation_id=1)
    started = time.monotonic()

    def spinning() -> bool:
        return (tmp_path / f"spinning-{frozen}").exists()

    holder: dict[str, float] = {}

    def until() -> bool:
        if spinning() and "other" not in holder:
            holder["other"] = queue.enqueue("ok", {}, installation_id=2)
            holder["at"] = time.monotonic()
        return queue.get(frozen).state != "running" and spinning()

    run_worker(queue, pool, until=until)
    other = int(holder["other"])
    assert queue.get(other).state == "done"
    done_after = (tmp_path / f"done-{other}").stat().st_mtime
    assert done_after - (time.time() - (time.monotonic() - holder["at"])) < 3  # not behind the frozen job
    job = queue.get(frozen)
    assert job.state == "queued"
    assert job.last_error == "TimeoutError: job timed out after 4s; its process was killed"
    assert time.monotonic() - started < 30
    spinner = int((tmp_path / f"spinning-{frozen}").read_text())
    time.sleep(0.2)
    assert not _alive(spinner), "the frozen job's process was not killed"
    store.close()


def test_a_job_that_kills_its_process_is_dead_lettered_with_that_reason(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "q.db")
    queue = JobQueue(store, max_attempts=2, backoff_base=0.01)
    pool = JobProcessPool(pool_handlers, (str(tmp_path),), size=1)
    job_id = queue.enqueue("die", {}, installation_id=1)
    run_worker(queue, pool, until=lambda: queue.get(job_id).state == "dead")
    job = queue.get(job_id)
    assert job.state == "dead" and "the job's process died (exit code 3)" in (job.last_error or "")
    assert pool.started == 2  # a fresh process for the second attempt
    store.close()


def test_the_metrics_recorder_replays_call_chains() -> None:
    rec = MetricsRecorder()
    rec.jobs.labels(kind="review", outcome="done").inc()
    rec.review_seconds.observe(2.0)
    metrics = Metrics(CollectorRegistry())
    replay(metrics, rec.drain())
    assert metrics.jobs.labels(kind="review", outcome="done")._value.get() == 1
    assert metrics.review_seconds._sum.get() == 2.0 and rec.drain() == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
