"""The GitHub App's review job: one PR head in, at most ONE review (event COMMENT) out.

`ReviewJobHandler.review` is the worker handler for job kind `review` (queued by the webhook edge
for pull_request opened/reopened/ready_for_review/synchronize, and by `@reviewbot review`). It
only orchestrates I/O around the one pipeline (`pipeline.review_change`):

1. paused repo -> skip; config from the DEFAULT branch (never the PR head); a broken config ->
   a neutral check run naming file:line and no review; `should_review` -> skip with the reason;
2. the PR at its current head (a stale job skips: the newer job reviews the newer head);
3. idempotency: the store's `reviews` row for (repo, pr, head_sha) and, independently of the
   database, the bot's own review on GitHub (found by the hidden head marker in its body);
4. the diff (on `synchronize` only what changed since the last reviewed SHA), the head files
   prefetched concurrently (the files `pipeline.select_files` keeps), the pipeline (which holds back what
   the FULL PR diff would refuse);
5. ONE review + the `reviewbot` check run, then the outcome recorded in one transaction.

Crash safety: a `pending` reviews row is written before posting; a retry after a crash between
posting and recording finds the review on GitHub by its marker and only records it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from reviewbot.adapters.llm import LLMClient, caps_overrides_from_settings, client_from_settings
from reviewbot.adapters.llm_caps import CapsBook
from reviewbot.adapters.sarif_fetch import Fetched, fetch_imported
from reviewbot.app import records, webhooks
from reviewbot.app.github import GitHubApp, GitHubClient
from reviewbot.app.github_types import DiffText, GitHubError, ReviewCommentInfo, ReviewRejectedError
from reviewbot.app.logs import log_context
from reviewbot.app.metrics import Metrics
from reviewbot.app.queue import Job, JobQueue, iso, parse_iso
from reviewbot.app.store import Store
from reviewbot.app.worker import Handler, Notify, PermanentJobError, is_paused
from reviewbot.core.config import CONFIG_PATH, ConfigError
from reviewbot.core.config_schema import DISABLED_REASON, RepoConfig
from reviewbot.core.costs import OperatorLimits, apply_limits, cost_of, limits_from_settings, token_cap
from reviewbot.core.domain import ReviewResult
from reviewbot.core.settings import Settings, github_app_credentials, settings_secrets
from reviewbot.filter import suppression
from reviewbot.filter.acceptance import AcceptanceModel, load_prior, org_of
from reviewbot.review.diff import parse_diff
from reviewbot.review.pipeline import Change, move_to_suppressed, review_change, select_files
from reviewbot.review.prompt import ChangeIntent
from reviewbot.review.render import (
    ReviewComment,
    render_check_run,
    render_review_summary,
    to_review_comment,
)
from reviewbot.review.review_config import load_review_config
from reviewbot.review.rules import RuleSet

log = logging.getLogger("reviewbot.app.app_review")

#: Head files fetched at once for context (bounded: a 300-file PR must not open 300 requests).
FILE_CONCURRENCY = 8

ClientFor = Callable[[int], Awaitable[GitHubClient]]


# ---------------------------------------------------------------------------------------------
# Pure helpers


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    """What a `review` job asks for (the webhook's EnqueueReview, or a forced command review)."""

    installation_id: int
    repo: str
    pr: int
    head_sha: str
    action: str = "opened"
    delivery_id: str | None = None
    # `@reviewbot review`: review again even if this head was reviewed, and despite drafts or
    # triggers.skip_* (someone asked); never despite `enabled: false` or a pause
    force: bool = False
    job_id: int | None = None

    @property
    def tenant(self) -> records.Tenant:
        return records.Tenant(self.installation_id, self.repo)

    @classmethod
    def from_job(cls, job: Job) -> ReviewRequest:
        p = job.payload or {}
        try:
            return cls(
                installation_id=_as_int(p.get("installation_id") or job.installation_id),
                repo=str(p.get("repo") or job.repo),
                pr=_as_int(p.get("pr") or job.pr),
                head_sha=str(p.get("head_sha") or job.head_sha),
                action=str(p.get("action") or "opened"),
                delivery_id=p.get("delivery_id"),
                force=bool(p.get("force")),
                job_id=job.id,
            )
        except (TypeError, ValueError) as exc:
            raise PermanentJobError(f"bad review job payload: {exc}") from exc


def _as_int(value: object) -> int:
    if not isinstance(value, int | str):
        raise TypeError(f"expected a number, got {value!r}")
    return int(value)


@dataclass(slots=True)
class ReviewOutcome:
    """What a review job did: posted | quiet (nothing to post on a push: no new review, the
    check run only) | recorded | skipped | config_error | superseded."""

    status: str
    reason: str = ""
    review_id: int | None = None  # our reviews row
    github_review_id: int | None = None
    posted: int = 0
    check_run_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)


