"""queue.py: leases, reclaim after a dead worker, retries with backoff, dead letters, supersession,
per-installation limits. Time is a fake clock: nothing sleeps."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from reviewbot.app.queue import Delivery, JobQueue, iso
from reviewbot.app.store import BUSY_TIMEOUT_MS, WRITE_LOCK_KEY, Store
from tests.fakes.clock import ManualClock

Clock = ManualClock


@pytest.fixture
def queue(store: Store, clock: Clock) -> JobQueue:
    return JobQueue(store, clock=clock, lease_seconds=60, max_attempts=3, max_lease_losses=5, backoff_base=10)


def review(
    queue: JobQueue,
    pr: int = 1,
    sha: str = "a" * 40,
    inst: int = 1,
    repo: str = "o/r",
    at: float | None = None,
) -> int:
    """A review job; `at` is the PR's updated_at in the event (epoch seconds): head recency."""
    return queue.enqueue(
        "review",
        {"sha": sha},
        installation_id=inst,
        repo=repo,
        pr=pr,
        head_sha=sha,
        dedupe_key=f"review:{repo}#{pr}@{sha}",
        head_at=None if at is None else iso(at),
    )


def test_enqueue_claim_complete(queue: JobQueue) -> None:
    job_id = review(queue)
    assert queue.depth() == 1
    job = queue.claim("w1")
    assert job is not None and job.id == job_id and job.state == "running" and job.attempts == 1
    assert job.payload == {"sha": "a" * 40} and job.lease_owner == "w1"
    assert queue.claim("w2") is None  # leased
    assert queue.complete(job)
    assert queue.get(job_id).state == "done" and queue.depth() == 0
    assert not queue.complete(job)  # idempotent: nothing held any more


def test_dedupe_key_returns_the_live_job(queue: JobQueue) -> None:
    first = review(queue)
    assert review(queue) == first
    assert queue.counts() == {"queued": 1}
    job = queue.claim("w1")
    assert review(queue) == first  # still live while running
    queue.complete(job)
    assert review(queue) != first  # done: the same work may be asked for again


def test_newer_review_supersedes_queued_older_one(queue: JobQueue) -> None:
    old = review(queue, sha="a" * 40, at=1000)
    other_pr = review(queue, pr=2, sha="c" * 40, at=1001)
    new = review(queue, sha="b" * 40, at=1002)
    assert queue.get(old).state == "superseded"
    assert queue.get(other_pr).state == "queued"
    row = queue.store.conn.execute("SELECT superseded_by FROM jobs WHERE id = ?", (old,)).fetchone()
    assert row[0] == new
    claimed = [queue.claim("w1", per_installation_limit=None), queue.claim("w1", per_installation_limit=None)]
    assert {j.id for j in claimed} == {other_pr, new}


def test_an_older_head_arriving_late_never_cancels_a_newer_one(queue: JobQueue) -> None:
    """Issue #11 item 5: `synchronize` (head B) then a late `opened` (head A, older updated_at):
    arrival order used to decide, and A's job cancelled B's, so neither head was reviewed."""
    newer = review(queue, sha="b" * 40, at=2000)
    late_old = review(queue, sha="a" * 40, at=1000)
    assert queue.get(newer).state == "queued"
    assert queue.get(late_old).state == "superseded"
    row = queue.store.conn.execute("SELECT superseded_by FROM jobs WHERE id = ?", (late_old,)).fetchone()
    assert row[0] == newer
    # redelivering the old event again, even while the newer head's job runs, changes nothing
    job = queue.claim("w1")
    assert job.id == newer
    assert queue.get(review(queue, sha="a" * 40, at=1000)).state == "superseded"
    assert queue.get(newer).state == "running"


def test_without_head_recency_nothing_is_superseded(queue: JobQueue) -> None:
    """No updated_at in the event: both stay queued (the handler skips a head that moved on)."""
    first = review(queue, sha="a" * 40)
    second = review(queue, sha="b" * 40)
    assert queue.get(first).state == queue.get(second).state == "queued"


