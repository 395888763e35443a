"""The GitHub adapter: App auth, reading PRs, posting ONE review, check runs, feedback reads.

Built on githubkit's async API. githubkit's own auto_retry is switched off on purpose: it sleeps
with the wall clock (no injectable clock, so it cannot be tested without waiting), has no cap on
how long it waits, and does not retry transport errors. Instead every call goes through
`GitHubClient._call`, which
- waits until `x-ratelimit-reset` when `x-ratelimit-remaining` reached 0 (up to `max_wait`),
- honours `Retry-After` on 403/429 (secondary limits),
- spaces content-creating requests (POST/PATCH/DELETE) `write_interval` seconds apart per
  installation (GitHub's advice against the secondary limit),
- retries 5xx and transport errors with exponential backoff (tenacity), with injectable sleep.

Installation tokens are githubkit's: AppInstallationAuthStrategy caches each token until one
minute before `expires_at`, in a cache private to each `GitHubApp` (so two apps or two fake
servers never share tokens).
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import httpx
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestError, RequestFailed, RequestTimeout
from githubkit.response import Response
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from reviewbot.app.github_types import (
    DiffText,
    GitHubAPIError,
    GitHubError,
    GitHubRateLimitError,
    GitHubStats,
    GitHubTransientError,
    Limits,
    PostedReview,
    PullFile,
    PullInfo,
    ReviewCommentInfo,
    ReviewRejectedError,
    _InstallationState,
)
from reviewbot.review.render import ReviewComment, parse_fingerprint

CONFIG_PATH = ".github/reviewbot.yml"
DIFF_MEDIA = "application/vnd.github.diff"
MAX_PR_FILES = 3000  # GitHub lists at most this many files of a pull request
EVENT = "COMMENT"  # the only review event reviewbot ever sends: it never approves or blocks

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
CallHook = Callable[[str, int, "int | None", "int | None"], None]


# ---------------------------------------------------------------------------------------------
# App


class GitHubApp:
    """The App: turns its id + private key into per-installation clients (tokens cached)."""

    def __init__(
        self,
        app_id: int,
        private_key_pem: str,
        *,
        base_url: str = "https://api.github.com",
        timeout: float = 30.0,
        limits: Limits | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
        bot_login: str | None = None,
        on_call: CallHook | None = None,
        stats: GitHubStats | None = None,
        bot_user_id: int | None = None,
    ) -> None:
        self.app_id = app_id
        self.base_url = base_url
        self.timeout = timeout
        self.limits = limits or Limits()
        self.sleep = sleep
        self.clock = clock
        self.bot_login = bot_login
        self.on_call = on_call
        self.stats = stats or GitHubStats()
        self._auth = AppAuthStrategy(app_id, private_key_pem)
        self._cache = MemCacheStrategy()
        self._clients: dict[int, GitHubClient] = {}
        self.bot_user_id = bot_user_id
        self._bot_lock: asyncio.Lock | None = None

    async def bot_identity(self, via: GitHubClient) -> int:
        """The numeric id of the App's bot account (`<slug>[bot]`): GET /app with the App's JWT
        for the slug (unless `bot_login` was given), then GET /users/<login> with an installation
        token (`via`). Asked once per process; only reviews and comments by this id are ours."""
        if self.bot_user_id is not None:
            return self.bot_user_id
        if self._bot_lock is None:
            self._bot_lock = asyncio.Lock()
        async with self._bot_lock:
            if self.bot_user_id is None:
                login = self.bot_login
                if login is None:
                    # this App's own token cache: githubkit's default one is process-wide and
                    # would hand out a JWT cached for another App with the same id
                    app_kit = GitHub(
                        self._auth,
                        base_url=self.base_url,
                        timeout=self.timeout,
                        cache_strategy=self._cache,
                        http_cache=False,
                        auto_retry=False,
                    )
                    async with app_kit:
                        resp = await via._call(lambda: app_kit.rest.apps.async_get_authenticated())
                    login = f"{resp.json()['slug']}[bot]"
                self.bot_user_id = await via.user_id(login)
        return self.bot_user_id

    async def authenticate(self) -> str:
        """GET /app with the App's JWT: its slug when GitHub accepts the id and key. Raises
        GitHubAPIError (401: the key does not belong to the App id), GitHubTransientError (5xx,
        network) or GitHubError (the key cannot sign a JWT). The worker's health probe."""
        kit = GitHub(
            self._auth,
            base_url=self.base_url,
            timeout=self.timeout,
            http_cache=False,
            auto_retry=False,
            cache_strategy=self._cache,
        )
        try:
            async with kit:
                resp = await kit.arequest("GET", "/app")
        except RequestFailed as e:
            status = e.response.status_code
            err = GitHubTransientError if status >= 500 else None
            if err is not None:
                raise err(f"GET /app -> {status}") from e
            raise GitHubAPIError(status, _error_text(e.response), "GET", "/app") from e
        except RequestError as e:
            raise GitHubTransientError(f"GET /app: transport error: {e}") from e
        except Exception as e:  # a key that parses as PEM but cannot sign (wrong type)
            raise GitHubError(f"cannot sign the App's JWT with the private key: {e}") from e
        body = resp.json()
        return str(body.get("slug") or body.get("id") or "") if isinstance(body, dict) else ""

    async def installation_client(self, installation_id: int) -> GitHubClient:
        """The client for one installation; the same object (and token) on every call."""
        if installation_id not in self._clients:
            state = _InstallationState()
            kit = GitHub(
                self._auth.as_installation(installation_id),
                base_url=self.base_url,
                timeout=self.timeout,
                cache_strategy=self._cache,
                http_cache=False,
                auto_retry=False,
                async_event_hooks={"response": [_response_hook(self, state, installation_id)]},
            )
            self._clients[installation_id] = GitHubClient(
                kit,
                state=state,
                limits=self.limits,
                sleep=self.sleep,
                clock=self.clock,
                stats=self.stats,
                bot_login=self.bot_login,
                identity=self.bot_identity,
            )
        return self._clients[installation_id]