def head_marker(head_sha: str) -> str:
    """Hidden in the review body: 'the bot reviewed this head', readable even without our DB."""
    return f"<!-- reviewbot:head={head_sha} -->"


def request_marker(job_id: int) -> str:
    """Hidden in a forced review's body: 'this job already posted' (a forced run may repeat a head)."""
    return f"<!-- reviewbot:request={job_id} -->"


def apply_rejections(result: ReviewResult, rejected: list[tuple[ReviewComment, str]]) -> None:
    """Comments GitHub refused become suppressed findings with GitHub's reason."""
    by_fp = {c.fingerprint: why for c, why in rejected}
    for d in list(result.posted):
        if d.fingerprint in by_fp:
            move_to_suppressed(result, d, f"rejected by GitHub: {by_fp[d.fingerprint]}")


def check_conclusion(result: ReviewResult) -> str:
    """Never 'failure': reviewbot advises, it does not block merges."""
    return "neutral" if result.posted else "success"


def config_error_check(messages: list[str]) -> tuple[str, str, str]:
    """(title, summary, text) of the check run for a broken config: exactly which file:line.

    `messages` are ConfigError.messages (`<file>:<line>: <key>: <message>`)."""
    where = messages[0].split(": ", 1)[0] if messages else CONFIG_PATH
    title = f"reviewbot config is invalid ({where}): not reviewed"
    summary = "The configuration on the default branch is invalid, so this pull request was not reviewed."
    text = "\n".join(f"- `{m}`" for m in messages) or "- (no details)"
    return title[:255], summary, text


# ---------------------------------------------------------------------------------------------
# Store reads (records.py owns the SQL; one installation's rows only)


def acceptance_model(
    store: Store, req: ReviewRequest, prior: Callable[[], AcceptanceModel]
) -> AcceptanceModel:
    """The repo's active model for this installation, else its org's model (the org layer learned
    from the org's other repos: a new repo starts from it), else the shipped prior."""
    for scope in (req.tenant, org_tenant(req)):
        params = records.active_model_params(store, scope)
        if params is not None:
            try:
                return AcceptanceModel.from_json(params)
            except ValueError:
                log.exception("stored model %s is unreadable; falling back", scope.scope)
    return prior()


def org_tenant(req: ReviewRequest) -> records.OrgTenant:
    return records.OrgTenant(req.installation_id, org_of(req.repo))


def learned_suppressions(store: Store, req: ReviewRequest) -> suppression.Learned:
    """The kinds of finding this installation's repo feedback holds back (reviewbot.filter.suppression)."""
    return suppression.from_rows(records.labelled_kinds(store, req.tenant))


def learned_lines(store: Store, req: ReviewRequest, learned: suppression.Learned) -> list[str]:
    """What the check run says the repo taught reviewbot: the model in force, the kinds held back."""
    version = records.active_model_version(store, req.tenant)
    org = records.active_model_version(store, org_tenant(req)) if version is None else None
    if version is None and org is not None:
        repos = org.metrics.get("repos") or []
        model = (
            f"Acceptance model: the org model of {org_of(req.repo)} v{org.version} (no model of this repo "
            f"yet), trained on {org.n_labels} labelled findings of {len(repos)} repo(s), since "
            f"{org.created_at[:10]}"
        )
    elif version is None:
        model = "Acceptance model: the shipped prior (no model trained on this repo's labels yet)"
    else:
        model = (
            f"Acceptance model: v{version.version}, trained on {version.n_labels} labelled findings, "
            f"in force since {version.created_at[:10]}"
        )
        org_rows = version.metrics.get("org_rows") or 0
        if org_rows:
            model += f"; its org layer learned from {org_rows} labelled findings of the org's other repos"
    return [model] + [f"Held back: {line}" for line in learned.describe()]