def test_running_review_is_not_superseded(queue: JobQueue) -> None:
    old = review(queue, sha="a" * 40, at=1000)
    job = queue.claim("w1")
    review(queue, sha="b" * 40, at=1001)
    assert queue.get(old).state == "running"
    assert queue.complete(job)


def test_expired_lease_of_dead_worker_is_reclaimed(queue: JobQueue, clock: Clock) -> None:
    job_id = review(queue)
    dead = queue.claim("w-dead")
    clock.advance(59)
    assert queue.claim("w2") is None
    clock.advance(2)  # the lease ran out: w-dead never heartbeated
    again = queue.claim("w2")
    assert again is not None and again.id == job_id and again.attempts == 2 and again.lease_owner == "w2"
    # The dead worker coming back cannot finish or extend what it no longer holds.
    assert not queue.heartbeat(dead)
    assert not queue.complete(dead)
    assert queue.fail(dead, "late") is None
    assert queue.complete(again)


def test_heartbeat_extends_the_lease(queue: JobQueue, clock: Clock) -> None:
    review(queue)
    job = queue.claim("w1")
    for _ in range(5):
        clock.advance(50)
        assert queue.heartbeat(job)
        assert queue.claim("w2") is None
    assert queue.complete(job)


def test_retry_with_exponential_backoff_then_dead_letter(queue: JobQueue, clock: Clock) -> None:
    job_id = review(queue)
    job = queue.claim("w1")
    for attempt, backoff in ((1, 10), (2, 20)):
        assert job.attempts == attempt
        assert queue.fail(job, f"boom {attempt}") == "queued"
        row = queue.get(job_id)
        assert row.state == "queued" and row.last_error == f"boom {attempt}"
        clock.advance(backoff - 0.5)
        assert queue.claim("w1") is None  # still backing off
        clock.advance(0.5)
        job = queue.claim("w1")
        assert job is not None and job.id == job_id
    assert job.attempts == 3
    assert queue.fail(job, "boom 3") == "dead"
    dead = queue.dead_letters()
    assert [d.id for d in dead] == [job_id]
    assert "boom 3" in dead[0].last_error and "3 attempts" in dead[0].last_error
    clock.advance(10_000)
    assert queue.claim("w1") is None
    assert queue.backoff(1) == 10 and queue.backoff(2) == 20 and queue.backoff(30) == queue.backoff_max


def test_permanent_failure_dead_letters_at_once(queue: JobQueue) -> None:
    job_id = review(queue)
    job = queue.claim("w1")
    assert queue.fail(job, "PR is gone", permanent=True) == "dead"
    assert queue.get(job_id).last_error == "PR is gone" and queue.get(job_id).attempts == 1
    assert queue.retry_dead(job_id)
    assert queue.get(job_id).state == "queued" and queue.get(job_id).attempts == 0


def test_a_job_that_keeps_killing_its_worker_is_dead_lettered(queue: JobQueue, clock: Clock) -> None:
    job_id = review(queue)
    for _ in range(queue.max_lease_losses):
        assert queue.claim("w") is not None
        clock.advance(61)  # the worker died mid-job
    assert queue.claim("w") is None
    job = queue.get(job_id)
    assert job.state == "dead" and job.last_error.startswith("poison: the lease ran out 5 times")
    assert "failed attempts: 0" in job.last_error


