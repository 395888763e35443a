"""Feedback I/O: read signals from GitHub and webhooks, write labels to the store.

The judgement lives in `feedback.py` (pure); this module only fetches (reactions with ETags, file
contents at two SHAs) and writes `feedback` rows. Entry points the worker calls:

- `poll_reactions(store, gh, repo, now=...)`: the scheduled job; GitHub sends no reaction webhooks.
- `handle_event(store, gh, event, payload, now=...)`: `pull_request_review_comment` (replies),
  `pull_request_review_thread` (resolved / unresolved), `pull_request` synchronize (a later commit
  touching commented lines, an applied suggestion) and closed (untouched comments, suppressed
  candidates' follow-up).

Every read and write of findings and labels goes through `records`, under the delivery's tenant.
`gh` is anything with the two async methods of `FeedbackGitHub`: github.GitHubClient has them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from reviewbot.app import records
from reviewbot.app.records import FindingRef, Tenant
from reviewbot.app.store import Store
from reviewbot.core.feedback import (
    LabelEvent,
    Reaction,
    classify_reply,
    extract_suggestion,
    lines_changed,
    reaction_labels,
    suggestion_applied,
    thread_label,
    untouched_label,
)

if TYPE_CHECKING:
    from reviewbot.learning.retrain import RetrainPolicy

#: How far back reactions are polled: after two weeks a comment's fate is settled.
POLL_WINDOW_DAYS = 14
DEFAULT_BOT_LOGINS = ("reviewbot", "reviewbot[bot]")


class FeedbackGitHub(Protocol):
    async def get_comment_reactions(
        self, repo: str, comment_id: int, etag: str | None = None
    ) -> tuple[list[dict[str, Any]] | None, str | None]:
        """(reactions as GitHub's JSON, new ETag); (None, etag) when unchanged (304)."""
        ...

    async def get_file(self, repo: str, path: str, ref: str | None = None) -> str | None:
        """The file's text at ref, or None when it does not exist there."""
        ...


def iso_time(value: object, fallback: str) -> str:
    """GitHub's '2026-01-02T03:04:05Z' -> '2026-01-02T03:04:05+00:00' (one format sorts right)."""
    if not value:
        return fallback
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).isoformat()
    except ValueError:
        return fallback


def reactions_from_json(items: Iterable[Mapping[str, Any]]) -> list[Reaction]:
    """GitHub's reaction objects -> Reaction values."""
    out = []
    for it in items:
        user = it.get("user") or {}
        out.append(
            Reaction(
                id=int(it["id"]),
                user=str(user.get("login", "")),
                user_type=str(user.get("type", "User")),
                content=str(it["content"]),
                created_at=iso_time(it.get("created_at"), ""),
            )
        )
    return out


# --------------------------------------------------------------------------- store writes


def sync_reactions(
    store: Store, t: Tenant, finding: FindingRef, reactions: list[Reaction], *, bot_logins: Iterable[str]
) -> int:
    """Make the finding's reaction labels match the reactions now on the comment; returns changes.

    One row per user (provenance {"user": login, ...}): a changed mind replaces the row, a removed
    reaction removes it.
    """
    wanted = reaction_labels(reactions, bot_logins=bot_logins)
    mine = records.finding_labels(store, t, finding.id, source="reaction")
    have = {str(lb.provenance.get("user")): lb for lb in mine}
    changes = 0
    with store.transaction():
        for user, lb in have.items():
            if user not in wanted:
                records.delete_label(store, t, lb.id)
                changes += 1
        for user, (label, r) in wanted.items():
            old = have.get(user)
            if old is not None and old.provenance.get("reaction_id") == r.id:
                continue
            if old is not None:
                records.delete_label(store, t, old.id)
            ev = LabelEvent(
                finding_id=finding.id,
                label=label,
                source="reaction",
                provenance={"user": user, "reaction_id": r.id, "content": r.content},
                at=r.created_at,
            )
            changes += int(records.add_label(store, t, ev))
    return changes


# --------------------------------------------------------------------------- polling


@dataclass(slots=True)
class PollReport:
    polled: int = 0
    not_modified: int = 0
    label_changes: int = 0
    errors: list[str] = field(default_factory=list)


