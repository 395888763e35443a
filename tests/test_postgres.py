"""PostgreSQL only: what SQLite cannot show. Two `reviewbot worker` processes on one database, one
SIGKILLed mid-review; claims racing on row locks with the per-installation limit; workers woken
by LISTEN/NOTIFY. Skipped, saying why, when no PostgreSQL is available (tests/pg_cluster.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reviewbot.app.dialect import CommitUnknown, ConnectionLost
from reviewbot.app.queue import Job, JobQueue
from reviewbot.app.store import Store
from reviewbot.app.worker import Worker
from tests.test_app_e2e import CONFIG, INSTALLATION, REPO, ROOT, World, module, wait_until, worker_env


@pytest.fixture
def bare_world(tmp_path: Path, database: str) -> Iterator[World]:
    w = World(tmp_path, database=database)  # the workers are subprocesses
    yield w
    w.close()


def test_two_workers_one_sigkilled_mid_review_exactly_one_review_and_nothing_lost(bare_world: World) -> None:
    """Two `reviewbot worker` processes share the database. Two PRs are reviewed; the worker
    holding the first review is SIGKILLed while the (slow) model answers it. Once its lease runs
    out (moved to the past: production leases are 120 s) the other worker takes the job over:
    exactly one review per head SHA on GitHub, every job done, none lost, none run twice."""
    w = bare_world
    files = {**CONFIG, "a.py": module(20)}
    w.gh.add_repo(REPO, INSTALLATION, files)
    pulls = [w.gh.add_pull(REPO, n, head_files={"a.py": module(20, {3 + n: f"a{n}"})}) for n in (1, 2)]
    w.llm.latency = 30  # the first review's model call: the worker dies waiting for it
    env = worker_env(w)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "reviewbot", "worker"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for pr in pulls:
            w.deliver("pull_request", w.pr_event("opened", pr))
        wait_until(lambda: w.llm.in_flight > 0 or any(p.poll() is not None for p in procs), timeout=90)
        assert all(p.poll() is None for p in procs), [p.stderr.read().decode() for p in procs if p.stderr]
        [(job_id, owner)] = w.rows("SELECT id, lease_owner FROM jobs WHERE state = 'running'")
        [victim] = [p for p in procs if owner.endswith(f"-{p.pid}")]
        [survivor] = [p for p in procs if p is not victim]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        w.llm.latency = 0
        w.rows("UPDATE jobs SET lease_expires_at = '2000-01-01T00:00:00.000000+00:00' WHERE id = ?", job_id)
        wait_until(
            lambda: (
                w.rows("SELECT COUNT(*) FROM jobs WHERE kind = 'review' AND state = 'done'") == [(2,)]
                or survivor.poll() is not None
            ),
            timeout=120,
        )
        assert survivor.poll() is None, survivor.stderr.read().decode() if survivor.stderr else ""
        [(state, attempts, lease_losses, last_owner)] = w.rows(
            "SELECT state, attempts, lease_losses, lease_owner FROM jobs WHERE id = ?", job_id
        )
        assert (state, attempts, lease_losses) == ("done", 2, 1)  # taken over once, after the kill
        assert w.rows("SELECT state, COUNT(*) FROM jobs GROUP BY state") == [("done", 2)]  # 0 lost
        for pr in pulls:
            reviews = [r for r in w.reviews(pr.number) if r["commit_id"] == pr.head_sha]
            assert len(reviews) == 1, f"PR {pr.number}: {len(reviews)} reviews for one head SHA"
            assert len(reviews[0]["comments"]) == 1
        assert sorted(r[0] for r in w.rows("SELECT pr FROM reviews WHERE state = 'posted'")) == [1, 2]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def test_racing_claims_respect_the_per_installation_limit(database: str) -> None:
    """Eight claimers, each on its own connection (as workers on eight hosts), claim at once from
    two installations' backlogs with a limit of one each: two jobs run, one per installation."""
    setup = Store.open(database)
    q0 = JobQueue(setup)
    for i in range(20):
        q0.enqueue("review", {"i": i}, installation_id=1 + i % 2, repo=f"o/r{i % 2}", pr=i)
    stores = [Store.open(database) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    claimed: list[Job] = []
    lock = threading.Lock()

    def claim(store: Store, name: str) -> None:
        barrier.wait()
        job = JobQueue(store).claim(name, per_installation_limit=1)
        if job is not None:
            with lock:
                claimed.append(job)

    threads = [threading.Thread(target=claim, args=(s, f"w{i}")) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert len(claimed) <= 2 and len({j.installation_id for j in claimed}) == len(claimed)
        running = setup.conn.execute(
            "SELECT installation_id, COUNT(*) FROM jobs WHERE state = 'running' GROUP BY installation_id"
        ).fetchall()
        assert all(n == 1 for _, n in running)
        # a claimer that lost the race for an installation's lock passed it over; the next claim
        # (nobody racing) finds whichever installation is still free
        while (job := q0.claim("late", per_installation_limit=1)) is not None:
            claimed.append(job)
        assert sorted(j.installation_id for j in claimed) == [1, 2]
    finally:
        for s in [*stores, setup]:
            s.close()


def test_a_worker_is_woken_by_notify_not_by_its_poll(database: str) -> None:
    """A worker polling every 30 s starts a job enqueued by another process (its own connection)
    within a second: the enqueue's NOTIFY, delivered on COMMIT, wakes it."""
    store = Store.open(database)
    producer = Store.open(database)
    started: list[float] = []

    async def handle(job: Job) -> None:
        started.append(time.monotonic())

    worker = Worker(JobQueue(store), {"echo": handle}, worker_id="w", poll_interval=30, heartbeat_interval=5)

    async def main() -> float:
        run = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)  # the worker is waiting on its poll (nothing queued)
        t0 = time.monotonic()
        await asyncio.to_thread(JobQueue(producer).enqueue, "echo", {})
        while not started and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.01)
        worker.stop()
        await run
        return (started[0] - t0) if started else float("inf")

    try:
        waited = asyncio.run(main())
        assert waited < 1.0, f"the worker started the job after {waited:.2f} s"
    finally:
        store.close()
        producer.close()