def _response_hook(
    owner: Any, state: _InstallationState, installation_id: int | None
) -> Callable[[httpx.Response], Awaitable[None]]:
    """Every HTTP answer (token exchange and retries included) updates stats and rate state."""

    async def hook(response: httpx.Response) -> None:
        stats: GitHubStats = owner.stats
        method = response.request.method
        stats.calls[(method, response.status_code)] += 1
        remaining = _int(response.headers.get("x-ratelimit-remaining"))
        if remaining is not None and not response.request.url.path.endswith("/access_tokens"):
            state.remaining = remaining
            state.reset = _float(response.headers.get("x-ratelimit-reset"))
            stats.rate_remaining[installation_id] = remaining
            stats.last_rate_remaining = remaining
        if owner.on_call is not None:
            owner.on_call(method, response.status_code, remaining, installation_id)

    return hook


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _split(repo: str) -> tuple[str, str]:
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise ValueError(f"repository must be 'owner/name', got {repo!r}")
    return owner, name


def _error_text(resp: Response[Any] | httpx.Response) -> str:
    raw = resp.raw_response if isinstance(resp, Response) else resp
    try:
        data = raw.json()
    except ValueError:
        return raw.text[:500]
    if isinstance(data, dict):
        parts = [str(data.get("message", ""))]
        for err in data.get("errors") or []:
            parts.append(err if isinstance(err, str) else str(err.get("message") or err.get("code") or err))
        return "; ".join(p for p in parts if p)
    return str(data)[:500]


# ---------------------------------------------------------------------------------------------
# Client