def dismissed_fingerprints(store: Store, req: ReviewRequest) -> set[str]:
    """Fingerprints of this installation's repo findings the team dismissed (records' policy)."""
    return records.dismissed_fingerprints(store, req.tenant)


# ---------------------------------------------------------------------------------------------
# GitHub reads the client does not offer as one call


async def find_bot_review(gh: GitHubClient, repo: str, pr: int, marker: str) -> int | None:
    """Our submitted review whose body carries `marker`, or None. Only reviews by the App's own bot
    account count (checked by id): anyone can paste the marker into a review of their own."""
    return review_with_marker(await gh.own_reviews(repo, pr), marker)


def review_with_marker(own_reviews: list[dict[str, Any]], marker: str) -> int | None:
    for r in own_reviews:
        if marker in (r.get("body") or ""):
            return int(r["id"])
    return None


async def is_ancestor(gh: GitHubClient, repo: str, old_sha: str, new_sha: str) -> bool:
    """Whether new_sha descends from old_sha (False after a force-push or for an unknown SHA)."""
    return await gh.compare_status(repo, old_sha, new_sha) in ("ahead", "identical")


async def prefetch_files(
    gh: GitHubClient, repo: str, ref: str, paths: list[str], concurrency: int = FILE_CONCURRENCY
) -> dict[str, str | None]:
    """The files' text at `ref`, fetched concurrently (at most `concurrency` at once)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(path: str) -> tuple[str, str | None]:
        async with sem:
            return path, await gh.get_file(repo, path, ref=ref)

    return dict(await asyncio.gather(*(one(p) for p in paths)))


# ---------------------------------------------------------------------------------------------
# The handler


class ReviewJobHandler:
    """Runs review jobs. Built once per worker (one GitHubApp, one LLM client per event loop)."""

    def __init__(
        self,
        store: Store,
        lock: threading.RLock,
        *,
        client_for: ClientFor,
        llm_factory: Callable[..., LLMClient | None],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        prior: Callable[[], AcceptanceModel] = load_prior,
        enqueue: Callable[..., int] | None = None,
        secrets: Iterable[str] = (),
        limits: OperatorLimits | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or OperatorLimits()  # the operator's cost caps over any repo config
        self.secrets = list(secrets)  # masked in every text the review publishes (reviewbot.review.redact)
        self.lock = lock
        self.client_for = client_for
        self.llm_factory = llm_factory
        self.metrics = metrics
        self.clock = clock
        self.prior = prior
        self.enqueue = enqueue
        self._llm: LLMClient | None = None
        self._llm_made = False
        self._prior_model: AcceptanceModel | None = None

    # -- worker entry points ----------------------------------------------------------------

    async def review(self, job: Job) -> None:
        req = ReviewRequest.from_job(job)
        with log_context(delivery_id=req.delivery_id, job_id=job.id, repo=req.repo, pr=req.pr):
            outcome = await self.run(req)
            log.info(
                "review job: %s",
                outcome.status,
                extra={
                    "outcome": outcome.status,
                    "reason": outcome.reason,
                    "posted": outcome.posted,
                    "head_sha": req.head_sha,
                    "github_review_id": outcome.github_review_id,
                    "seconds": {k: round(v, 3) for k, v in outcome.timings.items()},
                },
            )

    async def command_review(self, job: Job) -> None:
        """`@reviewbot review`: acknowledge with 👀 and queue a forced review of the current head."""
        p = job.payload or {}
        try:
            cmd = webhooks.Command(
                **{k: p[k] for k in ("kind", "installation_id", "repo", "pr", "comment_id", "user")},
                repo_id=p.get("repo_id"),
            )
        except KeyError as exc:
            raise PermanentJobError(f"bad command job payload: missing {exc}") from exc
        if self.enqueue is None:
            raise PermanentJobError("no queue to enqueue the requested review")
        with log_context(delivery_id=p.get("delivery_id")):
            gh = await self.client_for(cmd.installation_id)
            pull = await gh.get_pull(cmd.repo, cmd.pr)
            payload = {
                "installation_id": cmd.installation_id,
                "repo": cmd.repo,
                "pr": cmd.pr,
                "head_sha": pull.head_sha,
                "base_sha": pull.base_sha,
                "action": "command",
                "author": pull.author,
                "draft": pull.draft,
                "labels": list(pull.labels),
                "force": True,
                "requested_by": cmd.user,
                "delivery_id": p.get("delivery_id"),
            }
            job_id = self.enqueue(
                "review",
                payload,
                installation_id=cmd.installation_id,
                repo=cmd.repo,
                pr=cmd.pr,
                head_sha=pull.head_sha,
                dedupe_key=f"review-command:{cmd.repo}#{cmd.comment_id}",
            )
            try:
                await gh.add_reaction(cmd.repo, cmd.comment_id, "eyes")
            except GitHubError as exc:  # the review is queued; a missing 👀 is cosmetic
                log.warning("cannot react to the command comment: %s", exc)
            log.info("review requested by comment", extra={"queued_job": job_id, "user": cmd.user})

    # -- the review -------------------------------------------------------------------------

    async def run(self, req: ReviewRequest) -> ReviewOutcome:
        """Review the PR head the request names, or say why not (never posts twice for a head)."""
        if is_paused(self.store, req.repo):
            log.info("review skipped: repository is paused")
            return ReviewOutcome("skipped", "repository is paused (@reviewbot pause)")
        gh = await self.client_for(req.installation_id)
        # One HTTP client for the whole job: without it githubkit builds a client per request,
        # loading the TLS trust store each time (~20 ms of CPU per call).
        async with gh.kit:
            return await self._run(gh, req)

    async def _run(self, gh: GitHubClient, req: ReviewRequest) -> ReviewOutcome:
        started = time.perf_counter()
        timings: dict[str, float] = {}

        def skip(reason: str, status: str = "skipped") -> ReviewOutcome:
            log.info("review skipped: %s", reason, extra={"reason": reason})
            return ReviewOutcome(status, reason, timings=timings)

        t = time.perf_counter()
        # independent reads run together: the review's latency is the LLM's plus these round trips
        marker = (
            request_marker(req.job_id) if req.force and req.job_id is not None else head_marker(req.head_sha)
        )
        (org_text, repo_text), pull, full, own_reviews, on_github = await asyncio.gather(
            gh.get_repo_config(req.repo),
            gh.get_pull(req.repo, req.pr),
            gh.get_pull_diff(req.repo, req.pr),
            gh.own_reviews(req.repo, req.pr),
            gh.existing_fingerprints(req.repo, req.pr),
        )
        found = review_with_marker(own_reviews, marker)
        try:
            loaded = load_review_config(repo_text, org_text)
        except ConfigError as exc:
            return await self._config_error(gh, req, config_error_check(exc.messages))
        config, rules = loaded.config, loaded.rules
        if not config.enabled:  # before any file is fetched; review_change would say the same
            return skip(DISABLED_REASON)
        timings["fetch"] = time.perf_counter() - t
        if pull.state != "open":
            return skip(f"pull request is {pull.state}")
        if pull.head_sha != req.head_sha:
            return skip(f"head moved on to {pull.head_sha[:12]}; the newer job reviews it", "superseded")
        eligible, why = config.should_review(pull.author, list(pull.labels), pull.draft)
        if not eligible and not req.force:
            return skip(why)

        # Idempotency: our database, then GitHub itself (holds even if the database was lost).
        with self.lock:
            row = records.review_state(self.store, req.tenant, req.pr, req.head_sha)
        if row is not None and row[1] == "posted" and not req.force:
            return skip("this head was already reviewed", "already_reviewed")
        with self.lock:
            review_id = records.claim_review(
                self.store, req.tenant, req.pr, req.head_sha, pull.base_sha, iso(self.clock())
            )
        await self._reconcile_pending(gh, req, own_reviews)
        if found is not None:
            return await self._record_found(gh, req, review_id, found, timings)
        t = time.perf_counter()
        diff, since, contents = await self._fetch_change(gh, req, config, full)
        timings["fetch"] += time.perf_counter() - t

        intent = ChangeIntent(pull.title, pull.body, tuple(await self._commit_subjects(gh, req)))
        imported = await fetch_imported(gh, req.repo, req.head_sha, config.sarif_in)  # the repo's linters
        result = await self._review(
            req, config, rules, diff, full, since, contents, on_github, timings, intent, imported
        )
        return await self._post(gh, req, review_id, result, timings, started)

    async def _fetch_change(
        self, gh: GitHubClient, req: ReviewRequest, config: RepoConfig, full: DiffText
    ) -> tuple[DiffText, str | None, dict[str, str | None]]:
        """(the diff to review, the SHA it starts from when incremental, head files it touches).

        On `synchronize`, only what changed since the last reviewed SHA, when that SHA is still an
        ancestor of the head (not after a force-push); otherwise the whole PR diff."""
        diff: DiffText = full
        since = None
        if req.action == "synchronize":
            with self.lock:
                since = records.last_posted_head(self.store, req.tenant, req.pr, other_than=req.head_sha)
        if since and await is_ancestor(gh, req.repo, since, req.head_sha):
            diff = await gh.compare_diff(req.repo, since, req.head_sha)
            log.info("incremental review since %s", since[:12], extra={"since": since})
        else:
            since = None
        # the pipeline's own selection (operator caps included): a file it will not review is not fetched
        wanted, _ = select_files(parse_diff(str(diff)), config, self.limits.review)
        return diff, since, await prefetch_files(gh, req.repo, req.head_sha, [f.path for f in wanted])

    async def _review(
        self,
        req: ReviewRequest,
        config: RepoConfig,
        rules: RuleSet,
        diff: DiffText,
        full: DiffText,
        since: str | None,
        contents: dict[str, str | None],
        on_github: set[str],
        timings: dict[str, float],
        intent: ChangeIntent | None = None,
        imported: Fetched | None = None,
    ) -> ReviewResult:
        """The one pipeline on the diff to review (`full`, the PR's whole diff, is where GitHub
        accepts comments); `on_github` are the fingerprints the bot already posted on the PR
        (read from GitHub, so they hold even without our database)."""
        config, capped = apply_limits(config, self.limits, self._default_model())
        llm, own_llm = self._llm_for(config)
        cap = token_cap(self.limits, used_today=self._tokens_today(req.installation_id))
        with self.lock:
            model = acceptance_model(self.store, req, self._prior)
            dismissed = dismissed_fingerprints(self.store, req)
            posted = records.posted_fingerprints(self.store, req.tenant, req.pr)
            learned = learned_suppressions(self.store, req)
            taught = learned_lines(self.store, req, learned)
        try:
            result = await review_change(
                Change(
                    diff_text=str(diff),
                    read_head=contents.get,
                    repo=req.repo,
                    pr=req.pr,
                    files_not_reviewed=dict(diff.skipped),
                    intent=intent,
                    pr_diff_text=str(full),
                ),
                config=config,
                rules=rules,
                model=model,
                llm=llm,
                dismissed_fingerprints=dismissed,
                posted_fingerprints=on_github | posted,
                secrets=self.secrets,
                token_cap=cap,
                imported=imported.candidates if imported else (),
                caps=self.limits.review,
                learned=learned,
            )
        finally:
            if own_llm and llm is not None:
                await llm.aclose()
        result.learned = taught
        result.notes.extend(capped)
        result.usage.cost = cost_of(result.usage, self.limits.prices)
        result.notes.extend(diff.notes)
        result.notes.extend(imported.notes if imported else [])
        if since is not None:
            result.notes.append(f"Incremental review: only the changes since {since} were reviewed.")
        timings.update({k: v for k, v in result.timings.items() if k != "fetch"})
        return result

    async def _post(
        self,
        gh: GitHubClient,
        req: ReviewRequest,
        review_id: int,
        result: ReviewResult,
        timings: dict[str, float],
        started: float,
    ) -> ReviewOutcome:
        if self._quiet(req, result):
            # Nothing worth a comment on a PR the bot already reviewed: no new review (it would
            # only say so); the check run still carries the funnel, the row marks the head done.
            check_run_id = await self._check_run(gh, req, result)
            self._record(req, review_id, None, check_run_id, result, {})
            self._observe(req, result, timings, started)
            return ReviewOutcome(
                "quiet", "nothing worth a comment", review_id, None, 0, check_run_id, timings
            )
        t = time.perf_counter()
        body = render_review_summary(result) + "\n\n" + head_marker(req.head_sha)
        if req.force and req.job_id is not None:
            body += "\n" + request_marker(req.job_id)
        comments = [to_review_comment(d) for d in result.posted]
        # A worker stalled past its lease (a paused VM) may find the job reviewed by the worker
        # that took it over: look again right before posting, never two reviews per head SHA.
        forced = req.force and req.job_id is not None
        marker = request_marker(req.job_id) if forced else head_marker(req.head_sha)  # type: ignore[arg-type]
        found = await find_bot_review(gh, req.repo, req.pr, marker)
        if found is not None:
            return await self._record_found(gh, req, review_id, found, timings)
        try:
            posted = await gh.post_review(
                req.repo, req.pr, commit_id=req.head_sha, body=body, comments=comments
            )
        except ReviewRejectedError as exc:
            pull = await gh.get_pull(req.repo, req.pr)
            if pull.head_sha != req.head_sha:
                self._set_state(req, review_id, "failed")
                return ReviewOutcome("superseded", f"head moved on while posting: {exc}", review_id)
            raise PermanentJobError(f"GitHub refused the review: {exc}") from exc
        timings["post"] = time.perf_counter() - t  # the review is visible from here on
        apply_rejections(result, posted.rejected)
        check_run_id = await self._check_run(gh, req, result)
        self._record(req, review_id, posted.review_id, check_run_id, result, posted.comment_ids)
        self._observe(req, result, timings, started)
        return ReviewOutcome(
            "posted", "", review_id, posted.review_id, len(result.posted), check_run_id, timings
        )

    def _quiet(self, req: ReviewRequest, result: ReviewResult) -> bool:
        """True for a push with nothing to post on a PR that already has the bot's review (an
        explicit `@reviewbot review` is always answered)."""
        if result.posted or req.force:
            return False
        with self.lock:
            before = records.last_posted_head(self.store, req.tenant, req.pr, other_than=req.head_sha)
        return before is not None

    async def _check_run(self, gh: GitHubClient, req: ReviewRequest, result: ReviewResult) -> int | None:
        title, summary, text = render_check_run(result)
        try:
            return await gh.create_check_run(
                req.repo,
                req.head_sha,
                title=title,
                summary=summary,
                text=text,
                conclusion=check_conclusion(result),
            )
        except GitHubError as exc:  # the review is posted; a missing check must not repost it
            log.warning("cannot create the check run: %s", exc)
            return None

    async def _config_error(
        self, gh: GitHubClient, req: ReviewRequest, check: tuple[str, str, str]
    ) -> ReviewOutcome:
        title, summary, text = check
        check_id = await gh.create_check_run(
            req.repo, req.head_sha, title=title, summary=summary, text=text, conclusion="neutral"
        )
        log.warning("config invalid: %s", text)
        return ReviewOutcome("config_error", title, check_run_id=check_id)

    async def _reconcile_pending(
        self, gh: GitHubClient, req: ReviewRequest, own_reviews: list[dict[str, Any]]
    ) -> None:
        """Rows of older heads left 'pending' although their review is on GitHub (the run died
        after posting and the head moved on): record them as posted, so the incremental diff and
        the feedback loop see them. Rows whose review is not on GitHub stay as they are."""
        for row_id, head_sha in records.stale_pending_reviews(self.store, req.tenant, req.pr, req.head_sha):
            gid = review_with_marker(own_reviews, head_marker(head_sha))
            if gid is None:
                continue
            old = ReviewRequest(req.installation_id, req.repo, req.pr, head_sha, job_id=req.job_id)
            comments = await self._github_comments(gh, old, gid)
            self._store_found(old, row_id, gid, comments, None)
            log.info(
                "pending review of an older head reconciled from GitHub",
                extra={"head_sha": head_sha, "github_review_id": gid},
            )

    async def _github_comments(
        self, gh: GitHubClient, req: ReviewRequest, github_review_id: int
    ) -> list[ReviewCommentInfo]:
        return [
            c
            for c in await gh.list_review_comments(req.repo, req.pr)
            if c.review_id == github_review_id and c.fingerprint
        ]

    async def _record_found(
        self,
        gh: GitHubClient,
        req: ReviewRequest,
        review_id: int,
        github_review_id: int,
        timings: dict[str, float],
    ) -> ReviewOutcome:
        """The bot's review for this head is already on GitHub (a crash after posting, or a lost
        database): record what GitHub shows, post nothing."""
        comments = await self._github_comments(gh, req, github_review_id)
        # The crashed run may have died before its check run: create one from what GitHub shows
        # (its funnel died with it), unless the run that posted recorded one.
        with self.lock:
            check_run_id = records.review_check_run(self.store, req.tenant, review_id)
        if check_run_id is None:
            recovered = ReviewResult()
            recovered.funnel.candidates = recovered.funnel.posted = len(comments)
            recovered.notes.append("Recorded after a restart: the review was already on GitHub.")
            check_run_id = await self._check_run(gh, req, recovered)
        self._store_found(req, review_id, github_review_id, comments, check_run_id)
        log.info(
            "review already on GitHub: recorded, not reposted", extra={"github_review_id": github_review_id}
        )
        return ReviewOutcome(
            "recorded",
            "review already on GitHub",
            review_id,
            github_review_id,
            len(comments),
            timings=timings,
        )

    def _store_found(
        self,
        req: ReviewRequest,
        review_id: int,
        github_review_id: int,
        comments: list[ReviewCommentInfo],
        check_run_id: int | None,
    ) -> None:
        """Record a review found on GitHub (and its fingerprinted comments) as posted."""
        rows = [
            records.NewFinding(
                pr=req.pr,
                path=c.path,
                line=c.line,
                side=c.side,
                body=c.body,
                decision="post",
                reason="recovered from GitHub after a restart",
                fingerprint=c.fingerprint or "",
                comment_id=c.id,
            )
            for c in comments
        ]
        with self.lock:
            records.record_recovered_review(
                self.store,
                req.tenant,
                review_id,
                github_review_id=github_review_id,
                check_run_id=check_run_id,
                comments=rows,
                now=iso(self.clock()),
            )

    # -- recording and metrics --------------------------------------------------------------

    def _record(
        self,
        req: ReviewRequest,
        review_id: int,
        github_review_id: int | None,
        check_run_id: int | None,
        result: ReviewResult,
        comment_ids: dict[str, int],
    ) -> None:
        now = iso(self.clock())
        usage = {
            "requests": result.usage.requests,
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "errors": result.usage.errors,
            "model": result.usage.model,
            "cost": result.usage.cost,
            "stopped_by": result.usage.stopped_by,
        }
        findings = [
            records.NewFinding.from_decision(d, pr=req.pr, comment_id=comment_ids.get(d.fingerprint))
            for d in [*result.posted, *result.suppressed]
        ]
        with self.lock:
            records.finish_review(
                self.store,
                req.tenant,
                review_id,
                github_review_id=github_review_id,
                check_run_id=check_run_id,
                funnel=result.funnel.as_dict(),
                usage=usage,
                findings=findings,
                now=now,
            )

    def _set_state(self, req: ReviewRequest, review_id: int, state: str) -> None:
        with self.lock:
            records.set_review_state(self.store, req.tenant, review_id, state)

    def _observe(
        self, req: ReviewRequest, result: ReviewResult, timings: dict[str, float], started: float
    ) -> None:
        m = self.metrics
        if m is None:
            return
        m.observe_stage_timings(timings)
        m.record_funnel(req.repo, result.funnel)
        m.record_llm_usage(result.usage)
        m.review_seconds.observe(self._end_to_end(req, started))

    def _end_to_end(self, req: ReviewRequest, started: float) -> float:
        """Seconds since the delivery arrived (queue wait included), else since the job started."""
        if req.delivery_id:
            row = self.store.conn.execute(
                "SELECT received_at FROM deliveries WHERE id = ?", (req.delivery_id,)
            ).fetchone()
            if row:
                return max(0.0, self.clock() - parse_iso(row[0]))
        return time.perf_counter() - started

    # -- ports ------------------------------------------------------------------------------

    def _prior(self) -> AcceptanceModel:
        if self._prior_model is None:
            self._prior_model = self.prior()
        return self._prior_model

    async def _commit_subjects(self, gh: GitHubClient, req: ReviewRequest) -> list[str]:
        """The PR's commit subjects for the prompt; a review goes on without them if GitHub fails."""
        try:
            return await gh.list_pull_commit_subjects(req.repo, req.pr)
        except GitHubError as exc:
            log.warning("cannot list the PR's commits: %s", exc)
            return []

    def _default_model(self) -> str:
        if not self._llm_made:
            self._llm = self.llm_factory()
            self._llm_made = True
        return self._llm.model if self._llm is not None else ""

    def _tokens_today(self, installation_id: int) -> int:
        """LLM tokens the installation's reviews spent since 00:00 UTC (for the daily cap)."""
        if self.limits.tokens_per_installation_day is None:
            return 0
        day = iso(self.clock())[:10]
        with self.lock:
            usages = records.installation_usages_since(self.store, installation_id, day)
        total = 0
        for usage in usages:
            with contextlib.suppress(ValueError, TypeError):
                total += int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
        return total

    def _llm_for(self, config: RepoConfig) -> tuple[LLMClient | None, bool]:
        """(client, owned): the worker's shared client, or a short-lived one when the repo's config
        asks for another model or temperature."""
        if not self._llm_made:  # created on the worker's event loop, on first use
            self._llm = self.llm_factory()
            self._llm_made = True
        shared = self._llm
        if shared is None:
            return None, False
        wants_model = config.llm.model or shared.model
        if wants_model == shared.model and config.llm.temperature == shared.temperature:
            return shared, False
        return self.llm_factory(model=wants_model, temperature=config.llm.temperature), True


