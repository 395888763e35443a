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
   prefetched concurrently, the pipeline, anchors re-checked against the FULL PR diff;
5. ONE review + the `reviewbot` check run, then the outcome recorded in one transaction.

Crash safety: a `pending` reviews row is written before posting; a retry after a crash between
posting and recording finds the review on GitHub by its marker and only records it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from reviewbot import webhooks
from reviewbot.acceptance import AcceptanceModel, load_prior
from reviewbot.config import CONFIG_PATH, ConfigError, RepoConfig, load_config
from reviewbot.costs import OperatorLimits, apply_limits, cost_of, limits_from_settings, token_cap
from reviewbot.diff import parse_diff
from reviewbot.feedback import resolve_outcome
from reviewbot.github import (
    DiffText,
    GitHubApp,
    GitHubClient,
    GitHubError,
    ReviewRejectedError,
)
from reviewbot.llm import LLMClient, caps_overrides_from_settings, client_from_settings
from reviewbot.llm_caps import CapsBook
from reviewbot.logs import log_context
from reviewbot.metrics import Metrics
from reviewbot.models import Decision, FileDiff, ReviewResult
from reviewbot.pipeline import Change, reason_kind, review_change
from reviewbot.prompt import ChangeIntent
from reviewbot.queue import Job, JobQueue, iso, parse_iso
from reviewbot.render import (
    ReviewComment,
    render_check_run,
    render_review_summary,
    to_review_comment,
)
from reviewbot.rules import RuleError, RuleSet, ruleset_from_config
from reviewbot.sarif_fetch import Fetched, fetch_imported
from reviewbot.settings import Settings, settings_secrets
from reviewbot.store import Store
from reviewbot.worker import Handler, Notify, PermanentJobError, is_paused

log = logging.getLogger("reviewbot.app_review")

#: Head files fetched at once for context (bounded: a 300-file PR must not open 300 requests).
FILE_CONCURRENCY = 8
NOT_IN_PR_DIFF = "not part of the pull request's diff"

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

    @classmethod
    def from_job(cls, job: Job) -> ReviewRequest:
        p = job.payload or {}
        try:
            return cls(
                installation_id=int(p.get("installation_id") or job.installation_id),
                repo=str(p.get("repo") or job.repo),
                pr=int(p.get("pr") or job.pr),
                head_sha=str(p.get("head_sha") or job.head_sha),
                action=str(p.get("action") or "opened"),
                delivery_id=p.get("delivery_id"),
                force=bool(p.get("force")),
                job_id=job.id,
            )
        except (TypeError, ValueError) as exc:
            raise PermanentJobError(f"bad review job payload: {exc}") from exc


@dataclass(slots=True)
class ReviewOutcome:
    """What a review job did: posted | recorded | skipped | config_error | superseded."""

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


def _move_to_suppressed(result: ReviewResult, decision: Decision, reason: str) -> None:
    result.posted.remove(decision)
    decision.decision = "suppress"
    decision.reason = reason
    decision.explore = False
    result.suppressed.append(decision)
    result.funnel.posted = len(result.posted)
    result.funnel.drop(reason_kind(reason))


def anchored_in(decision: Decision, files: dict[str, FileDiff]) -> bool:
    """Whether GitHub accepts the decision's comment against these (full PR diff) files."""
    c = decision.candidate
    file = files.get(c.path or "")
    if file is None or c.line is None:
        return False
    comment = to_review_comment(decision)
    if comment.start_line is not None:
        return file.accepts_range(comment.start_line, comment.line, comment.side)
    return file.accepts(comment.line, comment.side)


def restrict_to_diff(result: ReviewResult, full_files: dict[str, FileDiff]) -> list[Decision]:
    """Hold back findings GitHub would refuse on the PR diff (incremental reviews: a line changed
    since the last review but back to the base text is in the compare diff, not the PR diff)."""
    moved = [d for d in result.posted if not anchored_in(d, full_files)]
    for d in moved:
        _move_to_suppressed(result, d, NOT_IN_PR_DIFF)
    return moved