async def poll_reactions(
    store: Store,
    gh: FeedbackGitHub,
    t: Tenant,
    *,
    now: datetime,
    bot_logins: Iterable[str] = DEFAULT_BOT_LOGINS,
    window_days: int = POLL_WINDOW_DAYS,
) -> PollReport:
    """Poll the reactions of the tenant's bot comments posted in the last `window_days`.

    Each request carries the ETag of the previous answer, so an unchanged comment costs a 304 and
    no rate limit. A failing comment is reported and skipped; the others are still polled.
    """
    bots = list(bot_logins)
    since = (now - timedelta(days=window_days)).isoformat()
    report = PollReport()
    for finding in records.recent_comments(store, t, since=since):
        comment_id = int(finding.comment_id or 0)
        try:
            previous = records.poll_etag(store, t, comment_id)
            items, etag = await gh.get_comment_reactions(t.repo, comment_id, previous)
        except Exception as exc:  # one bad comment must not stop the poll of the others
            report.errors.append(f"comment {comment_id}: {type(exc).__name__}: {exc}")
            continue
        report.polled += 1
        if items is None:
            report.not_modified += 1
        else:
            reactions = reactions_from_json(items)
            report.label_changes += sync_reactions(store, t, finding, reactions, bot_logins=bots)
        status = 304 if items is None else 200
        records.save_poll(store, t, comment_id, etag=etag, status=status, now=now.isoformat())
    return report


# --------------------------------------------------------------------------- webhook events


def _may_give_feedback(comment: Mapping[str, Any], pull_request: Mapping[str, Any]) -> bool:
    """People with write access, and the PR's author, label our comments; on a public repo a
    passer-by's reply must not teach the repo's model (GitHub always sends the association; a
    payload without it is trusted)."""
    from reviewbot.app.webhooks import COMMAND_ASSOCIATIONS

    association = comment.get("author_association")
    if not isinstance(association, str) or association.upper() in COMMAND_ASSOCIATIONS:
        return True
    author = (pull_request.get("user") or {}).get("login")
    return bool(author) and author == (comment.get("user") or {}).get("login")


def on_review_comment(
    store: Store,
    t: Tenant,
    payload: Mapping[str, Any],
    *,
    now: datetime,
    bot_logins: Iterable[str] = DEFAULT_BOT_LOGINS,
) -> LabelEvent | None:
    """A reply under a bot comment (created / edited / deleted) -> its label, if it has one."""
    comment = payload.get("comment") or {}
    parent = comment.get("in_reply_to_id")
    if not parent:
        return None
    finding = records.finding_by_comment(store, t, int(parent))
    if finding is None:
        return None
    user = (comment.get("user") or {}).get("login", "")
    if user.lower() in {b.lower() for b in bot_logins} or (comment.get("user") or {}).get("type") == "Bot":
        return None
    if not _may_give_feedback(comment, payload.get("pull_request") or {}):
        return None
    reply_id = int(comment["id"])
    records.remove_labels(store, t, finding.id, "reply", comment_id=reply_id)
    if payload.get("action") == "deleted":
        return None
    label = classify_reply(str(comment.get("body") or ""))
    if label is None:
        return None
    ev = LabelEvent(
        finding_id=finding.id,
        label=label,
        source="reply",
        provenance={"comment_id": reply_id, "user": user},
        at=iso_time(comment.get("updated_at") or comment.get("created_at"), now.isoformat()),
    )
    records.add_label(store, t, ev)
    return ev


class _Files:
    """Per-call cache of file texts at SHAs (many findings share a file)."""

    def __init__(self, gh: FeedbackGitHub, repo: str) -> None:
        self.gh, self.repo = gh, repo
        self.cache: dict[tuple[str, str], str | None] = {}

    async def get(self, path: str, ref: str) -> str | None:
        key = (path, ref)
        if key not in self.cache:
            self.cache[key] = await self.gh.get_file(self.repo, path, ref)
        return self.cache[key]


async def _code_changed(files: _Files, finding: FindingRef, head_sha: str) -> bool | None:
    """Whether the finding's lines changed between its review's SHA and head_sha (None: unknown)."""
    if not finding.path or not finding.line or finding.side == "LEFT":
        return None
    if finding.head_sha == head_sha:
        return False
    old = await files.get(finding.path, finding.head_sha)
    if old is None:
        return None
    new = await files.get(finding.path, head_sha)
    start = int(finding.line)
    end = int(finding.end_line or start)
    lo, hi = min(start, end), max(start, end)
    if hi > len(old.splitlines()):
        return None
    return lines_changed(old, new, lo, hi)