class GitHubClient:
    """One installation's view of GitHub. Every method is one logical operation, retried safely."""

    def __init__(
        self,
        kit: GitHub[Any],
        *,
        state: _InstallationState | None = None,
        limits: Limits | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
        stats: GitHubStats | None = None,
        bot_login: str | None = None,
        identity: Callable[[GitHubClient], Awaitable[int]] | None = None,
    ) -> None:
        """`identity(client)` answers the bot account's numeric id (GitHubApp.bot_identity);
        without it the id of `bot_login` is looked up; with neither, nothing on GitHub is ours."""
        self.kit = kit
        self.rest = kit.rest
        self.state = state or _InstallationState()
        self.limits = limits or Limits()
        self.sleep = sleep
        self.clock = clock
        self.stats = stats or GitHubStats()
        self.bot_login = bot_login
        self._identity = identity
        self._own_id: int | None = None

    async def own_id(self) -> int | None:
        """The numeric id of the account this client posts as (cached)."""
        if self._own_id is None:
            if self._identity is not None:
                self._own_id = await self._identity(self)
            elif self.bot_login:
                self._own_id = await self.user_id(self.bot_login)
        return self._own_id

    async def user_id(self, login: str) -> int:
        """GET /users/<login>: an account's numeric id (logins can change hands; ids cannot)."""
        resp = await self._call(lambda: self.rest.users.async_get_by_username(login))
        return int(resp.json()["id"])

    async def own_reviews(self, repo: str, number: int) -> list[dict[str, Any]]:
        """The submitted reviews of the pull request authored by this client's own account: a
        marker in anyone else's review (a PR author pasting `reviewbot:head=...`) means nothing."""
        own = await self.own_id()
        return [
            r
            for r in await self.list_reviews(repo, number)
            if own is not None and (r.get("user") or {}).get("id") == own and r.get("state") != "PENDING"
        ]

    @classmethod
    def with_token(
        cls,
        token: str,
        *,
        base_url: str = "https://api.github.com",
        timeout: float = 30.0,
        limits: Limits | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
        stats: GitHubStats | None = None,
        bot_login: str | None = None,
        on_call: CallHook | None = None,
    ) -> GitHubClient:
        """A client from a ready token (a PAT, or a test's `FakeGitHub.issue_token`)."""
        state = _InstallationState()
        owner = _Owner(stats or GitHubStats(), on_call)
        kit = GitHub(
            TokenAuthStrategy(token),
            base_url=base_url,
            timeout=timeout,
            http_cache=False,
            auto_retry=False,
            async_event_hooks={"response": [_response_hook(owner, state, None)]},
        )
        return cls(
            kit, state=state, limits=limits, sleep=sleep, clock=clock, stats=owner.stats, bot_login=bot_login
        )

    # -- the call wrapper --------------------------------------------------------------------

    async def _call(
        self, op: Callable[[], Awaitable[Response[Any]]], *, write: bool = False, attempts: int | None = None
    ) -> Response[Any]:
        """Run one request with rate-limit waits, write spacing and 5xx/transport retries."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts or self.limits.max_attempts),
            wait=wait_exponential(multiplier=self.limits.backoff, max=self.limits.backoff_max),
            retry=retry_if_exception_type(GitHubTransientError),
            sleep=self._retry_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                resp = await self._once(op, write)
        return resp

    async def _retry_sleep(self, seconds: float) -> None:
        self.stats.retries += 1
        await self.sleep(seconds)

    async def _once(self, op: Callable[[], Awaitable[Response[Any]]], write: bool) -> Response[Any]:
        waits = 0
        while True:
            await self._wait_for_reset()
            if write:
                await self._space_write()
            try:
                return await op()
            except RequestError as e:
                # a failed token exchange surfaces wrapped: RequestError(cause=RequestFailed)
                failed = e if isinstance(e, RequestFailed) else e.__cause__
                if not isinstance(failed, RequestFailed):
                    self.stats.transport_errors += 1
                    raise GitHubTransientError(f"transport error: {e}") from e
                resp = failed.response
                wait = self._rate_limit_wait(resp.raw_response)
                req = resp.raw_response.request
                if wait is not None and waits < self.limits.max_rate_limit_waits:
                    waits += 1
                    await self._rate_wait(wait)
                    continue
                status = resp.status_code
                if status >= 500:
                    raise GitHubTransientError(f"{req.method} {req.url.path} -> {status}") from e
                raise GitHubAPIError(status, _error_text(resp), req.method, req.url.path) from e

    def _rate_limit_wait(self, resp: httpx.Response) -> float | None:
        """Seconds to wait before retrying a 403/429, or None when it is not a rate limit."""
        if resp.status_code not in (403, 429):
            return None
        retry_after = _float(resp.headers.get("retry-after"))
        if retry_after is not None:
            return max(retry_after, 1.0)
        if resp.headers.get("x-ratelimit-remaining") == "0":
            reset = _float(resp.headers.get("x-ratelimit-reset"))
            return max((reset or 0) - self.clock(), 0) + 1.0 if reset else 60.0
        if resp.status_code == 429 or "secondary rate limit" in resp.text:
            return 60.0  # GitHub: wait at least a minute when it gives no hint
        return None

    async def _rate_wait(self, seconds: float) -> None:
        if seconds > self.limits.max_wait:
            raise GitHubRateLimitError(seconds, self.limits.max_wait)
        self.stats.rate_limit_waits += 1
        self.stats.rate_limit_wait_seconds += seconds
        await self.sleep(seconds)

    async def _wait_for_reset(self) -> None:
        st = self.state
        if st.remaining == 0 and st.reset is not None:
            wait = st.reset - self.clock() + 1.0
            st.remaining = None  # unknown again after the wait; the next answer tells
            if wait > 0:
                await self._rate_wait(wait)

    async def _space_write(self) -> None:
        interval = self.limits.write_interval
        if interval <= 0:
            return
        if self.state.write_lock is None:
            self.state.write_lock = asyncio.Lock()
        async with self.state.write_lock:
            if self.state.last_write is not None:
                wait = self.state.last_write + interval - self.clock()
                if wait > 0:
                    await self.sleep(wait)
            self.state.last_write = self.clock()

    # -- reading ----------------------------------------------------------------------------

    async def get_pull(self, repo: str, number: int) -> PullInfo:
        owner, name = _split(repo)
        resp = await self._call(lambda: self.rest.pulls.async_get(owner, name, number))
        pr = resp.parsed_data
        head_repo = pr.head.repo.full_name if pr.head.repo else None
        return PullInfo(
            number=pr.number,
            title=pr.title,
            author=pr.user.login,
            author_type=pr.user.type,
            draft=bool(pr.draft),
            labels=tuple(label.name for label in pr.labels),
            head_sha=pr.head.sha,
            base_sha=pr.base.sha,
            base_ref=pr.base.ref,
            head_repo_full_name=head_repo,
            state=pr.state,
            head_ref=pr.head.ref,
            body=pr.body or "",
        )

    async def _pages(
        self, fetch: Callable[[int], Awaitable[Response[Any]]], limit: int | None = None
    ) -> list[Any]:
        """All pages of a list endpoint (per_page=100), following Link rel="next"."""
        items: list[Any] = []
        page = 1
        while True:
            resp = await self._call(lambda p=page: fetch(p))  # type: ignore[misc]
            items.extend(resp.json())
            if 'rel="next"' not in resp.headers.get("link", "") or (limit and len(items) >= limit):
                return items[:limit] if limit else items
            page += 1

    async def list_pull_commit_subjects(self, repo: str, number: int, limit: int = 50) -> list[str]:
        """Subjects of the PR's commits, oldest first (the change's intent, for the LLM prompt)."""
        owner, name = _split(repo)
        items = await self._pages(
            lambda p: self.rest.pulls.async_list_commits(owner, name, number, per_page=100, page=p),
            limit=limit,
        )
        return [str((c.get("commit") or {}).get("message") or "").split("\n", 1)[0] for c in items]

    async def list_pull_files(self, repo: str, number: int) -> list[PullFile]:
        owner, name = _split(repo)
        raw = await self._pages(
            lambda p: self.rest.pulls.async_list_files(owner, name, number, per_page=100, page=p),
            limit=MAX_PR_FILES,
        )
        return [
            PullFile(
                filename=f["filename"],
                status=f["status"],
                additions=f.get("additions", 0),
                deletions=f.get("deletions", 0),
                patch=f.get("patch"),
                previous_filename=f.get("previous_filename"),
            )
            for f in raw
        ]

    async def get_pull_diff(self, repo: str, number: int) -> DiffText:
        """The PR's unified diff; when GitHub says it is too large, rebuilt from per-file patches."""
        owner, name = _split(repo)
        try:
            resp = await self._call(
                lambda: self.rest.pulls.async_get(owner, name, number, headers={"Accept": DIFF_MEDIA})
            )
            return DiffText(resp.text, source="diff")
        except GitHubAPIError as e:
            if not _diff_too_large(e):
                raise
        files = await self.list_pull_files(repo, number)
        notes = ["GitHub refused the full diff as too large; rebuilt it from the per-file patches."]
        if len(files) >= MAX_PR_FILES:
            notes.append(
                f"GitHub lists at most {MAX_PR_FILES} files of a pull request; later files were not reviewed."
            )
        return _assemble(files, notes)

    async def compare_diff(self, repo: str, base_sha: str, head_sha: str) -> DiffText:
        """What changed between two commits (for `synchronize`: since the last reviewed SHA)."""
        owner, name = _split(repo)
        basehead = f"{base_sha}...{head_sha}"
        try:
            resp = await self._call(
                lambda: self.rest.repos.async_compare_commits(
                    owner, name, basehead, headers={"Accept": DIFF_MEDIA}
                )
            )
            return DiffText(resp.text, source="compare")
        except GitHubAPIError as e:
            if not _diff_too_large(e):
                raise
        resp = await self._call(lambda: self.rest.repos.async_compare_commits(owner, name, basehead))
        files = [
            PullFile(
                filename=f["filename"],
                status=f["status"],
                additions=f.get("additions", 0),
                deletions=f.get("deletions", 0),
                patch=f.get("patch"),
                previous_filename=f.get("previous_filename"),
            )
            for f in resp.json().get("files") or []
        ]
        return _assemble(
            files, ["GitHub refused the comparison diff as too large; rebuilt it from the per-file patches."]
        )

    async def list_reviews(self, repo: str, number: int) -> list[dict[str, Any]]:
        """Every review of the pull request (all pages), as GitHub returns them."""
        owner, name = _split(repo)
        return await self._pages(
            lambda p: self.rest.pulls.async_list_reviews(owner, name, number, per_page=100, page=p)
        )

    async def compare_status(self, repo: str, base_sha: str, head_sha: str) -> str | None:
        """GitHub's comparison status of head against base ('ahead', 'behind', 'diverged',
        'identical'), or None when either commit is unknown to GitHub (404/422)."""
        owner, name = _split(repo)
        basehead = f"{base_sha}...{head_sha}"
        try:
            resp = await self._call(
                lambda: self.rest.repos.async_compare_commits(owner, name, basehead, per_page=1)
            )
        except GitHubAPIError as e:
            if e.status in (404, 422):
                return None
            raise
        status = resp.json().get("status")
        return status if isinstance(status, str) else None

    async def get_file(self, repo: str, path: str, ref: str | None = None) -> str | None:
        """The file's text at `ref` (default branch when None), or None when it is absent there."""
        owner, name = _split(repo)
        kwargs: dict[str, Any] = {"ref": ref} if ref else {}
        try:
            resp = await self._call(lambda: self.rest.repos.async_get_content(owner, name, path, **kwargs))
        except GitHubAPIError as e:
            if e.status == 404:
                return None
            raise
        data = resp.json()
        if not isinstance(data, dict) or data.get("type") != "file":
            return None  # a directory, symlink or submodule
        if data.get("encoding") == "base64":
            return base64.b64decode(data.get("content") or "").decode("utf-8", errors="replace")
        return None  # encoding "none": GitHub does not inline files over 1 MB

    async def get_default_branch(self, repo: str) -> str:
        owner, name = _split(repo)
        resp = await self._call(lambda: self.rest.repos.async_get(owner, name))
        return resp.parsed_data.default_branch

    async def get_repo_config(self, repo: str) -> tuple[str | None, str | None]:
        """(org text, repo text) of `.github/reviewbot.yml`, both from DEFAULT branches.

        Never from the PR head: a PR must not be able to switch off or weaken its own review,
        and a fork PR's files are untrusted.
        """
        owner, _ = _split(repo)

        async def repo_text() -> str | None:
            return await self.get_file(repo, CONFIG_PATH, await self.get_default_branch(repo))

        async def org_text() -> str | None:
            if repo == f"{owner}/.github":
                return None
            try:
                return await self.get_file(f"{owner}/.github", CONFIG_PATH)
            except GitHubAPIError as e:
                if e.status in (403, 404):
                    return None
                raise

        # The org file is read while the repo's default branch is looked up: one round trip less.
        org, text = await asyncio.gather(org_text(), repo_text())
        return org, text

    async def list_review_comments(self, repo: str, number: int) -> list[ReviewCommentInfo]:
        owner, name = _split(repo)
        raw = await self._pages(
            lambda p: self.rest.pulls.async_list_review_comments(owner, name, number, per_page=100, page=p)
        )
        out = []
        for c in raw:
            user = c.get("user") or {}
            out.append(
                ReviewCommentInfo(
                    id=c["id"],
                    path=c.get("path", ""),
                    line=c.get("line"),
                    side=c.get("side"),
                    start_line=c.get("start_line"),
                    body=c.get("body") or "",
                    user=user.get("login", ""),
                    user_type=user.get("type", "User"),
                    in_reply_to_id=c.get("in_reply_to_id"),
                    commit_id=c.get("commit_id", ""),
                    review_id=c.get("pull_request_review_id"),
                    created_at=c.get("created_at", ""),
                    fingerprint=parse_fingerprint(c.get("body")),
                    user_id=user.get("id") if isinstance(user.get("id"), int) else None,
                )
            )
        return out

    async def existing_fingerprints(self, repo: str, number: int) -> set[str]:
        """Fingerprints of the findings the bot already posted on this PR, read from GitHub itself.

        Only the bot's own comments count (by account id, not login or type), so nobody -- a
        human or another App -- can suppress a finding by pasting a marker.
        """
        comments = await self.list_review_comments(repo, number)
        own = await self.own_id()
        return {c.fingerprint for c in comments if c.fingerprint and own is not None and c.user_id == own}

    async def get_comment_reactions(
        self, repo: str, comment_id: int, etag: str | None = None
    ) -> tuple[list[dict[str, Any]] | None, str | None]:
        """A review comment's reactions as GitHub's JSON objects, or None when unchanged (304).

        Conditional requests (If-None-Match) spare the rate limit when polling.
        """
        owner, name = _split(repo)
        headers = {"If-None-Match": etag} if etag else None
        items: list[dict[str, Any]] = []
        page = 1
        new_etag: str | None = etag
        while True:
            resp = await self._call(
                lambda p=page: self.rest.reactions.async_list_for_pull_request_review_comment(  # type: ignore[misc]
                    owner, name, comment_id, per_page=100, page=p, headers=headers if p == 1 else None
                )
            )
            if resp.status_code == 304:
                return None, etag
            if page == 1:
                new_etag = resp.headers.get("etag") or etag
            items.extend(resp.json())
            if 'rel="next"' not in resp.headers.get("link", ""):
                return items, new_etag
            page += 1

    # -- writing ----------------------------------------------------------------------------

    async def post_review(
        self, repo: str, number: int, *, commit_id: str, body: str, comments: list[ReviewComment]
    ) -> PostedReview:
        """Post ONE review (event COMMENT) with every comment GitHub accepts.

        On a 422 about comments, the offending ones are found by bisection with PENDING reviews
        (validated like real ones, visible to nobody, deleted right away), then the rest is posted
        in one review whose body says how many were left out. The review is never lost silently:
        if every comment is rejected the body is still posted; if GitHub rejects the review
        itself, ReviewRejectedError is raised.
        """
        owner, name = _split(repo)
        token = uuid.uuid4().hex
        try:
            review_id = await self._create_review(owner, name, number, commit_id, body, comments, token)
            return await self._posted(repo, number, review_id, [])
        except GitHubAPIError as e:
            if e.status != 422 or not _about_comments(e.message):
                if e.status == 422:
                    raise ReviewRejectedError(e.message) from e
                raise
        probes = [0]
        # a pending review left by a crashed run would make every probe fail: clear it first
        stale = await self._find_review(owner, name, number, "", pending=True)
        if stale is not None:
            await self._delete_pending(owner, name, number, stale)
        rejected = await self._find_rejected(owner, name, number, commit_id, comments, probes)
        bad = {id(c) for c, _ in rejected}
        good = [c for c in comments if id(c) not in bad]
        try:
            review_id = await self._create_review(
                owner, name, number, commit_id, body + _left_out_note(len(rejected)), good, token
            )
        except GitHubAPIError as e:
            if e.status != 422:
                raise
            # GitHub rejects a combination no single probe showed: keep the review, drop comments
            rejected = [(c, e.message) for c in comments]
            try:
                review_id = await self._create_review(
                    owner, name, number, commit_id, body + _left_out_note(len(rejected)), [], token
                )
            except GitHubAPIError as e2:
                raise ReviewRejectedError(e2.message) from e2
        posted = await self._posted(repo, number, review_id, rejected)
        posted.probes = probes[0]
        return posted

    async def _create_review(
        self,
        owner: str,
        name: str,
        number: int,
        commit_id: str,
        body: str,
        comments: list[ReviewComment],
        token: str,
        *,
        pending: bool = False,
    ) -> int:
        """POST a review; after a 5xx/transport error, look for it before posting again."""
        data: dict[str, Any] = {
            "commit_id": commit_id,
            "body": body,
            "comments": [c.as_api() for c in comments],
        }
        if not pending:
            data["body"] = f"{body}\n\n<!-- reviewbot:run={token} -->"
            data["event"] = EVENT
        last: GitHubTransientError | None = None
        for attempt in range(self.limits.max_attempts):
            if attempt:
                self.stats.retries += 1
                await self.sleep(min(self.limits.backoff * 2 ** (attempt - 1), self.limits.backoff_max))
                # the lost answer may hide a created review: never post it twice
                found = await self._find_late_review(owner, name, number, token, pending, _timed_out(last))
                if found is not None:
                    if not pending:
                        return found
                    await self._delete_pending(owner, name, number, found)
            try:
                resp = await self._call(
                    lambda: self.rest.pulls.async_create_review(owner, name, number, data=cast(Any, data)),
                    write=True,
                    attempts=1,
                )
                return int(resp.json()["id"])
            except GitHubTransientError as e:
                last = e
        assert last is not None
        found = await self._find_late_review(owner, name, number, token, pending, _timed_out(last))
        if found is not None and not pending:
            return found
        raise last

    async def _find_late_review(
        self, owner: str, name: str, number: int, token: str, pending: bool, timed_out: bool
    ) -> int | None:
        """`_find_review`; after a timeout (the POST may still be running at GitHub), keep looking
        for `lost_write_grace` seconds before answering None."""
        found = await self._find_review(owner, name, number, token, pending=pending)
        polls = math.ceil(self.limits.lost_write_grace / max(self.limits.lost_write_poll, 0.001))
        for _ in range(polls if timed_out else 0):
            if found is not None:
                break
            await self.sleep(self.limits.lost_write_poll)
            found = await self._find_review(owner, name, number, token, pending=pending)
        return found

    async def _find_review(
        self, owner: str, name: str, number: int, token: str, *, pending: bool = False
    ) -> int | None:
        """Our submitted review carrying this run's marker, or (pending=True) our pending review."""
        marker = f"<!-- reviewbot:run={token} -->"
        reviews = await self._pages(
            lambda p: self.rest.pulls.async_list_reviews(owner, name, number, per_page=100, page=p)
        )
        own = None if pending else await self.own_id()
        for r in reviews:
            if pending and r.get("state") == "PENDING":  # GitHub shows a pending review to its author only
                return int(r["id"])
            if not pending and marker in (r.get("body") or "") and (r.get("user") or {}).get("id") == own:
                return int(r["id"])
        return None

    async def _delete_pending(self, owner: str, name: str, number: int, review_id: int) -> None:
        await self._call(
            lambda: self.rest.pulls.async_delete_pending_review(owner, name, number, review_id), write=True
        )

    async def _probe(
        self,
        owner: str,
        name: str,
        number: int,
        commit_id: str,
        comments: list[ReviewComment],
        probes: list[int],
    ) -> str | None:
        """None when GitHub accepts these comments, else its reason (via a deleted pending review)."""
        probes[0] += 1
        try:
            review_id = await self._create_review(
                owner, name, number, commit_id, "", comments, "", pending=True
            )
        except GitHubAPIError as e:
            if e.status == 422:
                return e.message
            raise
        await self._delete_pending(owner, name, number, review_id)
        return None

    async def _find_rejected(
        self,
        owner: str,
        name: str,
        number: int,
        commit_id: str,
        comments: list[ReviewComment],
        probes: list[int],
        known_bad: bool = True,
    ) -> list[tuple[ReviewComment, str]]:
        """Bisect: the comments GitHub rejects, each with GitHub's reason."""
        if not comments:
            return []
        if len(comments) == 1:
            reason = await self._probe(owner, name, number, commit_id, comments, probes)
            return [(comments[0], reason)] if reason else []
        if not known_bad and await self._probe(owner, name, number, commit_id, comments, probes) is None:
            return []
        mid = len(comments) // 2
        left, right = comments[:mid], comments[mid:]
        left_bad = await self._find_rejected(owner, name, number, commit_id, left, probes, False)
        # when the whole batch is known bad and the left half is clean, the right half must be bad
        right_known = known_bad and not left_bad
        right_bad = await self._find_rejected(owner, name, number, commit_id, right, probes, right_known)
        return left_bad + right_bad

    async def _posted(
        self, repo: str, number: int, review_id: int, rejected: list[tuple[ReviewComment, str]]
    ) -> PostedReview:
        ids = {
            c.fingerprint: c.id
            for c in await self.list_review_comments(repo, number)
            if c.review_id == review_id and c.fingerprint
        }
        return PostedReview(review_id=review_id, comment_ids=ids, rejected=rejected)

    async def create_check_run(
        self,
        repo: str,
        head_sha: str,
        *,
        title: str,
        summary: str,
        text: str = "",
        conclusion: str | None = None,
        name: str = "reviewbot",
    ) -> int:
        """A check run on head_sha; without a conclusion it stays `in_progress`."""
        owner, repo_name = _split(repo)
        data: dict[str, Any] = {
            "name": name,
            "head_sha": head_sha,
            "output": {"title": title, "summary": summary, "text": text},
        }
        if conclusion:
            data["conclusion"] = conclusion
            data["status"] = "completed"
        else:
            data["status"] = "in_progress"
        resp = await self._call(
            lambda: self.rest.checks.async_create(owner, repo_name, data=cast(Any, data)), write=True
        )
        return int(resp.json()["id"])

    async def reply(self, repo: str, number: int, comment_id: int, body: str) -> int:
        """Reply in a review comment's thread; returns the new comment's id."""
        owner, name = _split(repo)
        resp = await self._call(
            lambda: self.rest.pulls.async_create_reply_for_review_comment(
                owner, name, number, comment_id, body=body
            ),
            write=True,
        )
        return int(resp.json()["id"])

    async def comment(self, repo: str, number: int, body: str) -> int:
        """A conversation comment on the PR; returns its id."""
        owner, name = _split(repo)
        resp = await self._call(
            lambda: self.rest.issues.async_create_comment(owner, name, number, body=body), write=True
        )
        return int(resp.json()["id"])

    async def add_reaction(
        self, repo: str, comment_id: int, content: str, *, kind: Literal["issue", "pull"] = "issue"
    ) -> None:
        """React to an issue comment (`@reviewbot ...` commands) or a review comment."""
        owner, name = _split(repo)
        if kind == "issue":
            await self._call(
                lambda: self.rest.reactions.async_create_for_issue_comment(
                    owner, name, comment_id, content=cast(Any, content)
                ),
                write=True,
            )
        else:
            await self._call(
                lambda: self.rest.reactions.async_create_for_pull_request_review_comment(
                    owner, name, comment_id, content=cast(Any, content)
                ),
                write=True,
            )