def apply_rejections(result: ReviewResult, rejected: list[tuple[ReviewComment, str]]) -> None:
    """Comments GitHub refused become suppressed findings with GitHub's reason."""
    by_fp = {c.fingerprint: why for c, why in rejected}
    for d in list(result.posted):
        if d.fingerprint in by_fp:
            _move_to_suppressed(result, d, f"rejected by GitHub: {by_fp[d.fingerprint]}")


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


def _features(d: Decision) -> str:
    c = d.candidate
    data = {"confidence": c.confidence, "hunk_size": c.hunk_size, "language": c.language, "support": 1,
            "verdict": c.verdict, "verify_probability": c.verify_probability}  # fmt: skip
    return json.dumps({k: v for k, v in data.items() if v is not None}, sort_keys=True)


def finding_row(
    d: Decision,
    *,
    review_id: int,
    installation_id: int,
    repo: str,
    pr: int,
    comment_id: int | None,
    now: str,
) -> tuple[Any, ...]:
    c = d.candidate
    return (
        review_id, installation_id, repo, pr, c.path, c.line, c.end_line, c.side, c.title, c.body,
        d.severity, d.category, c.source, c.rule_id, c.symbol, d.score, d.decision, d.reason,
        d.cluster, d.fingerprint, int(d.explore and d.decision == "post"), comment_id, _features(d), now,
    )  # fmt: skip