def test_lost_leases_are_bad_luck_not_failed_attempts(queue: JobQueue, clock: Clock) -> None:
    """Issue #11 item 8: with workers killed often, every death counted as an attempt and healthy
    jobs were dead-lettered ("lease expired after attempt 5 of 5 ... last error: None")."""
    job_id = review(queue)
    for _ in range(queue.max_attempts + 1):  # more deaths than max_attempts
        assert queue.claim("w") is not None
        clock.advance(61)
    job = queue.claim("w")
    assert job is not None and job.id == job_id and job.lease_losses == queue.max_attempts + 1
    # errors still have their own budget: two failures retry, the third dead-letters
    assert job.failures == 1 and queue.fail(job, "boom 1") == "queued"
    clock.advance(10)
    job = queue.claim("w")
    assert job.failures == 2 and queue.fail(job, "boom 2") == "queued"
    clock.advance(20)
    job = queue.claim("w")
    assert job.failures == 3 and queue.fail(job, "boom 3") == "dead"
    assert "gave up after 3 attempts" in queue.get(job_id).last_error
    assert queue.retry_dead(job_id) and queue.get(job_id).lease_losses == 0


def test_per_installation_limit(queue: JobQueue) -> None:
    a1 = review(queue, pr=1, inst=1)
    a2 = review(queue, pr=2, inst=1)
    b1 = review(queue, pr=3, inst=2)
    first = queue.claim("w", per_installation_limit=1)
    second = queue.claim("w", per_installation_limit=1)
    assert (first.id, second.id) == (a1, b1)  # installation 1 is at its limit: a2 waits
    assert queue.claim("w", per_installation_limit=1) is None
    assert queue.claim("w", per_installation_limit=2).id == a2
    queue.complete(first)


def test_expired_running_jobs_do_not_count_against_the_limit(queue: JobQueue, clock: Clock) -> None:
    review(queue, pr=1)
    queue.claim("dead-worker", per_installation_limit=1)
    second = review(queue, pr=2)
    assert queue.claim("w", per_installation_limit=1) is None
    clock.advance(61)
    claimed = {queue.claim("w", per_installation_limit=1).id, queue.claim("w", per_installation_limit=2).id}
    assert second in claimed


def test_claim_by_kind(queue: JobQueue) -> None:
    review(queue)
    inst = queue.enqueue("installation", {"x": 1}, installation_id=5)
    assert queue.claim("w", kinds=["installation"]).id == inst
    assert queue.claim("w", kinds=[]) is None


def test_release_gives_the_attempt_back(queue: JobQueue) -> None:
    job_id = review(queue)
    job = queue.claim("w")
    assert queue.release(job)
    again = queue.claim("w")
    assert again.id == job_id and again.attempts == 1


def test_concurrent_claims_never_share_a_job(database: str, clock: Clock) -> None:
    """Four workers, each with its own connection (as separate processes would), race for 200 jobs."""
    path = database
    setup = Store.open(path)
    q0 = JobQueue(setup, clock=clock)
    for i in range(200):
        q0.enqueue("poll", {"i": i})
    claimed: list[int] = []
    lock = threading.Lock()

    def run(name: str) -> None:
        st = Store.open(path)
        q = JobQueue(st, clock=clock)
        while (job := q.claim(name)) is not None:
            with lock:
                claimed.append(job.id)
            q.complete(job)
        st.close()

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 200
    assert q0.counts() == {"done": 200}
    setup.close()


def test_uninstall_job_voids_the_installations_queued_work(queue: JobQueue) -> None:
    mine = [review(queue, pr=1, inst=1), review(queue, pr=2, inst=1)]
    running = queue.claim("w")  # already running: left to finish (or fail) on its own
    other = review(queue, pr=3, inst=2)
    cleanup = queue.enqueue(
        "installation", {"action": "deleted"}, installation_id=1, cancel_installation=True
    )
    assert running.id == mine[0] and queue.get(mine[0]).state == "running"
    assert queue.get(mine[1]).state == "superseded"
    assert queue.get(other).state == "queued" and queue.get(cleanup).state == "queued"


