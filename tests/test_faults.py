"""Fault injection through the fake GitHub and fake LLM servers (real HTTP), end to end.

Each scenario sends a signed `pull_request.opened` delivery to the real server; the real worker
runs the real review handler against FakeGitHub and FakeLLM, one of which misbehaves: 500/502/503,
403 secondary rate limit with Retry-After, 429, connection resets, answers slower than the client
timeout, truncated bodies, and answers lost after the request took effect. Every run ends with
the review posted exactly once for the head SHA, or the job dead-lettered with a clear reason;
never two reviews for one head SHA, never a comment outside the diff.

Retry waits are small (constructor parameters), so the whole file runs in seconds. `RWorld` is
also the harness of test_secrets.py, test_tenant_isolation.py and test_prompt_injection.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from reviewbot.adapters.llm import client_from_settings
from reviewbot.app.app_review import ReviewJobHandler
from reviewbot.app.github import GitHubApp
from reviewbot.app.github_types import Limits
from reviewbot.app.queue import JobQueue
from reviewbot.app.store import Store
from reviewbot.core.settings import Settings, settings_secrets
from tests.test_app_e2e import APP_ID, CONFIG, INSTALLATION, REPO, World, module, valid_anchor

LLM_KEY = "sk-faults-0123456789abcdefghijklmnopqrstuv"
#: Tallies for RELIABILITY.md: scenario -> outcome ('posted once' / 'dead-lettered').
OUTCOMES: Counter[str] = Counter()


class RWorld(World):
    """The e2e World with fast retries everywhere: GitHub client, LLM client and job queue.

    `gh_timeout` / `llm_timeout` bound one HTTP attempt; `max_attempts` is the job's attempt budget.
    """

    def __init__(
        self,
        tmp: Path,
        *,
        gh_timeout: float = 5.0,
        llm_timeout: float = 5.0,
        max_attempts: int = 3,
        secrets: list[str] | None = None,
        **kw: Any,
    ) -> None:
        self.gh_timeout = gh_timeout
        self.llm_timeout = llm_timeout
        self.max_attempts = max_attempts
        self.secrets = secrets
        super().__init__(tmp, **kw)

    def settings(self) -> Settings:
        return (
            super()
            .settings()
            .model_copy(update={"llm_api_key": SecretStr(LLM_KEY), "llm_timeout": self.llm_timeout})
        )

    def handler(self, store: Store, queue: JobQueue, app: GitHubApp) -> ReviewJobHandler:
        settings = self.settings()
        secrets = settings_secrets(settings) if self.secrets is None else self.secrets
        return ReviewJobHandler(
            store,
            queue.lock,
            client_for=app.installation_client,
            llm_factory=lambda **o: client_from_settings(settings, max_attempts=3, backoff_base=0.05, **o),
            metrics=self.metrics,
            clock=queue.clock,
            enqueue=queue.enqueue,
            secrets=secrets,
        )

    worker_id = "w-faults"
    poll_interval = 0.05

    def make_queue(self, store: Store) -> JobQueue:
        return JobQueue(store, lease_seconds=30, backoff_base=0.05, max_attempts=self.max_attempts)

    def make_app(self) -> GitHubApp:
        return GitHubApp(
            APP_ID,
            self.priv,
            base_url=self.gh.base_url,
            timeout=self.gh_timeout,
            limits=Limits(
                write_interval=0,
                backoff=0.01,
                max_attempts=3,
                max_wait=5,
                lost_write_grace=3.0,
                lost_write_poll=0.25,
            ),
            on_call=self.metrics.record_github_call,
        )

    def review_job_handlers(self, store: Store, queue: JobQueue, app: GitHubApp) -> dict[str, Any]:
        handler = self.handler(store, queue, app)
        return {"review": handler.review, "command.review": handler.command_review}


def open_pr(w: World, number: int = 1, bugs: dict[int, str] | None = None) -> Any:
    w.gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(40)}) if REPO not in w.gh.repos else None
    return w.gh.add_pull(REPO, number, head_files={"a.py": module(40, bugs or {5: "a5", 30: "a30"})})


def review_once_or_dead(w: World, pr: Any, scenario: str, *, expect: str, comments: int = 2) -> None:
    """The invariant of every scenario, checked on GitHub's side and in the database."""
    w.deliver("pull_request", w.pr_event("opened", pr))
    w.settle(timeout=60)
    reviews = [r for r in w.reviews(pr.number) if r["commit_id"] == pr.head_sha]
    jobs = w.rows("SELECT state, last_error FROM jobs WHERE kind = 'review'")
    assert len(jobs) == 1
    state, error = jobs[0]
    for review in reviews:
        assert review["event"] == "COMMENT"
        assert all(valid_anchor(w.gh, pr.number, c) for c in review["comments"])
    if expect == "posted":
        assert len(reviews) == 1, f"{scenario}: {len(reviews)} reviews for one head SHA"
        assert len(reviews[0]["comments"]) == comments, reviews[0]["comments"]
        assert state == "done", (state, error)
        assert w.rows("SELECT state FROM reviews") == [("posted",)]
        OUTCOMES["posted once"] += 1
    else:
        assert reviews == [], f"{scenario}: a dead-lettered job posted"
        assert state == "dead" and error, (state, error)
        OUTCOMES["dead-lettered"] += 1
    OUTCOMES[scenario] += 1