async def on_review_thread(
    store: Store, gh: FeedbackGitHub, t: Tenant, payload: Mapping[str, Any], *, now: datetime
) -> LabelEvent | None:
    """Resolved + the lines changed -> accepted; resolved, unchanged -> weak dismissal; unresolved
    -> the thread's label is withdrawn."""
    thread = payload.get("thread") or {}
    comments = thread.get("comments") or []
    if not comments:
        return None
    finding = records.finding_by_comment(store, t, int(comments[0]["id"]))
    if finding is None:
        return None
    node = str(thread.get("node_id") or comments[0]["id"])
    records.remove_labels(store, t, finding.id, "thread", thread=node)
    if payload.get("action") != "resolved":
        return None
    head = ((payload.get("pull_request") or {}).get("head") or {}).get("sha") or finding.head_sha
    changed = await _code_changed(_Files(gh, t.repo), finding, head)
    verdict = thread_label(True, bool(changed))
    assert verdict is not None
    label, weight = verdict
    user = (payload.get("sender") or {}).get("login", "")
    ev = LabelEvent(
        finding_id=finding.id,
        label=label,
        source="thread",
        provenance={"thread": node, "user": user, "head_sha": head, "code_changed": bool(changed)},
        weight=weight,
        at=iso_time((payload.get("pull_request") or {}).get("updated_at"), now.isoformat()),
    )
    records.add_label(store, t, ev)
    return ev


def _sources(store: Store, t: Tenant, finding_id: int) -> set[str]:
    return {lb.source for lb in records.finding_labels(store, t, finding_id)}


async def check_addressed(
    store: Store, gh: FeedbackGitHub, t: Tenant, pr: int, head_sha: str, *, at: str
) -> list[LabelEvent]:
    """After a push: posted findings whose lines changed -> accepted ('suggestion' when the new
    code is the comment's suggestion, else 'commit'); suppressed ones -> 'suppressed_followup'."""
    files = _Files(gh, t.repo)
    events: list[LabelEvent] = []
    for finding in records.pr_findings(store, t, pr):
        have = _sources(store, t, finding.id)
        if have & {"commit", "suggestion", "suppressed_followup"}:
            continue
        changed = await _code_changed(files, finding, head_sha)
        if not changed:
            continue
        if finding.decision != "post":
            source = "suppressed_followup"
        else:
            source = "commit"
            sugg = extract_suggestion(finding.body)
            if sugg is not None and finding.path and finding.line:
                start = int(finding.line)
                end = int(finding.end_line or start)
                old = await files.get(finding.path, finding.head_sha) or ""
                new = await files.get(finding.path, head_sha)
                if suggestion_applied(old, new, min(start, end), max(start, end), sugg):
                    source = "suggestion"
        ev = LabelEvent(
            finding_id=finding.id,
            label="accepted",
            source=source,
            provenance={"sha": head_sha},
            at=at,
        )
        if records.add_label(store, t, ev):
            events.append(ev)
    return events


async def on_pr_closed(
    store: Store, gh: FeedbackGitHub, t: Tenant, pr: int, head_sha: str, *, merged: bool, at: str
) -> list[LabelEvent]:
    """The PR closed: check its final head for addressed comments, then mark the rest.

    Posted comments with no signal at all get the weak 'untouched' label (see docs/feedback.md);
    suppressed candidates whose code never changed get suppressed_followup 'dismissed'.
    """
    events = await check_addressed(store, gh, t, pr, head_sha, at=at)
    for finding in records.pr_findings(store, t, pr):
        have = _sources(store, t, finding.id)
        if finding.decision == "post":
            if have:
                continue
            ev = untouched_label(finding.id, merged=merged, pr=pr, at=at)
        else:
            if "suppressed_followup" in have:
                continue
            ev = LabelEvent(
                finding_id=finding.id,
                label="dismissed",
                source="suppressed_followup",
                provenance={"sha": head_sha, "closed": True},
                at=at,
            )
        if records.add_label(store, t, ev):
            events.append(ev)
    return events


async def handle_event(
    store: Store,
    gh: FeedbackGitHub,
    event: str,
    payload: Mapping[str, Any],
    *,
    now: datetime,
    bot_logins: Iterable[str] = DEFAULT_BOT_LOGINS,
    installation_id: int | None = None,
) -> list[LabelEvent]:
    """Route one webhook delivery to the handler that turns it into labels (others: []).

    The labels go to the delivery's tenant: its installation (the payload's, else
    `installation_id`, the job's) and repository; without both there is nobody to label for."""
    action = payload.get("action")
    repo = str((payload.get("repository") or {}).get("full_name") or "")
    iid = (payload.get("installation") or {}).get("id") or installation_id
    if not repo or iid is None:
        return []
    t = Tenant(int(iid), repo)
    if event == "pull_request_review_comment":
        ev = on_review_comment(store, t, payload, now=now, bot_logins=bot_logins)
        return [ev] if ev else []
    if event == "pull_request_review_thread":
        ev = await on_review_thread(store, gh, t, payload, now=now)
        return [ev] if ev else []
    if event == "pull_request" and action in ("synchronize", "closed"):
        pr_obj = payload.get("pull_request") or {}
        pr = int(pr_obj.get("number") or payload.get("number") or 0)
        if not pr:
            return []
        head = str(payload.get("after") or (pr_obj.get("head") or {}).get("sha"))
        if action == "closed":
            return await on_pr_closed(
                store, gh, t, pr, head, merged=bool(pr_obj.get("merged")), at=now.isoformat()
            )
        return await check_addressed(store, gh, t, pr, head, at=now.isoformat())
    return []