_FINDING_INSERT = (
    "INSERT INTO findings (review_id, installation_id, repo, pr, path, line, end_line, side, title, "
    "body, severity, category, source, rule_id, symbol, score, decision, reason, cluster, fingerprint, "
    "explore, github_comment_id, features, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# ---------------------------------------------------------------------------------------------
# Store reads and writes (one installation's rows only)


def review_row(store: Store, repo: str, pr: int, head_sha: str) -> tuple[int, str] | None:
    row = store.conn.execute(
        "SELECT id, state FROM reviews WHERE repo = ? AND pr = ? AND head_sha = ?", (repo, pr, head_sha)
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def claim_review_row(store: Store, lock: threading.RLock, req: ReviewRequest, base_sha: str, now: str) -> int:
    """The reviews row for this head, created 'pending' BEFORE anything is posted."""
    with lock, store.transaction() as conn:
        conn.execute(
            "INSERT INTO reviews (installation_id, repo, pr, head_sha, base_sha, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT(repo, pr, head_sha) DO NOTHING",
            (req.installation_id, req.repo, req.pr, req.head_sha, base_sha, now),
        )
        row = conn.execute(
            "SELECT id FROM reviews WHERE repo = ? AND pr = ? AND head_sha = ?",
            (req.repo, req.pr, req.head_sha),
        ).fetchone()
    return int(row[0])


def last_reviewed_sha(store: Store, req: ReviewRequest) -> str | None:
    """The head of this PR's latest posted review other than the current head."""
    row = store.conn.execute(
        "SELECT head_sha FROM reviews WHERE repo = ? AND pr = ? AND state = 'posted' AND head_sha != ? "
        "AND installation_id = ? ORDER BY posted_at DESC, id DESC LIMIT 1",
        (req.repo, req.pr, req.head_sha, req.installation_id),
    ).fetchone()
    return str(row[0]) if row else None


def stored_posted_fingerprints(store: Store, req: ReviewRequest) -> set[str]:
    return {
        r[0]
        for r in store.conn.execute(
            "SELECT fingerprint FROM findings WHERE repo = ? AND pr = ? AND decision = 'post' "
            "AND installation_id = ?",
            (req.repo, req.pr, req.installation_id),
        )
    }


def dismissed_fingerprints(store: Store, req: ReviewRequest) -> set[str]:
    """Fingerprints of this repo's findings whose feedback resolves to 'dismissed'."""
    labels: dict[tuple[int, str], list[tuple[str, str, float, str]]] = defaultdict(list)
    for fid, fp, label, source, weight, at in store.conn.execute(
        "SELECT f.id, f.fingerprint, fb.label, fb.source, fb.weight, fb.at FROM findings f "
        "JOIN feedback fb ON fb.finding_id = f.id WHERE f.repo = ? AND f.installation_id = ?",
        (req.repo, req.installation_id),
    ):
        labels[(fid, fp)].append((label, source, weight, at))
    out = set()
    for (_fid, fp), rows in labels.items():
        outcome = resolve_outcome(rows, include_untouched=False)
        if outcome is not None and outcome.label == "dismissed":
            out.add(fp)
    return out


def acceptance_model(
    store: Store, req: ReviewRequest, prior: Callable[[], AcceptanceModel]
) -> AcceptanceModel:
    """The repo's active model, else its org's, else the shipped prior: this installation's only."""
    org = req.repo.split("/", 1)[0]
    for scope in (f"repo:{req.repo}", f"org:{org}"):
        row = store.conn.execute(
            "SELECT params FROM model_versions WHERE scope = ? AND active = 1 "
            "AND (installation_id = ? OR installation_id IS NULL) ORDER BY version DESC LIMIT 1",
            (scope, req.installation_id),
        ).fetchone()
        if row is not None:
            try:
                return AcceptanceModel.from_json(row[0])
            except ValueError:
                log.exception("stored model for %s is unreadable; falling back", scope)
    return prior()


# ---------------------------------------------------------------------------------------------
# GitHub reads the client does not offer as one call


async def find_bot_review(gh: GitHubClient, repo: str, pr: int, marker: str) -> int | None:
    """Our submitted review whose body carries `marker`, or None."""
    for r in await gh.list_reviews(repo, pr):
        if r.get("state") != "PENDING" and marker in (r.get("body") or ""):
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
        self.secrets = list(secrets)  # masked in every text the review publishes (reviewbot.redact)
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
                "review job: %s", outcome.status,
                extra={"outcome": outcome.status, "reason": outcome.reason, "posted": outcome.posted,
                       "head_sha": req.head_sha, "github_review_id": outcome.github_review_id,
                       "seconds": {k: round(v, 3) for k, v in outcome.timings.items()}},
            )  # fmt: skip

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
                "installation_id": cmd.installation_id, "repo": cmd.repo, "pr": cmd.pr,
                "head_sha": pull.head_sha, "base_sha": pull.base_sha, "action": "command",
                "author": pull.author, "draft": pull.draft, "labels": list(pull.labels),
                "force": True, "requested_by": cmd.user, "delivery_id": p.get("delivery_id"),
            }  # fmt: skip
            job_id = self.enqueue(
                "review", payload, installation_id=cmd.installation_id, repo=cmd.repo, pr=cmd.pr,
                head_sha=pull.head_sha, dedupe_key=f"review-command:{cmd.repo}#{cmd.comment_id}",
            )  # fmt: skip
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
        (org_text, repo_text), pull, full, found, on_github = await asyncio.gather(
            gh.get_repo_config(req.repo),
            gh.get_pull(req.repo, req.pr),
            gh.get_pull_diff(req.repo, req.pr),
            find_bot_review(gh, req.repo, req.pr, marker),
            gh.existing_fingerprints(req.repo, req.pr),
        )
        try:
            config = load_config(repo_text, org_text)
            rules = ruleset_from_config(config.rules)
        except ConfigError as exc:
            return await self._config_error(gh, req, config_error_check(exc.messages))
        except RuleError as exc:
            return await self._config_error(gh, req, config_error_check([f"{CONFIG_PATH}: rules: {exc}"]))
        if not config.enabled:
            return skip("reviewbot is disabled in the config (enabled: false)")
        timings["fetch"] = time.perf_counter() - t
        if pull.state != "open":
            return skip(f"pull request is {pull.state}")
        if pull.head_sha != req.head_sha:
            return skip(f"head moved on to {pull.head_sha[:12]}; the newer job reviews it", "superseded")
        eligible, why = config.should_review(pull.author, list(pull.labels), pull.draft)
        if not eligible and not req.force:
            return skip(why)

        # Idempotency: our database, then GitHub itself (holds even if the database was lost).
        row = review_row(self.store, req.repo, req.pr, req.head_sha)
        if row is not None and row[1] == "posted" and not req.force:
            return skip("this head was already reviewed", "already_reviewed")
        review_id = claim_review_row(self.store, self.lock, req, pull.base_sha, iso(self.clock()))
        if found is not None:
            return await self._record_found(gh, req, review_id, found, timings)
        t = time.perf_counter()
        diff, since, contents = await self._fetch_change(gh, req, config, full)
        timings["fetch"] += time.perf_counter() - t

        intent = ChangeIntent(pull.title, pull.body, tuple(await self._commit_subjects(gh, req)))
        imported = await fetch_imported(gh, req.repo, req.head_sha, config.sarif_in)  # the repo's linters
        result = await self._review(req, config, rules, diff, since, contents, on_github, timings, intent,
                                    imported)  # fmt: skip
        full_files = {f.path: f for f in parse_diff(str(full))}
        restrict_to_diff(result, full_files)
        return await self._post(gh, req, review_id, result, timings, started)

    async def _fetch_change(
        self, gh: GitHubClient, req: ReviewRequest, config: RepoConfig, full: DiffText
    ) -> tuple[DiffText, str | None, dict[str, str | None]]:
        """(the diff to review, the SHA it starts from when incremental, head files it touches).

        On `synchronize`, only what changed since the last reviewed SHA, when that SHA is still an
        ancestor of the head (not after a force-push); otherwise the whole PR diff."""
        diff: DiffText = full
        since = last_reviewed_sha(self.store, req) if req.action == "synchronize" else None
        if since and await is_ancestor(gh, req.repo, since, req.head_sha):
            diff = await gh.compare_diff(req.repo, since, req.head_sha)
            log.info("incremental review since %s", since[:12], extra={"since": since})
        else:
            since = None
        wanted = [
            f.path for f in parse_diff(str(diff))
            if f.hunks and not f.is_binary and f.status != "deleted" and config.file_included(f.path)
        ]  # fmt: skip
        return diff, since, await prefetch_files(gh, req.repo, req.head_sha, wanted)

    async def _review(
        self,
        req: ReviewRequest,
        config: RepoConfig,
        rules: RuleSet,
        diff: DiffText,
        since: str | None,
        contents: dict[str, str | None],
        on_github: set[str],
        timings: dict[str, float],
        intent: ChangeIntent | None = None,
        imported: Fetched | None = None,
    ) -> ReviewResult:
        """The one pipeline on the diff to review; `on_github` are the fingerprints the bot
        already posted on the PR (read from GitHub, so they hold even without our database)."""
        config, capped = apply_limits(config, self.limits, self._default_model())
        llm, own_llm = self._llm_for(config)
        cap = token_cap(self.limits, used_today=self._tokens_today(req.installation_id))
        try:
            result = await review_change(
                Change(diff_text=str(diff), read_head=contents.get, repo=req.repo, pr=req.pr,
                       files_not_reviewed=dict(diff.skipped), intent=intent),
                config=config,
                rules=rules,
                model=acceptance_model(self.store, req, self._prior),
                llm=llm,
                dismissed_fingerprints=dismissed_fingerprints(self.store, req),
                posted_fingerprints=on_github | stored_posted_fingerprints(self.store, req),
                secrets=self.secrets,
                token_cap=cap,
                imported=imported.candidates if imported else (),
            )  # fmt: skip
        finally:
            if own_llm and llm is not None:
                await llm.aclose()
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
                self._set_state(review_id, "failed")
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
        comments = [
            c
            for c in await gh.list_review_comments(req.repo, req.pr)
            if c.review_id == github_review_id and c.fingerprint
        ]
        # The crashed run may have died before its check run: create one from what GitHub shows
        # (its funnel died with it), unless the run that posted recorded one.
        with self.lock:
            row = self.store.conn.execute(
                "SELECT check_run_id FROM reviews WHERE id = ?", (review_id,)
            ).fetchone()
        check_run_id = None
        if row is None or row[0] is None:
            recovered = ReviewResult()
            recovered.funnel.candidates = recovered.funnel.posted = len(comments)
            recovered.notes.append("Recorded after a restart: the review was already on GitHub.")
            check_run_id = await self._check_run(gh, req, recovered)
        now = iso(self.clock())
        with self.lock, self.store.transaction() as conn:
            conn.execute(
                "UPDATE reviews SET state = 'posted', github_review_id = ?, funnel = ?, posted_at = ?, "
                "check_run_id = COALESCE(check_run_id, ?) WHERE id = ?",
                (github_review_id, json.dumps({"recovered": True, "posted": len(comments)}), now,
                 check_run_id, review_id),
            )  # fmt: skip
            known = {
                r[0]
                for r in conn.execute(
                    "SELECT github_comment_id FROM findings WHERE review_id = ? "
                    "AND github_comment_id IS NOT NULL",
                    (review_id,),
                )
            }
            for c in comments:
                if c.id in known:
                    continue
                conn.execute(
                    "INSERT INTO findings (review_id, installation_id, repo, pr, path, line, side, body, "
                    "decision, reason, fingerprint, github_comment_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'post', ?, ?, ?, ?)",
                    (review_id, req.installation_id, req.repo, req.pr, c.path, c.line, c.side, c.body,
                     "recovered from GitHub after a restart", c.fingerprint, c.id, now),
                )  # fmt: skip
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

    # -- recording and metrics --------------------------------------------------------------

    def _record(
        self,
        req: ReviewRequest,
        review_id: int,
        github_review_id: int,
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
        with self.lock, self.store.transaction() as conn:
            conn.execute(
                "UPDATE reviews SET state = 'posted', github_review_id = ?, check_run_id = ?, funnel = ?, "
                "usage = ?, posted_at = ? WHERE id = ?",
                (github_review_id, check_run_id, json.dumps(result.funnel.as_dict(), sort_keys=True),
                 json.dumps(usage, sort_keys=True), now, review_id),
            )  # fmt: skip
            for d in [*result.posted, *result.suppressed]:
                cid = comment_ids.get(d.fingerprint) if d.decision == "post" else None
                conn.execute(_FINDING_INSERT, finding_row(
                    d, review_id=review_id, installation_id=req.installation_id, repo=req.repo,
                    pr=req.pr, comment_id=cid, now=now))  # fmt: skip

    def _set_state(self, review_id: int, state: str) -> None:
        with self.lock, self.store.transaction() as conn:
            conn.execute(
                "UPDATE reviews SET state = ? WHERE id = ? AND state = 'pending'", (state, review_id)
            )

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
            rows = self.store.conn.execute(
                "SELECT usage FROM reviews WHERE installation_id = ? AND posted_at >= ?",
                (installation_id, day),
            ).fetchall()
        total = 0
        for (raw,) in rows:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                usage = json.loads(raw)
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
    """The App client the settings describe, or None when the App id or key is not set."""
    if settings.github_app_id is None or settings.github_private_key is None:
        return None
    return GitHubApp(
        settings.github_app_id,
        settings.private_key_pem(),
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
        store, queue.lock, client_for=app.installation_client, llm_factory=llm_factory,
        metrics=metrics, clock=queue.clock, enqueue=queue.enqueue, secrets=settings_secrets(settings),
        limits=limits_from_settings(settings),
    )  # fmt: skip
    return {"review": handler.review, "command.review": handler.command_review}