@pytest.fixture
def rworld(tmp_path: Path) -> Iterator[RWorld]:
    w = RWorld(tmp_path)
    w.start_worker()
    yield w
    w.close()


PULLS = f"/repos/{REPO}/pulls/1"
REVIEWS = f"/repos/{REPO}/pulls/1/reviews"

# (scenario, inject(world)) for GitHub faults that must still end with exactly one review
GITHUB_TRANSIENT: list[tuple[str, Callable[[World], None]]] = [
    ("github 500 on the PR", lambda w: w.gh.fail_next(2, 500, PULLS, "GET")),
    ("github 502 on every read once", lambda w: w.gh.fail_next(3, 502, f"/repos/{REPO}", "GET")),
    ("github 503 on the review POST", lambda w: w.gh.fail_next(1, 503, REVIEWS, "POST")),
    (
        "github 502 after the review was created (answer lost)",
        lambda w: w.gh.fail_next(1, 502, REVIEWS, "POST", after_processing=True),
    ),
    (
        "github 403 secondary rate limit on the review POST",
        lambda w: w.gh.secondary_limit_next(1, retry_after=1, path_prefix=REVIEWS, method="POST"),
    ),
    ("github 429 with Retry-After on a read", lambda w: w.gh.too_many_requests_next(1, 1, PULLS, "GET")),
    ("github connection reset on the review POST", lambda w: w.gh.reset_next(1, REVIEWS, "POST")),
    ("github connection reset on reads", lambda w: w.gh.reset_next(2, f"/repos/{REPO}", "GET")),
    ("github truncated diff body", lambda w: w.gh.truncate_next(1, PULLS, "GET")),
    ("github truncated answer to the review POST", lambda w: w.gh.truncate_next(1, REVIEWS, "POST")),
    ("github 500 on the check run", lambda w: w.gh.fail_next(3, 500, f"/repos/{REPO}/check-runs", "POST")),
    ("github token endpoint 502", lambda w: w.gh.fail_next(1, 502, "/app/installations", "POST")),
]


@pytest.mark.parametrize(("scenario", "inject"), GITHUB_TRANSIENT, ids=[s for s, _ in GITHUB_TRANSIENT])
def test_github_faults_still_one_review(
    rworld: RWorld, scenario: str, inject: Callable[[World], None]
) -> None:
    pr = open_pr(rworld)
    inject(rworld)
    review_once_or_dead(rworld, pr, scenario, expect="posted")
    assert rworld.gh.rejected_reviews == []
    assert rworld.gh.faults == [], "the fault was never hit"


def test_github_slower_than_the_client_timeout(tmp_path: Path) -> None:
    w = RWorld(tmp_path, gh_timeout=0.5)
    w.start_worker()
    try:
        pr = open_pr(w)
        w.gh.slow_next(1, delay=1.5, path_prefix=REVIEWS, method="POST")  # created, answer too late
        w.gh.slow_next(1, delay=1.5, path_prefix=PULLS, method="GET")
        review_once_or_dead(w, pr, "github slower than the client timeout", expect="posted")
        assert w.gh.faults == []
    finally:
        w.close()


def test_review_post_that_takes_effect_after_the_client_timed_out_is_not_posted_again(tmp_path: Path) -> None:
    """GitHub keeps processing a POST whose client gave up (timeout): the retry must find that
    review before posting another. Found here: the lookup ran before the slow POST landed."""
    w = RWorld(tmp_path, gh_timeout=0.5)
    w.start_worker()
    try:
        pr = open_pr(w)
        w.gh.slow_next(1, delay=1.5, path_prefix=REVIEWS, method="POST")
        review_once_or_dead(w, pr, "github review POST slower than the client timeout", expect="posted")
        time.sleep(1.6)  # let the slow POST land, whenever it does
        assert len(w.reviews()) == 1, "two reviews for one head SHA"
    finally:
        w.close()


def test_github_down_for_good_dead_letters_with_the_reason(rworld: RWorld) -> None:
    pr = open_pr(rworld)
    rworld.gh.fail_next(1000, 503, REVIEWS, "POST")
    review_once_or_dead(rworld, pr, "github 503 on every review POST", expect="dead")
    [(error,)] = rworld.rows("SELECT last_error FROM jobs WHERE kind = 'review'")
    assert "503" in error and "gave up after" in error and "reviews" in error
    assert rworld.rows("SELECT state FROM reviews") in ([("pending",)], [("failed",)])