# --------------------------------------------------------------------------- worker wiring

JobHandler = Callable[[Any], Awaitable[None]]
ClientFor = Callable[[int], Awaitable[FeedbackGitHub]]
Enqueue = Callable[..., int]


def repos_to_poll(store: Store, *, now: datetime, window_days: int = POLL_WINDOW_DAYS) -> list[Tenant]:
    """Every tenant with bot comments posted within the polling window."""
    return records.tenants_with_recent_comments(store, since=(now - timedelta(days=window_days)).isoformat())


def schedule_feedback_jobs(
    store: Store,
    enqueue: Enqueue,
    *,
    now: datetime,
    window_days: int = POLL_WINDOW_DAYS,
    retrain_policy: RetrainPolicy | None = None,
) -> list[int]:
    """The periodic tick (e.g. every 15 minutes): one 'poll_feedback' job per repo with recent bot
    comments, and a 'retrain' job for every repo whose model is due. Deduplicated per repo, so a
    tick while the previous one's jobs are still queued adds nothing. Returns the job ids."""
    from reviewbot.learning.retrain import (  # (imports the acceptance model: keep this light)
        RetrainPolicy,
        is_due,
    )

    policy = retrain_policy or RetrainPolicy()

    ids = [
        enqueue(
            "poll_feedback",
            {},
            installation_id=t.installation_id,
            repo=t.repo,
            dedupe_key=f"poll_feedback:{t.installation_id}:{t.repo}",
        )
        for t in repos_to_poll(store, now=now, window_days=window_days)
    ]
    for t in records.tenants_with_labels(store):
        if is_due(store, t, now=now, policy=policy)[0]:
            ids.append(
                enqueue(
                    "retrain",
                    {},
                    installation_id=t.installation_id,
                    repo=t.repo,
                    dedupe_key=f"retrain:{t.installation_id}:{t.repo}",
                )
            )
    return ids


def feedback_handlers(
    store: Store,
    client_for: ClientFor,
    *,
    now: Callable[[], datetime],
    enqueue: Enqueue | None = None,
    bot_logins: Iterable[str] = DEFAULT_BOT_LOGINS,
    retrain_policy: RetrainPolicy | None = None,
) -> dict[str, JobHandler]:
    """Worker handlers for job kinds 'feedback' (a webhook delivery, as webhooks.plan queues it:
    payload {'webhook_event', 'webhook'}) and 'poll_feedback' (job.repo). `client_for(installation
    id)` gives the GitHub client; when `enqueue` (JobQueue.enqueue) is given, a repo whose model
    became due gets a 'retrain' job right away."""
    bots = tuple(bot_logins)

    def maybe_retrain(job: Any) -> None:
        from reviewbot.learning.retrain import RetrainPolicy, is_due

        policy = retrain_policy or RetrainPolicy()
        t = Tenant(int(job.installation_id), str(job.repo)) if job.repo else None
        if enqueue is not None and t is not None and is_due(store, t, now=now(), policy=policy)[0]:
            enqueue(
                "retrain",
                {},
                installation_id=t.installation_id,
                repo=t.repo,
                dedupe_key=f"retrain:{t.installation_id}:{t.repo}",
            )

    async def feedback(job: Any) -> None:
        event = str(job.payload.get("webhook_event") or "")
        payload = job.payload.get("webhook") or {}
        gh = await client_for(int(job.installation_id))
        labels = await handle_event(
            store, gh, event, payload, now=now(), bot_logins=bots, installation_id=int(job.installation_id)
        )
        if labels:
            maybe_retrain(job)

    async def poll_feedback(job: Any) -> None:
        gh = await client_for(int(job.installation_id))
        t = Tenant(int(job.installation_id), str(job.repo))
        report = await poll_reactions(store, gh, t, now=now(), bot_logins=bots)
        if report.errors and report.polled == 0:
            raise RuntimeError(f"reaction poll of {job.repo} failed: {report.errors[0]}")
        if report.label_changes:
            maybe_retrain(job)

    return {"feedback": feedback, "poll_feedback": poll_feedback}
