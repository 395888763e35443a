"""GitHub webhooks, sans I/O: verify a signature, and turn (event, payload) into a typed action.

Nothing here touches the network, the clock or the database, so the server stays a thin edge and
every routing rule is tested with plain data (the real payload examples included). A payload that
is not shaped like GitHub's raises `PayloadError`, which the server answers with 400.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

REVIEW_ACTIONS = frozenset({"opened", "reopened", "ready_for_review", "synchronize"})
COMMAND_KINDS = ("review", "pause", "resume")
INSTALLATION_ACTIONS = frozenset({"created", "deleted", "suspend", "unsuspend"})


class PayloadError(ValueError):
    """The payload is not shaped like GitHub's (missing key, wrong type). The server answers 400."""


def sign(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body` (used by tests and the bench)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is GitHub's HMAC-SHA256 of the raw `body` under `secret` (constant time)."""
    if not secret:
        return False
    return verify_digest(hmac.new(secret, body, hashlib.sha256), header)


def verify_digest(mac: hmac.HMAC, header: str | None) -> bool:
    """`verify_signature` for a body already fed to `mac` chunk by chunk (the server streams it)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + mac.hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), header.strip().encode("ascii", "replace"))


# --- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnqueueReview:
    """A PR needs a review at `head_sha`. Drafts and bot authors are filtered later by repo config."""

    installation_id: int
    repo: str
    pr: int
    head_sha: str
    base_sha: str
    action: str
    author: str
    draft: bool
    labels: tuple[str, ...] = ()
    author_is_bot: bool = False
    repo_id: int | None = None
    before_sha: str | None = None  # on synchronize: the previous head
    updated_at: str | None = None  # the PR's updated_at in the event (ISO UTC): head recency


@dataclass(frozen=True, slots=True)
class Command:
    """`@reviewbot review|pause|resume` in a comment on a PR."""

    kind: str  # 'review' | 'pause' | 'resume'
    installation_id: int
    repo: str
    pr: int
    comment_id: int
    user: str
    repo_id: int | None = None


@dataclass(frozen=True, slots=True)
class RepoRef:
    id: int
    full_name: str


@dataclass(frozen=True, slots=True)
class InstallationChange:
    """The App was installed, uninstalled, suspended, unsuspended, or its repositories changed."""

    action: str  # 'created' | 'deleted' | 'suspend' | 'unsuspend' | 'added' | 'removed'
    installation_id: int
    account: str
    account_type: str | None = None
    repos_added: tuple[RepoRef, ...] = ()
    repos_removed: tuple[RepoRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Feedback:
    """A signal about our comments: a thread (un)resolved, a reply, a PR closed or merged."""

    event: str
    action: str
    installation_id: int
    repo: str
    pr: int
    user: str
    comment_id: int | None = None
    in_reply_to_id: int | None = None
    body: str | None = None
    thread_node_id: str | None = None
    thread_comment_ids: tuple[int, ...] = ()
    merged: bool | None = None
    head_sha: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    hook_id: int | None
    zen: str | None


@dataclass(frozen=True, slots=True)
class Ignore:
    reason: str


@dataclass(frozen=True, slots=True)
class RerunReview:
    """The "Re-run" button of the `reviewbot` check run (check_run.rerequested): review that
    head of the pull request again, like `@reviewbot review`."""

    installation_id: int
    repo: str
    pr: int
    head_sha: str
    base_sha: str
    check_run_id: int
    user: str
    repo_id: int | None = None


#: The name of the check run the App creates (GitHubClient.create_check_run's default).
CHECK_RUN_NAME = "reviewbot"

Action = EnqueueReview | Command | InstallationChange | Feedback | RerunReview | Ping | Ignore


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What the server enqueues for an action (see `plan`)."""

    kind: str
    payload: dict[str, Any]
    installation_id: int | None = None
    repo: str | None = None
    pr: int | None = None
    head_sha: str | None = None
    dedupe_key: str | None = None
    supersede: bool = False  # a newer job of this kind for the same (repo, pr) replaces queued ones
    head_at: str | None = None  # what "newer" means: the event's pull_request.updated_at
    cancel_installation: bool = False  # queued jobs of the installation are void (uninstall)


# --- payload accessors: every read is typed, so a bad shape is a PayloadError, never a crash -----

_MISSING = object()


def _get(obj: Any, path: str, typ: type | tuple[type, ...], *, optional: bool = False) -> Any:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            raise PayloadError(f"{path}: expected an object at {part!r}")
        cur = cur.get(part, _MISSING)
        if cur is _MISSING:
            if optional:
                return None
            raise PayloadError(f"{path}: missing")
    if cur is None and optional:
        return None
    types = typ if isinstance(typ, tuple) else (typ,)
    # bool is an int in Python; GitHub never sends a bool where a number is meant.
    if isinstance(cur, bool) and bool not in types:
        raise PayloadError(f"{path}: expected {_names(types)}, got bool")
    if not isinstance(cur, types):
        raise PayloadError(f"{path}: expected {_names(types)}, got {type(cur).__name__}")
    _check_storable(path, cur)
    return cur


_INT64 = range(-(2**63), 2**63)


def _check_storable(path: str, value: Any) -> None:
    """Values we store must fit SQLite: 64-bit integers, text that encodes as UTF-8 (JSON allows
    a lone surrogate escape like \\ud800, which Python decodes but cannot encode)."""
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        raise PayloadError(f"{path}: number out of range")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadError(f"{path}: text is not valid Unicode (lone surrogate)") from None


def _check_stored_fields(payload: dict[str, Any]) -> None:
    """The fields the server records for every delivery, whatever the event (see server.py)."""
    for path in ("action", "installation.id", "repository.full_name"):
        cur: Any = payload
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        _check_storable(path, cur)


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def _installation_id(payload: dict[str, Any]) -> int | None:
    found = _get(payload, "installation.id", int, optional=True)
    return int(found) if found is not None else None


def _is_bot(user: dict[str, Any]) -> bool:
    login = str(_get(user, "login", str))
    kind = _get(user, "type", str, optional=True)
    return kind == "Bot" or login.endswith("[bot]")


def _utc_text(value: str | None) -> str | None:
    """GitHub's timestamp as fixed-width ISO UTC text (sortable as text), or None if unreadable."""
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def _repo(payload: dict[str, Any]) -> tuple[str, int | None]:
    return _get(payload, "repository.full_name", str), _get(payload, "repository.id", int, optional=True)


# --- routing ---------------------------------------------------------------------------------------


def route(event: str, payload: Any, *, mention: str = "reviewbot") -> Action:
    """Decide what a delivery means. `mention` is the App's handle in `@reviewbot review`."""
    if not isinstance(payload, dict):
        raise PayloadError(f"payload: expected an object, got {type(payload).__name__}")
    _check_stored_fields(payload)
    if event == "ping":
        return Ping(
            hook_id=_get(payload, "hook_id", int, optional=True), zen=_get(payload, "zen", str, optional=True)
        )
    handler = _ROUTES.get(event)
    if handler is None:
        return Ignore(f"event {event!r} is not used")
    action = _get(payload, "action", str)
    return handler(action, payload, mention)


def _route_pull_request(action: str, payload: dict[str, Any], mention: str) -> Action:
    pr = _get(payload, "pull_request", dict)
    repo, repo_id = _repo(payload)
    number = _get(pr, "number", int)
    if action in REVIEW_ACTIONS:
        installation_id = _installation_id(payload)
        if installation_id is None:
            return Ignore("no installation: not a GitHub App delivery")
        user = _get(pr, "user", dict)
        labels = tuple(_get(label, "name", str) for label in _get(pr, "labels", list, optional=True) or [])
        return EnqueueReview(
            installation_id=installation_id,
            repo=repo,
            pr=number,
            head_sha=_get(pr, "head.sha", str),
            base_sha=_get(pr, "base.sha", str),
            action=action,
            author=_get(user, "login", str),
            draft=bool(_get(pr, "draft", bool, optional=True)),
            labels=labels,
            author_is_bot=_is_bot(user),
            repo_id=repo_id,
            before_sha=_get(payload, "before", str, optional=True) if action == "synchronize" else None,
            updated_at=_utc_text(_get(pr, "updated_at", str, optional=True)),
        )
    if action == "closed":
        installation_id = _installation_id(payload)
        if installation_id is None:
            return Ignore("no installation: not a GitHub App delivery")
        return Feedback(
            event="pull_request",
            action="closed",
            installation_id=installation_id,
            repo=repo,
            pr=number,
            user=_get(payload, "sender.login", str),
            merged=bool(_get(pr, "merged", bool, optional=True)),
            head_sha=_get(pr, "head.sha", str),
        )
    return Ignore(f"pull_request.{action} is not used")


_COMMAND_CACHE: dict[str, re.Pattern[str]] = {}


def _command_pattern(mention: str) -> re.Pattern[str]:
    pat = _COMMAND_CACHE.get(mention)
    if pat is None:
        pat = re.compile(
            r"(?<![\w/@-])@" + re.escape(mention) + r"(?![\w-])\s+(" + "|".join(COMMAND_KINDS) + r")\b",
            re.IGNORECASE,
        )
        _COMMAND_CACHE[mention] = pat
    return pat


#: Who may give `@reviewbot` commands: the repo's owner, org members and collaborators.
COMMAND_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


def parse_command(body: str, *, mention: str = "reviewbot") -> str | None:
    """The command in a comment body, ignoring quoted lines ('> ...') and fenced code."""
    pat = _command_pattern(mention)
    in_fence = False
    for line in body.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence or stripped.startswith(">"):
            continue
        m = pat.search(line)
        if m:
            return m.group(1).lower()
    return None


def _route_issue_comment(action: str, payload: dict[str, Any], mention: str) -> Action:
    issue = _get(payload, "issue", dict)
    comment = _get(payload, "comment", dict)
    if action != "created":
        return Ignore(f"issue_comment.{action} is not used")
    if _get(issue, "pull_request", dict, optional=True) is None:
        return Ignore("comment on an issue, not a pull request")
    user = _get(comment, "user", dict)
    if _is_bot(user):
        return Ignore("comment by a bot")
    kind = parse_command(_get(comment, "body", str, optional=True) or "", mention=mention)
    if kind is None:
        return Ignore("no command in comment")
    association = _get(comment, "author_association", str, optional=True)
    if association is not None and association.upper() not in COMMAND_ASSOCIATIONS:
        # On a public repo anyone can comment: only people with write access steer the bot.
        return Ignore(f"command from a user without write access (author_association {association})")
    installation_id = _installation_id(payload)
    if installation_id is None:
        return Ignore("no installation: not a GitHub App delivery")
    repo, repo_id = _repo(payload)
    return Command(
        kind=kind,
        installation_id=installation_id,
        repo=repo,
        pr=_get(issue, "number", int),
        comment_id=_get(comment, "id", int),
        user=_get(user, "login", str),
        repo_id=repo_id,
    )


def _repo_refs(payload: dict[str, Any], key: str) -> tuple[RepoRef, ...]:
    items = _get(payload, key, list, optional=True) or []
    return tuple(RepoRef(id=_get(item, "id", int), full_name=_get(item, "full_name", str)) for item in items)


def _installation_change(action: str, payload: dict[str, Any], added: str, removed: str | None) -> Action:
    inst = _get(payload, "installation", dict)
    return InstallationChange(
        action=action,
        installation_id=_get(inst, "id", int),
        account=_get(inst, "account.login", str),
        account_type=_get(inst, "account.type", str, optional=True),
        repos_added=_repo_refs(payload, added),
        repos_removed=_repo_refs(payload, removed) if removed else (),
    )


def _route_installation(action: str, payload: dict[str, Any], mention: str) -> Action:
    if action not in INSTALLATION_ACTIONS:
        return Ignore(f"installation.{action} is not used")
    return _installation_change(action, payload, "repositories", None)


def _route_installation_repositories(action: str, payload: dict[str, Any], mention: str) -> Action:
    if action not in ("added", "removed"):
        return Ignore(f"installation_repositories.{action} is not used")
    return _installation_change(action, payload, "repositories_added", "repositories_removed")


def _route_review_thread(action: str, payload: dict[str, Any], mention: str) -> Action:
    if action not in ("resolved", "unresolved"):
        return Ignore(f"pull_request_review_thread.{action} is not used")
    thread = _get(payload, "thread", dict)
    installation_id = _installation_id(payload)
    if installation_id is None:
        return Ignore("no installation: not a GitHub App delivery")
    repo, _ = _repo(payload)
    comments = _get(thread, "comments", list)
    return Feedback(
        event="pull_request_review_thread",
        action=action,
        installation_id=installation_id,
        repo=repo,
        pr=_get(payload, "pull_request.number", int),
        user=_get(payload, "sender.login", str),
        thread_node_id=_get(thread, "node_id", str, optional=True),
        thread_comment_ids=tuple(_get(c, "id", int) for c in comments),
    )


def _route_review_comment(action: str, payload: dict[str, Any], mention: str) -> Action:
    if action not in ("created", "edited", "deleted"):
        return Ignore(f"pull_request_review_comment.{action} is not used")
    comment = _get(payload, "comment", dict)
    user = _get(comment, "user", dict)
    reply_to = _get(comment, "in_reply_to_id", int, optional=True)
    if reply_to is None:
        return Ignore("review comment is not a reply")
    if _is_bot(user):
        return Ignore("reply by a bot")
    installation_id = _installation_id(payload)
    if installation_id is None:
        return Ignore("no installation: not a GitHub App delivery")
    repo, _ = _repo(payload)
    return Feedback(
        event="pull_request_review_comment",
        action=action,
        installation_id=installation_id,
        repo=repo,
        pr=_get(payload, "pull_request.number", int),
        user=_get(user, "login", str),
        comment_id=_get(comment, "id", int),
        in_reply_to_id=reply_to,
        body=_get(comment, "body", str, optional=True) or "",
    )


def _route_check_run(action: str, payload: dict[str, Any], mention: str) -> Action:
    if action != "rerequested":
        return Ignore(f"check_run.{action} is not used")
    run = _get(payload, "check_run", dict)
    if _get(run, "name", str) != CHECK_RUN_NAME:
        return Ignore("check_run.rerequested for another check")
    installation_id = _installation_id(payload)
    if installation_id is None:
        return Ignore("no installation: not a GitHub App delivery")
    head_sha = _get(run, "head_sha", str)
    pulls = _get(run, "pull_requests", list, optional=True) or []
    pull = next((p for p in pulls if isinstance(p, dict) and _get(p, "head.sha", str) == head_sha), None)
    if pull is None:
        return Ignore("check_run.rerequested: no open pull request has this head")
    repo, repo_id = _repo(payload)
    return RerunReview(
        installation_id=installation_id,
        repo=repo,
        pr=_get(pull, "number", int),
        head_sha=head_sha,
        base_sha=_get(pull, "base.sha", str),
        check_run_id=_get(run, "id", int),
        user=_get(payload, "sender.login", str),
        repo_id=repo_id,
    )


_ROUTES = {
    "check_run": _route_check_run,
    "pull_request": _route_pull_request,
    "issue_comment": _route_issue_comment,
    "installation": _route_installation,
    "installation_repositories": _route_installation_repositories,
    "pull_request_review_thread": _route_review_thread,
    "pull_request_review_comment": _route_review_comment,
}


# --- action -> job --------------------------------------------------------------------------------


def plan(action: Action, *, event: str = "", payload: dict[str, Any] | None = None) -> list[JobSpec]:
    """The jobs an action becomes ([]: acknowledge only). Job kinds: review, command.<kind>,
    installation, feedback. Payloads are plain JSON (the action's fields); a feedback job also
    carries the raw delivery (`webhook_event`, `webhook`) for feedback_poll.handle_event. A push to
    a PR (synchronize) is both a review and a feedback signal (did the new commit address a finding)."""
    if isinstance(action, EnqueueReview):
        jobs = [
            JobSpec(
                kind="review",
                payload=_jsonable(action),
                installation_id=action.installation_id,
                repo=action.repo,
                pr=action.pr,
                head_sha=action.head_sha,
                dedupe_key=f"review:{action.repo}#{action.pr}@{action.head_sha}",
                supersede=True,
                head_at=action.updated_at,
            )
        ]
        if action.action == "synchronize":
            signal = Feedback(
                event="pull_request",
                action="synchronize",
                installation_id=action.installation_id,
                repo=action.repo,
                pr=action.pr,
                user=action.author,
                head_sha=action.head_sha,
            )
            jobs.append(_feedback_job(signal, event, payload))
        return jobs
    if isinstance(action, RerunReview):
        return [
            JobSpec(
                kind="review",
                payload={**_jsonable(action), "action": "rerequested", "force": True},
                installation_id=action.installation_id,
                repo=action.repo,
                pr=action.pr,
                head_sha=action.head_sha,
                dedupe_key=f"review-rerun:{action.repo}#{action.pr}@{action.head_sha}",
            )
        ]
    if isinstance(action, Command):
        return [
            JobSpec(
                kind=f"command.{action.kind}",
                payload=_jsonable(action),
                installation_id=action.installation_id,
                repo=action.repo,
                pr=action.pr,
                dedupe_key=f"command:{action.repo}#{action.comment_id}",
            )
        ]
    if isinstance(action, InstallationChange):
        return [
            JobSpec(
                kind="installation",
                payload=_jsonable(action),
                installation_id=action.installation_id,
                cancel_installation=action.action == "deleted",
            )
        ]
    if isinstance(action, Feedback):
        return [_feedback_job(action, event, payload), *_conversation_job(action, payload)]
    return []


def _conversation_job(action: Feedback, payload: dict[str, Any] | None) -> list[JobSpec]:
    """A question replied under a review comment, by someone with write access: a `conversation`
    job (reviewbot.app.conversation answers it if the thread is reviewbot's). One per question."""
    from reviewbot.app.conversation import is_question, may_ask

    comment = (payload or {}).get("comment") or {}
    if action.event != "pull_request_review_comment" or action.action != "created" or not payload:
        return []
    if not may_ask(comment.get("author_association")) or not is_question(action.body or ""):
        return []
    key = f"conversation:{action.repo}#{action.comment_id}"
    return [
        JobSpec(
            kind="conversation",
            payload={"webhook": payload},
            installation_id=action.installation_id,
            repo=action.repo,
            pr=action.pr,
            dedupe_key=key,
        )
    ]


def _feedback_job(action: Feedback, event: str, payload: dict[str, Any] | None) -> JobSpec:
    return JobSpec(
        kind="feedback",
        payload={**_jsonable(action), "webhook_event": event, "webhook": payload or {}},
        installation_id=action.installation_id,
        repo=action.repo,
        pr=action.pr,
        head_sha=action.head_sha,
    )


def _jsonable(action: Any) -> dict[str, Any]:
    """An action's fields as plain JSON (tuples as lists). Not `dataclasses.asdict`: its deep copy
    of every value was a tenth of the server's time per delivery (issue #14)."""
    return {f.name: _plain(getattr(action, f.name)) for f in fields(action)}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(value)
    return value


def installation_change_from_payload(data: dict[str, Any]) -> InstallationChange:
    """Rebuild an `InstallationChange` from a job payload written by `plan`."""
    return InstallationChange(
        action=data["action"],
        installation_id=int(data["installation_id"]),
        account=data["account"],
        account_type=data.get("account_type"),
        repos_added=tuple(RepoRef(int(r["id"]), r["full_name"]) for r in data.get("repos_added", [])),
        repos_removed=tuple(RepoRef(int(r["id"]), r["full_name"]) for r in data.get("repos_removed", [])),
    )
