"""queue.py: leases, reclaim after a dead worker, retries with backoff, dead letters, supersession,
per-installation limits. Time is a fake clock: nothing sleeps."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from reviewbot.queue import JobQueue
from reviewbot.store import Store
from tests.fakes.clock import ManualClock

Clock = ManualClock


@pytest.fixture
def queue(store: Store, clock: Clock) -> JobQueue:
    return JobQueue(store, clock=clock, lease_seconds=60, max_attempts=3, backoff_base=10)


def review(queue: JobQueue, pr: int = 1, sha: str = "a" * 40, inst: int = 1, repo: str = "o/r") -> int:
    return queue.enqueue(
        "review",
        {"sha": sha},
        installation_id=inst,
        repo=repo,
        pr=pr,
        head_sha=sha,
        dedupe_key=f"review:{repo}#{pr}@{sha}",
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
    old = review(queue, sha="a" * 40)
    other_pr = review(queue, pr=2, sha="c" * 40)
    new = review(queue, sha="b" * 40)
    assert queue.get(old).state == "superseded"
    assert queue.get(other_pr).state == "queued"
    row = queue.store.conn.execute("SELECT superseded_by FROM jobs WHERE id = ?", (old,)).fetchone()
    assert row[0] == new
    claimed = [queue.claim("w1", per_installation_limit=None), queue.claim("w1", per_installation_limit=None)]
    assert {j.id for j in claimed} == {other_pr, new}


def test_running_review_is_not_superseded(queue: JobQueue) -> None:
    old = review(queue, sha="a" * 40)
    job = queue.claim("w1")
    review(queue, sha="b" * 40)
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
    for _ in range(3):
        assert queue.claim("w") is not None
        clock.advance(61)  # the worker died mid-job
    assert queue.claim("w") is None
    job = queue.get(job_id)
    assert job.state == "dead" and "lease expired" in job.last_error


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


def test_concurrent_claims_never_share_a_job(tmp_path: Path, clock: Clock) -> None:
    """Four workers, each with its own connection (as separate processes would), race for 200 jobs."""
    path = tmp_path / "race.db"
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