def test_claim_under_a_backlog_finds_the_one_installation_below_its_limit(queue: JobQueue) -> None:
    """Issue #14: 20,000 due jobs of an installation already at its limit, then one of another:
    the claim reads a few candidates, excludes the full installation, and finds it at once."""
    busy = review(queue, pr=0, inst=1)
    assert queue.claim("w", per_installation_limit=1).id == busy
    with queue.store.transaction() as conn:
        conn.executemany(
            "INSERT INTO jobs (kind, installation_id, repo, pr, payload, state, run_after, created_at, "
            "updated_at) VALUES ('review', 1, 'o/r', ?, '{}', 'queued', ?, ?, ?)",
            [(n, iso(1.0e9 + n), iso(1.0e9), iso(1.0e9)) for n in range(1, 20_001)],
        )
    other = review(queue, pr=99, inst=2)
    started = time.perf_counter()
    job = queue.claim("w", per_installation_limit=1)
    took = time.perf_counter() - started
    assert job is not None and job.id == other
    assert took < 0.5, f"claim took {took:.3f} s"
    started = time.perf_counter()
    assert queue.claim("w", per_installation_limit=1) is None  # both installations at their limit
    assert time.perf_counter() - started < 0.5
    if queue.store.is_postgres:
        return  # the plan below is SQLite's; PostgreSQL's claim is covered by tests/test_postgres.py
    plans = " ".join(
        str(r[-1])
        for r in queue.store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE state = 'queued' AND run_after <= ? "
            "ORDER BY run_after, id LIMIT 8",
            (iso(2.0e9),),
        )
    )
    assert "jobs_claim" in plans and "TEMP B-TREE" not in plans


def test_the_idle_poll_takes_no_write_lock(queue: JobQueue, store: Store, tmp_path: Path) -> None:
    """Nothing runnable: the claim answers from a read, even while another connection holds the
    write lock (a worker polling every second must not queue behind the webhook's writes)."""
    other = store.reopen()
    if other.is_postgres:  # the advisory lock that stands for SQLite's writer lock
        other.conn.execute("BEGIN")
        other.conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK_KEY,))
    else:
        other.conn.execute("BEGIN IMMEDIATE")
    try:
        started = time.perf_counter()
        assert queue.claim("w") is None
        assert time.perf_counter() - started < 1.0
    finally:
        other.conn.execute("ROLLBACK")
        other.close()
    queue.checkpoint()  # passive: returns at once


# --- deliveries stored on the event loop (issue #14) ----------------------------------------------


def _ping(delivery_id: str) -> Delivery:
    return Delivery(delivery_id, "ping", None, 1, "o/r", iso(0))


def test_try_accept_delivery_stores_when_nothing_waits(queue: JobQueue, store: Store) -> None:
    if store.is_postgres:
        assert queue.try_accept_delivery(_ping("d1"), []) is None  # network round trips: a thread's
        return
    assert queue.try_accept_delivery(_ping("d1"), [{"kind": "review", "payload": {}}]) == (False, [1])
    assert queue.try_accept_delivery(_ping("d1"), []) == (True, [1])  # a redelivery: stored once


def test_try_accept_delivery_gives_way_to_another_writer_and_stores_nothing(
    queue: JobQueue, store: Store
) -> None:
    if store.is_postgres:
        pytest.skip("SQLite's writer lock")
    other = store.reopen()
    try:
        other.conn.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert queue.try_accept_delivery(_ping("d1"), []) is None
        assert time.monotonic() - started < 1  # did not wait out busy_timeout (30 s)
        other.conn.execute("ROLLBACK")
    finally:
        other.close()
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS  # restored
    assert store.conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0
    assert queue.try_accept_delivery(_ping("d1"), []) == (False, [])


def test_try_accept_delivery_gives_way_to_a_thread_holding_the_queue(queue: JobQueue) -> None:
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with queue.lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        assert queue.try_accept_delivery(_ping("d1"), []) is None
    finally:
        release.set()
        t.join()
    assert queue.accept_delivery(_ping("d1"), []) == (False, [])
