"""The queue on PostgreSQL: do more worker processes drain it faster?

Three cases, each with 1 and then 4 worker processes on one PostgreSQL database (measured side by
side in one run; the workers are started and connected before the clock starts):

- no-op jobs: the job does nothing; a worker claims (FOR UPDATE SKIP LOCKED) and completes. This
  measures the database's claim throughput (round trips and row locks), not the job's work; on a
  machine with fewer cores than workers + PostgreSQL backends it is CPU-bound.
- sleeping jobs: the job sleeps `--sleep` seconds (I/O-bound, like waiting for an LLM): the scaling
  the queue exists for.
- end-to-end reviews: real `reviewbot worker` processes (concurrency 1 each) review PRs through the
  fake GitHub and a fake LLM that takes `--llm-latency` seconds per call.

Targets (issue #14): 4 workers drain no-op jobs >= 3x faster than 1, and end-to-end reviews with a
1 s fake LLM scale >= 3x. Exits 1 when a target is missed. PostgreSQL: REVIEWBOT_TEST_DATABASE_URL
(a server where the user may CREATE DATABASE), or a throwaway cluster started here
(tests/pg_cluster.py) when initdb/pg_ctl are installed.

    .venv/bin/python bench/queue_pg.py --write
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from reviewbot.queue import JobQueue  # noqa: E402
from reviewbot.store import Store  # noqa: E402
from tests.pg_cluster import Cluster, cluster_from_env  # noqa: E402

TARGET = 3.0


def _drain(url: str, start: Any, sleep: float, counts: Any, index: int) -> None:
    """One worker process: claim and complete until nothing is runnable."""
    store = Store.open(url, migrate_now=False)
    queue = JobQueue(store)
    name = f"bench-{os.getpid()}"
    start.wait()
    done = 0
    while (job := queue.claim(name, per_installation_limit=1)) is not None:
        if sleep:
            time.sleep(sleep)
        queue.complete(job)
        done += 1
    counts[index] = done
    store.close()


def drain_seconds(cluster: Cluster, workers: int, jobs: int, sleep: float) -> float:
    url = cluster.fresh_database()
    store = Store.open(url)
    q = JobQueue(store)
    with store.transaction() as conn:
        for i in range(jobs):
            q.enqueue_in(conn, "noop", {"i": i}, installation_id=i % 50)
    ctx = mp.get_context("fork")
    start = ctx.Event()
    counts = ctx.Array("i", workers)
    procs = [ctx.Process(target=_drain, args=(url, start, sleep, counts, i)) for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # connected and waiting
    t0 = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    took = time.perf_counter() - t0
    left = q.counts()
    store.close()
    cluster.drop(url)
    if sum(counts) != jobs or left != {"done": jobs}:
        raise SystemExit(f"lost or doubled jobs: ran {sum(counts)} of {jobs}, states {left}")
    return took


DONE = "SELECT COUNT(*) FROM jobs WHERE kind = 'review' AND state = 'done'"


def wait_done(w: Any, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while w.rows(DONE) != [(n,)]:
        if time.monotonic() > deadline:
            raise SystemExit(f"reviews did not finish: {w.rows('SELECT state, last_error FROM jobs')}")
        time.sleep(0.05)


def review_seconds(cluster: Cluster, workers: int, prs: int, llm_latency: float, tmp: Path) -> float:
    """`workers` real `reviewbot worker` processes review `prs` PRs; seconds from the first
    delivery to the last review done."""
    from tests.test_app_e2e import CONFIG, INSTALLATION, REPO, World, module, worker_env

    url = cluster.fresh_database()
    w = World(tmp / f"reviews-{workers}", database=url)
    try:
        w.gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(20)})
        every = [
            w.gh.add_pull(REPO, n, head_files={"a.py": module(20, {3: f"a{n}"})})
            for n in range(1, prs + workers + 1)
        ]
        warmup, pulls = every[prs:], every[:prs]
        w.llm.latency = llm_latency
        env = {
            **worker_env(w),
            "REVIEWBOT_WORKER_CONCURRENCY": "1",
            "REVIEWBOT_PER_INSTALLATION_CONCURRENCY": str(prs),
        }
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "reviewbot", "worker"],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            for _ in range(workers)
        ]
        try:
            deadline = time.monotonic() + 120
            while len(w.rows("SELECT worker FROM heartbeats")) < workers:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise SystemExit(
                        "workers did not start: "
                        + " ".join(
                            p.stderr.read().decode()[-500:]
                            for p in procs
                            if p.poll() is not None and p.stderr
                        )
                    )
                time.sleep(0.1)
            # a first review per worker, untimed: job processes started, code paths warm
            for pr in warmup:
                w.deliver("pull_request", w.pr_event("opened", pr))
            wait_done(w, workers, 300)
            time.sleep(1.0)
            t0 = time.perf_counter()
            for pr in pulls:
                w.deliver("pull_request", w.pr_event("opened", pr))
            while w.rows(DONE) != [(prs + workers,)]:
                if time.perf_counter() - t0 > 600:
                    raise SystemExit(
                        f"reviews did not finish: {w.rows('SELECT state, last_error FROM jobs')}"
                    )
                time.sleep(0.05)
            took = time.perf_counter() - t0
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
        posted = [len(w.reviews(pr.number)) for pr in pulls]
        if posted != [1] * prs:
            raise SystemExit(f"reviews per PR: {posted}")
        return took
    finally:
        w.close()
        cluster.drop(url)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000, help="no-op jobs per run")
    parser.add_argument("--sleep-jobs", type=int, default=200, help="sleeping jobs per run")
    parser.add_argument("--sleep", type=float, default=0.05, help="seconds a sleeping job sleeps")
    parser.add_argument("--prs", type=int, default=8, help="PRs reviewed per end-to-end run")
    parser.add_argument("--llm-latency", type=float, default=1.0, help="seconds per fake LLM call")
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    args = parser.parse_args()

    cluster, why = cluster_from_env()
    if cluster is None:
        print(f"no PostgreSQL: {why}", file=sys.stderr)
        return 2
    import tempfile

    rows: list[tuple[str, float, float, bool | None]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for label, fn, gated in (
                (f"no-op jobs ({args.jobs})", lambda n: drain_seconds(cluster, n, args.jobs, 0.0), True),
                (
                    f"jobs sleeping {args.sleep * 1000:.0f} ms ({args.sleep_jobs})",
                    lambda n: drain_seconds(cluster, n, args.sleep_jobs, args.sleep),
                    None,
                ),
                (
                    f"end-to-end reviews, {args.llm_latency:g} s fake LLM ({args.prs} PRs)",
                    lambda n: review_seconds(cluster, n, args.prs, args.llm_latency, Path(tmp)),
                    True,
                ),
            ):
                one, four = fn(1), fn(4)
                rows.append((label, one, four, gated))
                print(f"{label}: 1 worker {one:.2f} s, 4 workers {four:.2f} s, {one / four:.2f}x", flush=True)
    finally:
        cluster.stop()
    ok = all(one / four >= TARGET for _, one, four, gated in rows if gated)
    if args.write:
        from benchmarks_md import write_section

        write_section("## Queue on PostgreSQL", _section(rows, ok, args))
    print("PASS" if ok else "MISSED", f"(target: 4 workers >= {TARGET:g}x one)")
    return 0 if ok else 1


def _section(rows: list[tuple[str, float, float, bool | None]], ok: bool, args: argparse.Namespace) -> str:
    load = os.getloadavg()
    lines = [
        "## Queue on PostgreSQL",
        "",
        "`.venv/bin/python bench/queue_pg.py --write` (a throwaway PostgreSQL cluster, or "
        "REVIEWBOT_TEST_DATABASE_URL): the same backlog drained by 1 and by 4 worker processes on one "
        "database, side by side in one run; workers connected before the clock starts. No-op jobs "
        "do nothing (claim + complete: the database's lock throughput); sleeping jobs sleep "
        f"{args.sleep * 1000:.0f} ms (I/O-bound, like an LLM call); end-to-end reviews are real "
        "`reviewbot worker` processes (concurrency 1) against the fake GitHub and fake LLM. Target "
        f"(issue #14): 4 workers >= {TARGET:g}x faster than 1 for no-op jobs and end-to-end reviews.",
        "",
        "| case | 1 worker | 4 workers | speed-up | target |",
        "|---|---|---|---|---|",
    ]
    for label, one, four, gated in rows:
        verdict = "" if not gated else ("pass" if one / four >= TARGET else "**missed**")
        lines.append(
            f"| {label} | {one:.2f} s | {four:.2f} s | {one / four:.2f}x | "
            f"{f'>= {TARGET:g}x ' + verdict if gated else 'reported'} |"
        )
    lines += [
        "",
        f"Result: **{'PASS' if ok else 'MISSED'}**. Measured on {os.cpu_count()} cores, load average "
        f"{load[0]:.1f} at the end (the machine is shared).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
