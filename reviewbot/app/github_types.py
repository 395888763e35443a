"""What the GitHub adapter hands back and raises: plain values and errors, no HTTP.

Callers (the App's review job, feedback polls, the CLI) depend on these; only
reviewbot.app.github talks to GitHub.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from reviewbot.review.render import ReviewComment

# ---------------------------------------------------------------------------------------------
# Errors


class GitHubError(Exception):
    """Base of the adapter's errors."""


class GitHubAPIError(GitHubError):
    """GitHub answered with an error status that retrying will not fix."""

    def __init__(self, status: int, message: str, method: str = "", url: str = "") -> None:
        super().__init__(f"{method} {url} -> {status}: {message}".strip())
        self.status = status
        self.message = message


class GitHubTransientError(GitHubError):
    """A 5xx or a transport failure that outlived the retries."""


class GitHubRateLimitError(GitHubError):
    """The rate limit would need a longer wait than `max_wait` allows."""

    def __init__(self, wait: float, max_wait: float) -> None:
        super().__init__(f"rate limited for {wait:.0f}s, longer than the allowed {max_wait:.0f}s")
        self.wait = wait


class ReviewRejectedError(GitHubError):
    """GitHub refused the review itself (not one of its comments), e.g. a stale commit_id."""


# ---------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class PullInfo:
    number: int
    title: str
    author: str
    author_type: str
    draft: bool
    labels: tuple[str, ...]
    head_sha: str
    base_sha: str
    base_ref: str
    head_repo_full_name: str | None
    state: str
    head_ref: str = ""
    body: str = ""


@dataclass(frozen=True, slots=True)
class PullFile:
    filename: str
    status: str
    additions: int
    deletions: int
    patch: str | None
    previous_filename: str | None = None


class DiffText(str):
    """A unified diff (it IS a str) that also says which files it leaves out and why."""

    skipped: dict[str, str]
    notes: list[str]
    source: str

    def __new__(
        cls,
        text: str,
        *,
        skipped: dict[str, str] | None = None,
        notes: list[str] | None = None,
        source: str = "diff",
    ) -> DiffText:
        obj = super().__new__(cls, text)
        obj.skipped = dict(skipped or {})
        obj.notes = list(notes or [])
        obj.source = source
        return obj


@dataclass(frozen=True, slots=True)
class ReviewCommentInfo:
    """A review comment already on a PR (the bot's or a human's)."""

    id: int
    path: str
    line: int | None
    side: str | None
    start_line: int | None
    body: str
    user: str
    user_type: str
    in_reply_to_id: int | None
    commit_id: str
    review_id: int | None
    created_at: str
    fingerprint: str | None
    user_id: int | None = None  # the author's numeric id: what "the bot's own comment" is checked by


@dataclass(slots=True)
class PostedReview:
    review_id: int
    comment_ids: dict[str, int] = field(default_factory=dict)  # fingerprint -> comment id
    rejected: list[tuple[ReviewComment, str]] = field(default_factory=list)
    probes: int = 0  # pending reviews used to find rejected comments


@dataclass(slots=True)
class GitHubStats:
    """Counters the metrics module reads: calls by (method, status), rate limit, waits, retries."""

    calls: Counter[tuple[str, int]] = field(default_factory=Counter)
    rate_remaining: dict[int | None, int] = field(default_factory=dict)  # per installation
    last_rate_remaining: int | None = None
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0
    retries: int = 0
    transport_errors: int = 0


@dataclass(frozen=True, slots=True)
class Limits:
    """How patient and how polite the client is. Tests use write_interval=0 and a fake sleep."""

    write_interval: float = 1.0  # seconds between content-creating requests per installation
    max_wait: float = 900.0  # longest rate-limit wait before giving up with GitHubRateLimitError
    max_attempts: int = 4  # for 5xx / transport errors
    backoff: float = 1.0  # exponential backoff multiplier (1, 2, 4 ... seconds)
    backoff_max: float = 30.0
    max_rate_limit_waits: int = 5  # per call
    #: After a review POST timed out, GitHub may still be creating it: look for it this long
    #: (every `lost_write_poll` seconds) before posting again, so it is never posted twice.
    lost_write_grace: float = 30.0
    lost_write_poll: float = 2.0


@dataclass(slots=True)
class _InstallationState:
    remaining: int | None = None
    reset: float | None = None
    last_write: float | None = None
    write_lock: asyncio.Lock | None = None