def test_github_refusing_access_dead_letters(rworld: RWorld) -> None:
    pr = open_pr(rworld)
    rworld.gh.fail_next(1000, 404, PULLS, "GET")
    review_once_or_dead(rworld, pr, "github 404 on the PR", expect="dead")


# (scenario, inject(llm)) for LLM faults: the client retries; the review is posted once with the
# model's findings (2 comments) after a transient fault.
LLM_TRANSIENT: list[tuple[str, Callable[[Any], None]]] = [
    ("llm 500", lambda llm: llm.enqueue_fault(500)),
    ("llm 502", lambda llm: llm.enqueue_fault(502)),
    ("llm 503", lambda llm: llm.enqueue_fault(503)),
    ("llm 429 with Retry-After", lambda llm: llm.enqueue_fault(429, retry_after=1)),
    ("llm connection reset", lambda llm: llm.enqueue_reset()),
    ("llm truncated body", lambda llm: llm.enqueue_truncated()),
    ("llm garbled 200 body", lambda llm: llm.enqueue_malformed()),
]


@pytest.mark.parametrize(("scenario", "inject"), LLM_TRANSIENT, ids=[s for s, _ in LLM_TRANSIENT])
def test_llm_faults_still_one_review(rworld: RWorld, scenario: str, inject: Callable[[Any], None]) -> None:
    pr = open_pr(rworld)
    inject(rworld.llm)
    review_once_or_dead(rworld, pr, scenario, expect="posted")
    assert rworld.llm.pending() == 0


def test_llm_slower_than_the_client_timeout(tmp_path: Path) -> None:
    w = RWorld(tmp_path, llm_timeout=0.5)
    w.start_worker()
    try:
        pr = open_pr(w)
        w.llm.delay(2.0)
        review_once_or_dead(w, pr, "llm slower than the client timeout", expect="posted")
    finally:
        w.close()


def test_llm_down_for_good_posts_the_rules_review_once_and_says_why(rworld: RWorld) -> None:
    """The LLM is an optional source: when it keeps failing, the review still goes out (rules only)
    and the check run says the LLM failed; it is not retried into a second review."""
    pr = open_pr(rworld)
    for _ in range(20):
        rworld.llm.enqueue_fault(503)
    review_once_or_dead(rworld, pr, "llm 503 on every attempt", expect="posted", comments=0)
    [check] = rworld.checks(pr.head_sha)
    assert "503" in check["output"]["text"]


def test_primary_rate_limit_exhausted_waits_for_the_reset(rworld: RWorld) -> None:
    pr = open_pr(rworld)
    rworld.gh.set_rate_limit(0, reset_in=2)  # the next call is refused until the window resets
    started = time.monotonic()
    review_once_or_dead(rworld, pr, "github primary rate limit exhausted", expect="posted")
    assert time.monotonic() - started >= 1.5  # it waited for the reset instead of hammering
    assert any(r.status == 403 for r in rworld.gh.requests) or rworld.gh.rate_remaining > 0


def test_llm_refusing_the_request_posts_the_rules_review_once(rworld: RWorld) -> None:
    """A non-retryable 400 the client cannot adapt to: no retry storm, the review goes out once."""
    pr = open_pr(rworld)
    rworld.llm.enqueue_fault(400, message="Invalid request: messages contain an unsupported token")
    review_once_or_dead(rworld, pr, "llm 400 refused", expect="posted", comments=0)
    assert len(rworld.llm.requests) == 1
    [check] = rworld.checks(pr.head_sha)
    assert "unsupported token" in check["output"]["text"]


def test_llm_context_too_long_is_learned_and_the_request_asked_again(rworld: RWorld) -> None:
    """A 400 naming the context window: the window is learned and the request sent again to fit
    it (split when needed), so the review still carries the LLM's findings, once."""
    pr = open_pr(rworld)
    rworld.llm.enqueue_fault(400, message="This model's maximum context length is 8192 tokens")
    review_once_or_dead(rworld, pr, "llm 400 context too long", expect="posted", comments=2)
    assert len(rworld.llm.requests) == 2
    [check] = rworld.checks(pr.head_sha)
    assert "context window 8192 tokens" in check["output"]["text"]


def test_many_faults_at_once(rworld: RWorld) -> None:
    pr = open_pr(rworld)
    rworld.gh.fail_next(1, 502, PULLS, "GET")
    rworld.gh.reset_next(1, REVIEWS, "POST")
    rworld.gh.secondary_limit_next(1, retry_after=1, path_prefix=REVIEWS, method="POST")
    rworld.llm.enqueue_fault(429, retry_after=1)
    rworld.llm.enqueue_reset()
    review_once_or_dead(rworld, pr, "five faults in one run", expect="posted")


def test_fault_tally() -> None:
    """Runs last: prints what was injected and survived (figures for RELIABILITY.md)."""
    if not OUTCOMES:
        pytest.skip("no fault scenario ran in this session")
    print("\nfault outcomes:", dict(OUTCOMES))
    assert OUTCOMES["posted once"] + OUTCOMES["dead-lettered"] >= 1