# ---------------------------------------------------------------------------------------------
# Wiring (called once at the edge by serve_cmd.build_handlers)


def github_app_from_settings(settings: Settings, metrics: Metrics | None = None) -> GitHubApp | None:
    """The App client the settings describe, or None when neither the App id nor the key is set.
    Raises SettingsError (one line naming the variable) when they are set but unusable."""
    if settings.github_app_id is None and settings.github_private_key is None:
        return None
    app_id, pem, warnings = github_app_credentials(settings)
    for warning in warnings:
        log.warning("%s", warning)
    return GitHubApp(
        app_id,
        pem,
        base_url=settings.github_api_url,
        on_call=metrics.record_github_call if metrics is not None else None,
    )


def command_notifier(app: GitHubApp | None) -> Notify | None:
    """Answers `@reviewbot pause|resume` with a 👍 on the command comment."""
    if app is None:
        return None

    async def notify(command: webhooks.Command, message: str) -> None:
        gh = await app.installation_client(command.installation_id)
        try:
            await gh.add_reaction(command.repo, command.comment_id, "+1")
        except GitHubError as exc:
            log.warning("cannot react to %s: %s", command.kind, exc)

    return notify


def review_handlers(
    settings: Settings,
    store: Store,
    *,
    queue: JobQueue,
    metrics: Metrics | None,
    app: GitHubApp | None,
) -> dict[str, Handler]:
    """Handlers for job kinds `review` and `command.review`. Without an App (no id/key set) they
    dead-letter with a reason naming the missing settings."""
    if app is None:

        async def unconfigured(job: Job) -> None:
            raise PermanentJobError(
                "the GitHub App is not configured: "
                "set REVIEWBOT_GITHUB_APP_ID and REVIEWBOT_GITHUB_PRIVATE_KEY"
            )

        return {"review": unconfigured, "command.review": unconfigured}

    caps = CapsBook(caps_overrides_from_settings(settings))  # what servers taught us, across jobs

    def llm_factory(**overrides: Any) -> LLMClient | None:
        return client_from_settings(settings, caps=caps, **overrides)

    handler = ReviewJobHandler(
        store,
        queue.lock,
        client_for=app.installation_client,
        llm_factory=llm_factory,
        metrics=metrics,
        clock=queue.clock,
        enqueue=queue.enqueue,
        secrets=settings_secrets(settings),
        limits=limits_from_settings(settings),
    )
    return {"review": handler.review, "command.review": handler.command_review}