def terminate_backends(url: str) -> int:
    """Terminate every other session on the database (what a failover, a restart or a proxy's
    idle timeout does to a process's connections) and wait until they are gone."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_a_backend_terminated_between_two_operations_costs_the_next_one_nothing(database: str) -> None:
    """Each store operation after its connection was terminated while idle succeeds: the pool
    replaces the dead connection before running anything on it."""
    store = Store.open(database)
    queue = JobQueue(store)
    try:
        queue.enqueue("echo", {"n": 1})
        assert terminate_backends(database) >= 1
        assert store.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1  # a read
        terminate_backends(database)
        queue.enqueue("echo", {"n": 2})  # a transaction
        terminate_backends(database)
        job = queue.claim("w")  # a transaction with row locks
        assert job is not None
        terminate_backends(database)
        assert queue.complete(job)  # a write outside a transaction
        assert queue.counts() == {"done": 1, "queued": 1}
    finally:
        store.close()


def test_a_transaction_whose_connection_dies_before_commit_runs_once_more(database: str) -> None:
    """The connection dies in the middle of a transaction: PostgreSQL rolled it back, so
    `run_transaction` runs it again on a fresh connection: its writes land exactly once."""
    store = Store.open(database)
    runs: list[int] = []

    def body(conn: Any) -> int:
        runs.append(1)
        conn.execute("INSERT INTO heartbeats (worker, at) VALUES (?, ?)", (f"w{len(runs)}", "now"))
        if len(runs) == 1:
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())").fetchone()  # dies under the body
        return len(runs)

    try:
        assert store.run_transaction(body) == 2
        assert store.conn.execute("SELECT worker FROM heartbeats").fetchall() == [("w2",)]
    finally:
        store.close()


def test_a_connection_dying_in_commit_is_not_run_again(database: str) -> None:
    """A death during COMMIT may have come after the commit: CommitUnknown, and the body is not
    run a second time (a deferred trigger terminates the backend while it commits)."""
    store = Store.open(database)
    store.conn.execute("CREATE TABLE doomed (x INTEGER)")
    store.conn.execute(
        "CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$"
    )
    store.conn.execute(
        "CREATE CONSTRAINT TRIGGER die_at_commit AFTER INSERT ON doomed "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION die()"
    )
    runs: list[int] = []

    def body(conn: Any) -> None:
        runs.append(1)
        conn.execute("INSERT INTO doomed (x) VALUES (1)")

    try:
        with pytest.raises(CommitUnknown):
            store.run_transaction(body)
        assert len(runs) == 1
        assert store.conn.execute("SELECT COUNT(*) FROM doomed").fetchone()[0] == 0
    finally:
        store.close()


def test_a_write_whose_connection_dies_under_it_is_not_run_again(database: str) -> None:
    """A write outside a transaction cannot know whether it committed when its connection dies
    under it: it raises the store's ConnectionLost (a sqlite3.OperationalError), and the next
    operation runs on a fresh connection. A read is simply run again."""
    store = Store.open(database)
    try:
        with pytest.raises(ConnectionLost):
            store.conn.execute(
                "INSERT INTO heartbeats (worker, at) SELECT 'w', 'now' "
                "WHERE pg_terminate_backend(pg_backend_pid())"
            )
        assert isinstance(ConnectionLost(), sqlite3.OperationalError)
        assert store.conn.execute("SELECT COUNT(*) FROM heartbeats").fetchone()[0] == 0
        store.conn.execute("CREATE SEQUENCE once")
        # dies the first time only (a sequence is not rolled back): the read's second run answers
        read = "SELECT CASE WHEN nextval('once') = 1 THEN pg_terminate_backend(pg_backend_pid()) END, 7"
        assert store.conn.execute(read).fetchone() == (None, 7)
    finally:
        store.close()


def test_the_server_acks_and_the_worker_claims_across_terminated_backends(
    tmp_path: Path, database: str
) -> None:
    """Every session of the server and of its worker is terminated (a PostgreSQL failover)
    between two pull requests: the second delivery is acknowledged and stored, and the worker
    claims and reviews it."""
    w = World(tmp_path, database=database)
    try:
        w.gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(20)})
        w.start_worker()
        pulls = [w.gh.add_pull(REPO, n, head_files={"a.py": module(20, {3 + n: f"a{n}"})}) for n in (1, 2)]
        w.deliver("pull_request", w.pr_event("opened", pulls[0]))
        w.settle(60)
        assert terminate_backends(database) >= 2  # the server's, the worker's, its LISTEN
        r = w.deliver("pull_request", w.pr_event("opened", pulls[1]))
        assert r.status_code in (200, 202)
        w.settle(60)
        assert sorted(r[0] for r in w.rows("SELECT pr FROM reviews WHERE state = 'posted'")) == [1, 2]
        assert w.rows("SELECT state, COUNT(*) FROM jobs GROUP BY state") == [("done", 2)]
    finally:
        w.close()