@dataclass(slots=True)
class _Owner:
    stats: GitHubStats
    on_call: CallHook | None


# ---------------------------------------------------------------------------------------------
# Pure helpers


def _left_out_note(n: int) -> str:
    if n == 0:
        return ""
    what = "1 comment was" if n == 1 else f"{n} comments were"
    return f"\n\n_{what} left out: GitHub could not anchor them on the diff._"


def _timed_out(exc: BaseException | None) -> bool:
    """Whether a failure was a timeout (no answer: the request may still take effect)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, RequestTimeout | httpx.TimeoutException):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _diff_too_large(e: GitHubAPIError) -> bool:
    text = e.message.lower()
    return e.status == 406 or (
        e.status == 422 and ("too_large" in text or "too large" in text or "exceeded" in text)
    )


def _about_comments(message: str) -> bool:
    text = message.lower()
    return "review thread" in text or "position" in text or "line" in text or "path" in text


def _assemble(files: list[PullFile], notes: list[str]) -> DiffText:
    """A unified diff from the files API's per-file patches; files without a patch are listed."""
    chunks: list[str] = []
    skipped: dict[str, str] = {}
    for f in files:
        old = f.previous_filename or f.filename
        head = [f"diff --git a/{old} b/{f.filename}"]
        if f.status == "renamed" and f.previous_filename:
            head += [f"rename from {f.previous_filename}", f"rename to {f.filename}"]
        if f.patch is None:
            if f.status == "renamed" and f.additions == f.deletions == 0:  # a pure rename
                chunks.append("\n".join([head[0], "similarity index 100%", *head[1:]]) + "\n")
                continue
            skipped[f.filename] = "GitHub omitted the patch (binary or too large to display)"
            continue
        if f.status == "added":
            head += ["new file mode 100644", "--- /dev/null", f"+++ b/{f.filename}"]
        elif f.status == "removed":
            head += ["deleted file mode 100644", f"--- a/{old}", "+++ /dev/null"]
        else:
            head += [f"--- a/{old}", f"+++ b/{f.filename}"]
        chunks.append("\n".join(head) + "\n" + f.patch.rstrip("\n") + "\n")
    return DiffText("".join(chunks), skipped=skipped, notes=notes, source="files")
