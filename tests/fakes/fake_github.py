"""A fake GitHub REST API: a real HTTP server on 127.0.0.1 that githubkit can talk to.

It keeps repos, commits (a dict path -> content per commit), pull requests, reviews, comments,
reactions and check runs in memory, answers with GitHub's real JSON shapes (githubkit's pydantic
models parse them), and enforces the rules that make real reviews fail: a review comment's line
must be in the diff on its side (422), start_line in the same hunk and before line, commit_id must
be the PR head, installation tokens come from a JWT signed with the App's key. Rate-limit headers
are on every response; primary/secondary limits, 429s and transport faults can be injected.

Drive it from a test::

    priv, pub = generate_app_key()
    with FakeGitHub(app_id=42, app_public_key=pub) as gh:   # .base_url = http://127.0.0.1:<port>
        gh.add_repo("acme/shop", installation_id=7, files_at_default={"a.py": "x = 1\n"})
        pr = gh.add_pull("acme/shop", 1, head_files={"a.py": "x = 2\n"})  # overlays; None deletes
        app = GitHubApp(42, priv, base_url=gh.base_url)  # or GitHubClient.with_token(gh.issue_token(7))
        ...
        gh.posted_reviews("acme/shop", 1)   # submitted reviews: {"event", "body", "comments", ...}

State helpers: add_repo, set_default_files, add_pull, add_pull_from_dirs, push, commit, add_review
(someone else's review), add_review_comment, add_reply, add_reaction, add_issue_comment, issue_token.
Faults and limits: fail_next (after_processing=True loses the answer of a request that took effect),
secondary_limit_next, too_many_requests_next, reset_next, slow_next, truncate_next, set_rate_limit.
Records: reviews, posted_reviews(), rejected_reviews, deleted_pending_reviews, review_comments,
issue_comments, reactions, check_runs (each with its update history), requests (no auth header),
token_requests.

`clock` drives token expiry and rate-limit resets; JWTs are checked against the wall clock
because githubkit signs them with it.
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt

DOCS = "https://docs.github.com/rest"
REACTION_CONTENTS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
MAX_FILES = 3000
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID."
)


def generate_app_key() -> tuple[str, str]:
    """A fresh RSA key pair for a test GitHub App: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def signed_delivery(secret: str, event: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A webhook delivery as GitHub sends it: the JSON body and its headers, a fresh delivery id and
    the body's HMAC-SHA256 under `secret` (computed here, not with reviewbot's own `sign`)."""
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": uuid.uuid4().hex,
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
    }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _to_sentence(items: list[str]) -> str:
    """Rails' Array#to_sentence, which is how GitHub joins several validation messages."""
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + ", and " + items[-1]


# ---------------------------------------------------------------------------------------------
# Diffs


@dataclass
class FakeHunk:
    old_start: int
    new_start: int
    header: str
    lines: list[str]  # each starts with ' ', '+', '-' or '\\'

    def right_lines(self) -> list[int]:
        return [n for kind, _, n in self._numbered() if kind != "-" and n is not None]

    def left_lines(self) -> list[int]:
        return [o for kind, o, _ in self._numbered() if kind != "+" and o is not None]

    def lines_on(self, side: str) -> set[int]:
        return set(self.right_lines() if side == "RIGHT" else self.left_lines())

    def _numbered(self) -> list[tuple[str, int | None, int | None]]:
        out: list[tuple[str, int | None, int | None]] = []
        old, new = self.old_start, self.new_start
        for text in self.lines:
            kind = text[:1]
            if kind == "+":
                out.append((kind, None, new))
                new += 1
            elif kind == "-":
                out.append((kind, old, None))
                old += 1
            elif kind == " ":
                out.append((kind, old, new))
                old += 1
                new += 1
        return out

    def text_until(self, line: int, side: str) -> str:
        """The diff_hunk GitHub stores with a comment: header plus lines up to the commented one."""
        out = [self.header]
        for (kind, old, new), text in zip(
            self._numbered(), [t for t in self.lines if t[:1] != "\\"], strict=False
        ):
            out.append(text)
            if (side == "RIGHT" and new == line and kind != "-") or (
                side == "LEFT" and old == line and kind != "+"
            ):
                break
        return "\n".join(out)


@dataclass
class FakeFileDiff:
    filename: str
    status: str  # added | removed | modified
    patch: str  # hunks only, as in the files API
    additions: int
    deletions: int
    hunks: list[FakeHunk]
    old_sha: str | None
    new_sha: str | None

    def git_text(self) -> str:
        """This file's section of a `git diff` (headers + hunks)."""
        a = "/dev/null" if self.status == "added" else f"a/{self.filename}"
        b = "/dev/null" if self.status == "removed" else f"b/{self.filename}"
        head = [f"diff --git a/{self.filename} b/{self.filename}"]
        if self.status == "added":
            head.append("new file mode 100644")
            head.append(f"index 0000000..{(self.new_sha or '')[:7]}")
        elif self.status == "removed":
            head.append("deleted file mode 100644")
            head.append(f"index {(self.old_sha or '')[:7]}..0000000")
        else:
            head.append(f"index {(self.old_sha or '')[:7]}..{(self.new_sha or '')[:7]} 100644")
        head += [f"--- {a}", f"+++ {b}"]
        return "\n".join(head) + "\n" + self.patch + "\n"


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def load_tree(root: str | Path) -> dict[str, str]:
    """Every text file under `root` as relative path -> content (binary files are skipped)."""
    root = Path(root)
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8000]:
            continue
        out[path.relative_to(root).as_posix()] = data.decode("utf-8", errors="replace")
    return out


def _overlay(tree: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    out = dict(tree)
    for path, content in changes.items():
        if content is None:
            out.pop(path, None)
        else:
            out[path] = content
    return out


def _blob_sha(content: str) -> str:
    data = content.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lines(text: str) -> list[str]:
    """Lines as git sees them: split on \\n only (a \\r stays part of its line)."""
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


_GIT = shutil.which("git")


def _git_unified(old: str, new: str, context: int) -> list[str] | None:
    """The hunks `git diff` makes (what GitHub shows), or None when git is unavailable."""
    if _GIT is None:
        return None
    with tempfile.TemporaryDirectory(prefix="fakegh-") as tmp:
        a, b = Path(tmp, "a"), Path(tmp, "b")
        a.write_bytes(old.encode())
        b.write_bytes(new.encode())
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": tmp,
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        proc = subprocess.run(
            [
                _GIT,
                "diff",
                "--no-index",
                "--no-color",
                "--no-ext-diff",
                "--text",
                f"-U{context}",
                "--diff-algorithm=myers",
                str(a),
                str(b),
            ],
            capture_output=True,
            env=env,
            check=False,
        )
    if proc.returncode not in (0, 1):
        return None
    text = proc.stdout.decode("utf-8", errors="replace")
    start = text.find("\n@@")
    if start < 0:
        return None
    out: list[str] = []
    for ln in text[start + 1 :].split("\n")[:-1]:
        if ln.startswith("\\ ") and out:  # "\ No newline at end of file": the line before has none
            out[-1] = out[-1][:-1]
        else:
            out.append(ln + "\n")
    return out


def _range(start: int, stop: int) -> str:
    begin, length = start + 1, stop - start
    if length == 1:
        return f"{begin}"
    if not length:
        begin -= 1
    return f"{begin},{length}"


def _unified(a: list[str], b: list[str], context: int) -> Iterator[str]:
    """difflib.unified_diff's hunks without its 'autojunk' heuristic (which mangles long files)."""
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        first, last = group[0], group[-1]
        yield f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n"
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                yield from (" " + ln for ln in a[i1:i2])
                continue
            if tag in ("replace", "delete"):
                yield from ("-" + ln for ln in a[i1:i2])
            if tag in ("replace", "insert"):
                yield from ("+" + ln for ln in b[j1:j2])


def diff_file(path: str, old: str | None, new: str | None, context: int = 3) -> FakeFileDiff | None:
    """Unified diff of one file between two contents (None = absent), or None when unchanged."""
    if old == new:
        return None
    raw = None
    if old is not None and new is not None:
        raw = _git_unified(old, new, context)
    if raw is None:
        raw = list(_unified(_lines(old or ""), _lines(new or ""), context))
    out: list[str] = []
    for line in raw:
        if line.endswith("\n"):
            out.append(line[:-1])
        else:
            out.append(line)
            out.append("\\ No newline at end of file")
    hunks: list[FakeHunk] = []
    for line in out:
        m = _HUNK_RE.match(line)
        if m:
            hunks.append(FakeHunk(int(m.group(1)), int(m.group(3)), line, []))
        elif hunks:
            hunks[-1].lines.append(line)
    status = "added" if old is None else "removed" if new is None else "modified"
    return FakeFileDiff(
        filename=path,
        status=status,
        patch="\n".join(out),
        additions=sum(1 for ln in out if ln.startswith("+")),
        deletions=sum(1 for ln in out if ln.startswith("-")),
        hunks=hunks,
        old_sha=_blob_sha(old) if old is not None else None,
        new_sha=_blob_sha(new) if new is not None else None,
    )


def diff_trees(old: dict[str, str], new: dict[str, str]) -> list[FakeFileDiff]:
    out = []
    for path in sorted(set(old) | set(new)):
        d = diff_file(path, old.get(path), new.get(path))
        if d is not None:
            out.append(d)
    return out


# ---------------------------------------------------------------------------------------------
# State


@dataclass
class FakeCommit:
    sha: str
    files: dict[str, str]
    parent: str | None
    message: str
    timestamp: float


@dataclass
class FakeRepo:
    id: int
    full_name: str
    installation_id: int
    default_branch: str
    branches: dict[str, str] = field(default_factory=dict)  # ref -> sha
    private: bool = False


@dataclass
class FakePull:
    repo: str
    number: int
    id: int
    title: str
    body: str
    author: str
    author_type: str
    draft: bool
    labels: list[str]
    base_ref: str
    head_ref: str
    base_sha: str
    head_sha: str
    head_repo: str
    state: str = "open"
    created_at: float = 0.0
    omit_patch: set[str] = field(default_factory=set)
    diff_too_large: bool = False
    shas: list[str] = field(default_factory=list)  # every head this PR has had


@dataclass
class Fault:
    kind: str  # status | status_after | reset | slow | truncate | secondary | too_many
    remaining: int
    status: int = 502
    path_prefix: str | None = None
    method: str | None = None
    delay: float = 0.0
    retry_after: int = 1

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        return not self.path_prefix or path.startswith(self.path_prefix)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0


class HTTPError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _error(status: int, message: str, doc: str = "", errors: Any = None) -> HTTPError:
    body: dict[str, Any] = {"message": message, "documentation_url": f"{DOCS}{doc}", "status": str(status)}
    if errors is not None:
        body["errors"] = errors
    return HTTPError(status, body)


@dataclass
class Reply:
    status: int
    body: Any  # dict/list -> JSON, str -> text, None -> empty
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


Route = tuple[str, re.Pattern[str], Callable[..., Reply]]


class FakeGitHub:
    """The fake GitHub API server. Use as a context manager; `.base_url` is the API root."""

    def __init__(
        self,
        *,
        app_id: int | None = None,
        app_public_key: str | None = None,
        clock: Callable[[], float] = time.time,
        token_ttl: float = 3600.0,
        rate_limit: int = 5000,
        bot_login: str = "reviewbot[bot]",
        api_prefix: str = "",
        bot_user_id: int = 41898282,
    ) -> None:
        """`api_prefix="/api/v3"` serves the API where GitHub Enterprise Server has it.
        `bot_login`/`bot_user_id` are the App's bot account (GET /app gives its slug, GET
        /users/<slug>[bot] its id); every other login gets an id derived from its name."""
        self.api_prefix = api_prefix.rstrip("/")
        self.app_id = app_id
        self.app_public_key = app_public_key
        self.clock = clock
        self.token_ttl = token_ttl
        self.bot_login = bot_login
        self.bot_user_id = bot_user_id
        self.lock = threading.RLock()
        self._ids = itertools.count(1001)
        self.installations: set[int] = set()
        self.repos: dict[str, FakeRepo] = {}
        self.commits: dict[str, FakeCommit] = {}
        self.pulls: dict[tuple[str, int], FakePull] = {}
        self.tokens: dict[str, tuple[int, float]] = {}  # token -> (installation, expires)
        self.token_requests: list[int] = []  # installation ids, one per token issued
        self.reviews: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.review_comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.issue_comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.reactions: dict[tuple[str, int], list[dict[str, Any]]] = {}  # (kind, comment id)
        self.check_runs: list[dict[str, Any]] = []
        self.workflow_runs: list[dict[str, Any]] = []  # {id, repo, head_sha, name}
        self.artifacts: list[dict[str, Any]] = []  # {id, repo, run_id, name, data (zip bytes), expired}
        self.requests: list[RecordedRequest] = []
        self.rejected_reviews: list[dict[str, Any]] = []  # bodies of 422-rejected review posts
        self.deleted_pending_reviews: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self._diff_cache: dict[tuple[str | None, str], list[FakeFileDiff]] = {}
        self.rate_limit = rate_limit
        self.rate_remaining = rate_limit
        self.rate_reset = clock() + 3600
        self._exhausted = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.routes: list[Route] = self._routes()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def do_GET(self) -> None:
                fake._handle(self)

            do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "FakeGitHub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.api_prefix}"

    # -- test helpers: state ----------------------------------------------------------------

    def next_id(self) -> int:
        return next(self._ids)

    def add_installation(self, installation_id: int) -> None:
        with self.lock:
            self.installations.add(installation_id)

    def commit(self, files: dict[str, str], parent: str | None = None, message: str = "change") -> str:
        """Store a commit (the full tree as path -> content) and return its sha."""
        with self.lock:
            seed = json.dumps([files, parent, message, len(self.commits)], sort_keys=True)
            sha = hashlib.sha1(seed.encode()).hexdigest()
            self.commits[sha] = FakeCommit(sha, dict(files), parent, message, self.clock())
            return sha

    def add_repo(
        self,
        full_name: str,
        installation_id: int,
        files_at_default: dict[str, str] | None = None,
        *,
        default_branch: str = "main",
        private: bool = False,
    ) -> FakeRepo:
        with self.lock:
            self.installations.add(installation_id)
            repo = FakeRepo(self.next_id(), full_name, installation_id, default_branch, private=private)
            repo.branches[default_branch] = self.commit(dict(files_at_default or {}), message="initial")
            self.repos[full_name] = repo
            return repo

    def set_default_files(self, repo: str, files: dict[str, str]) -> str:
        """Move the default branch to a new commit with these files."""
        with self.lock:
            r = self.repos[repo]
            sha = self.commit(files, parent=r.branches[r.default_branch])
            r.branches[r.default_branch] = sha
            return sha

    def add_pull(
        self,
        repo: str,
        number: int,
        base_files: dict[str, str | None] | None = None,
        head_files: dict[str, str | None] | None = None,
        *,
        title: str = "Change things",
        body: str = "",
        author: str = "octocat",
        author_type: str = "User",
        draft: bool = False,
        labels: list[str] | None = None,
        head_ref: str | None = None,
        head_repo: str | None = None,
        omit_patch: set[str] | None = None,
        diff_too_large: bool = False,
    ) -> FakePull:
        """A PR from a base commit to a head commit; the diff is computed from the two trees.

        `base_files` overlays the default branch's tree (None: the base IS the default branch head);
        `head_files` overlays the base tree; a None value deletes that file.

        The diff, per-file patches and hunks are computed from the two trees.
        `omit_patch`: files whose `patch` the files API leaves out (as GitHub does for huge files).
        `diff_too_large`: the diff media type answers 406 "diff too large".
        """
        with self.lock:
            r = self.repos[repo]
            default_sha = r.branches[r.default_branch]
            if base_files is None:
                base_sha = default_sha
            else:
                base_sha = self.commit(
                    _overlay(self.commits[default_sha].files, base_files), parent=default_sha, message="base"
                )
            head_tree = _overlay(self.commits[base_sha].files, head_files or {})
            head_sha = self.commit(head_tree, parent=base_sha, message=title)
            pr = FakePull(
                repo=repo,
                number=number,
                id=self.next_id(),
                title=title,
                body=body,
                author=author,
                author_type=author_type,
                draft=draft,
                labels=list(labels or []),
                base_ref=r.default_branch,
                head_ref=head_ref or f"feature-{number}",
                base_sha=base_sha,
                head_sha=head_sha,
                head_repo=head_repo or repo,
                created_at=self.clock(),
                omit_patch=set(omit_patch or ()),
                diff_too_large=diff_too_large,
                shas=[head_sha],
            )
            self.pulls[(repo, number)] = pr
            r.branches[pr.head_ref] = head_sha
            return pr

    def opened_event(self, pr: FakePull, installation: int) -> dict[str, Any]:
        """The `pull_request` `opened` webhook payload GitHub sends for `pr` (a non-draft PR by a
        user, no labels): one builder for the tests and benches that deliver it over HTTP."""
        return {
            "action": "opened",
            "number": pr.number,
            "pull_request": {
                "number": pr.number,
                "state": "open",
                "title": pr.title,
                "draft": False,
                "user": {"login": pr.author, "type": "User"},
                "labels": [],
                "head": {"sha": pr.head_sha, "ref": pr.head_ref},
                "base": {"sha": pr.base_sha, "ref": "main"},
            },
            "repository": {"id": self.repos[pr.repo].id, "full_name": pr.repo},
            "installation": {"id": installation},
            "sender": {"login": pr.author, "type": "User"},
        }

    def add_pull_from_dirs(
        self, repo: str, number: int, before: str | Path, after: str | Path, **kwargs: Any
    ) -> FakePull:
        """A PR from two directory snapshots (fixtures/demo, ../shared/data/real-prs/<id>).

        Files only in `before` are deleted by the PR; the default branch gets `before`'s files.
        """
        base, head = load_tree(before), load_tree(after)
        changes: dict[str, str | None] = {p: None for p in base if p not in head}
        changes.update(head)
        return self.add_pull(repo, number, base_files=dict(base), head_files=changes, **kwargs)

    def push(
        self, repo: str, number: int, new_head_files: dict[str, str | None], message: str = "more"
    ) -> str:
        """A new commit on the PR's head (a `synchronize`); returns the new head sha.

        `new_head_files` overlays the current head tree (a None value deletes the file).
        """
        with self.lock:
            pr = self.pulls[(repo, number)]
            tree = _overlay(self.commits[pr.head_sha].files, new_head_files)
            sha = self.commit(tree, parent=pr.head_sha, message=message)
            pr.head_sha = sha
            pr.shas.append(sha)
            self.repos[repo].branches[pr.head_ref] = sha
            return sha

    def pull_files(self, repo: str, number: int) -> list[FakeFileDiff]:
        pr = self.pulls[(repo, number)]
        return self.diff_commits(pr.base_sha, pr.head_sha)

    def diff_commits(self, old_sha: str | None, new_sha: str) -> list[FakeFileDiff]:
        """The per-file diff between two commits (cached: commits never change)."""
        key = (old_sha, new_sha)
        if key not in self._diff_cache:
            old = self.commits[old_sha].files if old_sha else {}
            self._diff_cache[key] = diff_trees(old, self.commits[new_sha].files)
        return self._diff_cache[key]

    def pull_diff(self, repo: str, number: int) -> str:
        return "".join(f.git_text() for f in self.pull_files(repo, number))

    def add_reaction(self, comment_id: int, content: str, user: str = "alice", *, kind: str = "pull") -> dict:
        """A human reacts to a comment (`kind` 'pull' = review comment, 'issue' = issue comment)."""
        with self.lock:
            reaction = {
                "id": self.next_id(),
                "node_id": f"REA_{comment_id}_{len(self.reactions)}",
                "user": self._user(user),
                "content": content,
                "created_at": _iso(self.clock()),
            }
            self.reactions.setdefault((kind, comment_id), []).append(reaction)
            return reaction

    def add_reply(
        self,
        repo: str,
        number: int,
        comment_id: int,
        body: str,
        user: str = "alice",
        *,
        association: str | None = None,
        user_type: str = "User",
    ) -> dict:
        """Someone replies in the thread of review comment `comment_id` (a MEMBER unless
        `association` says otherwise: CONTRIBUTOR, NONE...)."""
        with self.lock:
            parent = self._find_review_comment(repo, number, comment_id)
            comment = self._new_review_comment(
                repo,
                number,
                parent_review_id=None,
                path=parent["path"],
                body=body,
                user=user,
                line=parent.get("line"),
                side=parent.get("side") or "RIGHT",
                start_line=None,
                start_side=None,
                diff_hunk=parent["diff_hunk"],
                in_reply_to=comment_id,
                commit_id=parent["commit_id"],
                user_type=user_type,
            )
            if association is not None:
                comment["author_association"] = association
            return comment

    def add_check_run(
        self,
        repo: str,
        head_sha: str,
        name: str,
        annotations: list[dict[str, Any]],
        *,
        status: str = "completed",
        conclusion: str | None = "failure",
    ) -> dict[str, Any]:
        """A check run another app (a linter in Actions) left on `head_sha`, with its annotations."""
        now = _iso(self.clock())
        done = status == "completed"
        run = {
            "repo": repo,
            "id": self.next_id(),
            "check_suite_id": self.next_id(),
            "name": name,
            "head_sha": head_sha,
            "status": status,
            "conclusion": conclusion if done else None,
            "started_at": now,
            "completed_at": now if done else None,
            "output": {"title": name, "summary": "", "annotations": list(annotations)},
            "history": [],
        }
        with self.lock:
            self.check_runs.append(run)
        return run

    def add_artifact(
        self,
        repo: str,
        head_sha: str,
        name: str,
        files: dict[str, str | bytes],
        *,
        workflow: str = "lint",
        expired: bool = False,
    ) -> dict[str, Any]:
        """A workflow run on `head_sha` that uploaded an artifact `name` holding `files` (zipped)."""
        buf = __import__("io").BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for path, content in files.items():
                zf.writestr(path, content)
        with self.lock:
            run = next(
                (
                    r
                    for r in self.workflow_runs
                    if r["repo"] == repo and r["head_sha"] == head_sha and r["name"] == workflow
                ),
                None,
            )
            if run is None:
                run = {"id": self.next_id(), "repo": repo, "head_sha": head_sha, "name": workflow}
                self.workflow_runs.append(run)
            art = {
                "id": self.next_id(),
                "repo": repo,
                "run_id": run["id"],
                "name": name,
                "data": buf.getvalue(),
                "expired": expired,
            }
            self.artifacts.append(art)
        return art

    def add_review_comment(
        self,
        repo: str,
        number: int,
        path: str,
        line: int,
        body: str,
        *,
        user: str = "alice",
        side: str = "RIGHT",
        user_type: str = "User",
    ) -> dict:
        """A comment already on the PR (e.g. from an earlier run of the bot whose DB was lost)."""
        with self.lock:
            pr = self.pulls[(repo, number)]
            hunk = self._hunk_for(repo, number, path, line, side)
            return self._new_review_comment(
                repo,
                number,
                parent_review_id=None,
                path=path,
                body=body,
                user=user,
                line=line,
                side=side,
                start_line=None,
                start_side=None,
                diff_hunk=hunk.text_until(line, side) if hunk else "",
                in_reply_to=None,
                commit_id=pr.head_sha,
                user_type=user_type,
            )

    # -- test helpers: rate limits and faults ----------------------------------------------

    def set_rate_limit(self, remaining: int, reset_in: float = 60.0) -> None:
        """Set the primary limit: `remaining` requests left until `reset_in` seconds from now."""
        with self.lock:
            self.rate_remaining = remaining
            self.rate_reset = self.clock() + reset_in

    def fail_next(
        self,
        n: int = 1,
        status: int = 502,
        path_prefix: str | None = None,
        method: str | None = None,
        *,
        after_processing: bool = False,
    ) -> None:
        """The next n matching requests answer `status` with a GitHub-style error body.

        `after_processing`: the request takes effect first (e.g. the review IS created) and only
        the answer is lost, as when GitHub times out behind its load balancer.
        """
        kind = "status_after" if after_processing else "status"
        self._fault(Fault(kind, n, status=status, path_prefix=path_prefix, method=method))

    def secondary_limit_next(
        self, n: int = 1, retry_after: int = 1, path_prefix: str | None = None, method: str | None = None
    ) -> None:
        """403 'You have exceeded a secondary rate limit' with Retry-After."""
        self._fault(
            Fault("secondary", n, status=403, path_prefix=path_prefix, method=method, retry_after=retry_after)
        )

    def too_many_requests_next(
        self, n: int = 1, retry_after: int = 1, path_prefix: str | None = None, method: str | None = None
    ) -> None:
        """429 with Retry-After."""
        self._fault(
            Fault("too_many", n, status=429, path_prefix=path_prefix, method=method, retry_after=retry_after)
        )

    def reset_next(self, n: int = 1, path_prefix: str | None = None, method: str | None = None) -> None:
        """Close the connection without an answer (a connection reset)."""
        self._fault(Fault("reset", n, path_prefix=path_prefix, method=method))

    def slow_next(
        self, n: int = 1, delay: float = 1.0, path_prefix: str | None = None, method: str | None = None
    ) -> None:
        """Answer normally after sleeping `delay` seconds."""
        self._fault(Fault("slow", n, path_prefix=path_prefix, method=method, delay=delay))

    def truncate_next(self, n: int = 1, path_prefix: str | None = None, method: str | None = None) -> None:
        """Send headers announcing the full body, then half of it, then close."""
        self._fault(Fault("truncate", n, path_prefix=path_prefix, method=method))

    def _fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def issue_token(self, installation_id: int, ttl: float | None = None) -> str:
        """An installation token without the JWT dance, for tests that build a client directly."""
        with self.lock:
            token = "ghs_" + secrets.token_hex(18)
            self.installations.add(installation_id)
            ttl = ttl if ttl is not None else self.token_ttl
            self.tokens[token] = (installation_id, self.clock() + ttl)
            return token

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- JSON builders ----------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _user(self, login: str, type_: str | None = None) -> dict[str, Any]:
        type_ = type_ or ("Bot" if login.endswith("[bot]") else "User")
        uid = (
            self.bot_user_id
            if login == self.bot_login
            else int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)
        )
        u = self._api(f"/users/{login}")
        return {
            "login": login,
            "id": uid,
            "node_id": f"U_{uid}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
            "gravatar_id": "",
            "url": u,
            "html_url": f"https://github.com/{login}",
            "followers_url": f"{u}/followers",
            "following_url": f"{u}/following{{/other_user}}",
            "gists_url": f"{u}/gists{{/gist_id}}",
            "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{u}/subscriptions",
            "organizations_url": f"{u}/orgs",
            "repos_url": f"{u}/repos",
            "events_url": f"{u}/events{{/privacy}}",
            "received_events_url": f"{u}/received_events",
            "type": type_,
            "site_admin": False,
            "user_view_type": "public",
        }

    def _repo_json(self, full_name: str) -> dict[str, Any]:
        r = self.repos[full_name]
        owner, name = full_name.split("/", 1)
        u = self._api(f"/repos/{full_name}")
        t = _iso(self.commits[r.branches[r.default_branch]].timestamp)
        urls = {
            "archive_url": f"{u}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{u}/assignees{{/user}}",
            "blobs_url": f"{u}/git/blobs{{/sha}}",
            "branches_url": f"{u}/branches{{/branch}}",
            "collaborators_url": f"{u}/collaborators{{/collaborator}}",
            "comments_url": f"{u}/comments{{/number}}",
            "commits_url": f"{u}/commits{{/sha}}",
            "compare_url": f"{u}/compare/{{base}}...{{head}}",
            "contents_url": f"{u}/contents/{{+path}}",
            "contributors_url": f"{u}/contributors",
            "deployments_url": f"{u}/deployments",
            "downloads_url": f"{u}/downloads",
            "events_url": f"{u}/events",
            "forks_url": f"{u}/forks",
            "git_commits_url": f"{u}/git/commits{{/sha}}",
            "git_refs_url": f"{u}/git/refs{{/sha}}",
            "git_tags_url": f"{u}/git/tags{{/sha}}",
            "git_url": f"git://github.com/{full_name}.git",
            "issue_comment_url": f"{u}/issues/comments{{/number}}",
            "issue_events_url": f"{u}/issues/events{{/number}}",
            "issues_url": f"{u}/issues{{/number}}",
            "keys_url": f"{u}/keys{{/key_id}}",
            "labels_url": f"{u}/labels{{/name}}",
            "languages_url": f"{u}/languages",
            "merges_url": f"{u}/merges",
            "milestones_url": f"{u}/milestones{{/number}}",
            "notifications_url": f"{u}/notifications{{?since,all,participating}}",
            "pulls_url": f"{u}/pulls{{/number}}",
            "releases_url": f"{u}/releases{{/id}}",
            "ssh_url": f"git@github.com:{full_name}.git",
            "stargazers_url": f"{u}/stargazers",
            "statuses_url": f"{u}/statuses/{{sha}}",
            "subscribers_url": f"{u}/subscribers",
            "subscription_url": f"{u}/subscription",
            "tags_url": f"{u}/tags",
            "teams_url": f"{u}/teams",
            "trees_url": f"{u}/git/trees{{/sha}}",
            "clone_url": f"https://github.com/{full_name}.git",
            "hooks_url": f"{u}/hooks",
            "svn_url": f"https://github.com/{full_name}",
        }
        return {
            "id": r.id,
            "node_id": f"R_{r.id}",
            "name": name,
            "full_name": full_name,
            "owner": self._user(owner, "Organization"),
            "private": r.private,
            "html_url": f"https://github.com/{full_name}",
            "description": None,
            "fork": False,
            "url": u,
            **urls,
            "mirror_url": None,
            "homepage": None,
            "language": None,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "size": 1,
            "default_branch": r.default_branch,
            "open_issues_count": 0,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": True,
            "has_wiki": True,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "public",
            "pushed_at": t,
            "created_at": t,
            "updated_at": t,
            "subscribers_count": 0,
            "network_count": 0,
            "license": None,
            "forks": 0,
            "open_issues": 0,
            "watchers": 0,
            "allow_forking": True,
            "web_commit_signoff_required": False,
        }

    def _pull_json(self, pr: FakePull) -> dict[str, Any]:
        u = self._api(f"/repos/{pr.repo}/pulls/{pr.number}")
        iu = self._api(f"/repos/{pr.repo}/issues/{pr.number}")
        html = f"https://github.com/{pr.repo}/pull/{pr.number}"
        t = _iso(pr.created_at)
        files = self.pull_files(pr.repo, pr.number)
        n_comments = len(self.review_comments.get((pr.repo, pr.number), []))
        owner = pr.repo.split("/")[0]
        head_owner = pr.head_repo.split("/")[0]
        head_repo = self._repo_json(pr.head_repo) if pr.head_repo in self.repos else None
        return {
            "url": u,
            "id": pr.id,
            "node_id": f"PR_{pr.id}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": iu,
            "commits_url": f"{u}/commits",
            "review_comments_url": f"{u}/comments",
            "review_comment_url": self._api(f"/repos/{pr.repo}/pulls/comments{{/number}}"),
            "comments_url": f"{iu}/comments",
            "statuses_url": self._api(f"/repos/{pr.repo}/statuses/{pr.head_sha}"),
            "number": pr.number,
            "state": pr.state,
            "locked": False,
            "title": pr.title,
            "user": self._user(pr.author, pr.author_type),
            "body": pr.body,
            "labels": [
                {
                    "id": 9000 + i,
                    "node_id": f"LA_{i}",
                    "url": self._api(f"/repos/{pr.repo}/labels/{name}"),
                    "name": name,
                    "description": None,
                    "color": "ededed",
                    "default": False,
                    "archived_by": None,
                }
                for i, name in enumerate(pr.labels)
            ],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": t,
            "updated_at": t,
            "closed_at": None,
            "merged_at": None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": {
                "label": f"{head_owner}:{pr.head_ref}",
                "ref": pr.head_ref,
                "sha": pr.head_sha,
                "user": self._user(head_owner, "Organization"),
                "repo": head_repo,
            },
            "base": {
                "label": f"{owner}:{pr.base_ref}",
                "ref": pr.base_ref,
                "sha": pr.base_sha,
                "user": self._user(owner, "Organization"),
                "repo": self._repo_json(pr.repo),
            },
            "_links": {
                "self": {"href": u},
                "html": {"href": html},
                "issue": {"href": iu},
                "comments": {"href": f"{iu}/comments"},
                "review_comments": {"href": f"{u}/comments"},
                "review_comment": {"href": self._api(f"/repos/{pr.repo}/pulls/comments{{/number}}")},
                "commits": {"href": f"{u}/commits"},
                "statuses": {"href": self._api(f"/repos/{pr.repo}/statuses/{pr.head_sha}")},
            },
            "author_association": "CONTRIBUTOR",
            "auto_merge": None,
            "draft": pr.draft,
            "merged": False,
            "mergeable": True,
            "rebaseable": True,
            "mergeable_state": "clean",
            "merged_by": None,
            "comments": len(self.issue_comments.get((pr.repo, pr.number), [])),
            "review_comments": n_comments,
            "maintainer_can_modify": False,
            "commits": len(pr.shas),
            "additions": sum(f.additions for f in files),
            "deletions": sum(f.deletions for f in files),
            "changed_files": len(files),
        }

    def _diff_entry(self, repo: str, ref: str, f: FakeFileDiff, omit_patch: set[str]) -> dict[str, Any]:
        d: dict[str, Any] = {
            "sha": f.new_sha or f.old_sha,
            "filename": f.filename,
            "status": f.status,
            "additions": f.additions,
            "deletions": f.deletions,
            "changes": f.additions + f.deletions,
            "blob_url": f"https://github.com/{repo}/blob/{ref}/{f.filename}",
            "raw_url": f"https://github.com/{repo}/raw/{ref}/{f.filename}",
            "contents_url": self._api(f"/repos/{repo}/contents/{f.filename}?ref={ref}"),
        }
        if f.filename not in omit_patch:
            d["patch"] = f.patch
        return d

    def _commit_json(self, repo: str, sha: str, with_files: bool = False) -> dict[str, Any]:
        c = self.commits[sha]
        u = self._api(f"/repos/{repo}/commits/{sha}")
        person = {"name": "Octo Cat", "email": "octocat@example.com", "date": _iso(c.timestamp)}
        out: dict[str, Any] = {
            "url": u,
            "sha": sha,
            "node_id": f"C_{sha[:12]}",
            "html_url": f"https://github.com/{repo}/commit/{sha}",
            "comments_url": f"{u}/comments",
            "commit": {
                "url": self._api(f"/repos/{repo}/git/commits/{sha}"),
                "author": person,
                "committer": person,
                "message": c.message,
                "comment_count": 0,
                "tree": {
                    "sha": hashlib.sha1(sha.encode()).hexdigest(),
                    "url": self._api(f"/repos/{repo}/git/trees/{sha}"),
                },
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "author": self._user("octocat"),
            "committer": self._user("web-flow"),
            "parents": [
                {
                    "sha": c.parent,
                    "url": self._api(f"/repos/{repo}/commits/{c.parent}"),
                    "html_url": f"https://github.com/{repo}/commit/{c.parent}",
                }
            ]
            if c.parent
            else [],
        }
        if with_files:
            files = self.diff_commits(c.parent, sha)
            out["files"] = [self._diff_entry(repo, sha, f, set()) for f in files]
            adds = sum(f.additions for f in files)
            dels = sum(f.deletions for f in files)
            out["stats"] = {"additions": adds, "deletions": dels, "total": adds + dels}
        return out

    def _new_review_comment(
        self,
        repo: str,
        number: int,
        *,
        parent_review_id: int | None,
        path: str,
        body: str,
        user: str,
        line: int | None,
        side: str,
        start_line: int | None,
        start_side: str | None,
        diff_hunk: str,
        in_reply_to: int | None,
        commit_id: str,
        user_type: str,
    ) -> dict[str, Any]:
        cid = self.next_id()
        u = self._api(f"/repos/{repo}/pulls/comments/{cid}")
        html = f"https://github.com/{repo}/pull/{number}#discussion_r{cid}"
        now = _iso(self.clock())
        comment: dict[str, Any] = {
            "url": u,
            "pull_request_review_id": parent_review_id,
            "id": cid,
            "node_id": f"PRRC_{cid}",
            "diff_hunk": diff_hunk,
            "path": path,
            "position": line,
            "original_position": line,
            "commit_id": commit_id,
            "original_commit_id": commit_id,
            "user": self._user(user, user_type),
            "body": body,
            "created_at": now,
            "updated_at": now,
            "html_url": html,
            "pull_request_url": self._api(f"/repos/{repo}/pulls/{number}"),
            "author_association": "NONE" if user_type == "Bot" else "MEMBER",
            "_links": {
                "self": {"href": u},
                "html": {"href": html},
                "pull_request": {"href": self._api(f"/repos/{repo}/pulls/{number}")},
            },
            "start_line": start_line,
            "original_start_line": start_line,
            "start_side": start_side,
            "line": line,
            "original_line": line,
            "side": side,
            "subject_type": "line",
        }
        if in_reply_to is not None:
            comment["in_reply_to_id"] = in_reply_to
        self.review_comments.setdefault((repo, number), []).append(comment)
        return comment

    def _find_review_comment(self, repo: str, number: int | None, comment_id: int) -> dict[str, Any]:
        for (r, n), comments in self.review_comments.items():
            if r != repo or (number is not None and n != number):
                continue
            for c in comments:
                if c["id"] == comment_id:
                    return c
        raise _error(404, "Not Found", "/pulls/comments")

    def _hunk_for(self, repo: str, number: int, path: str, line: int, side: str) -> FakeHunk | None:
        for f in self.pull_files(repo, number):
            if f.filename == path:
                for h in f.hunks:
                    if line in h.lines_on(side):
                        return h
        return None

    # -- HTTP plumbing ----------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        if self.api_prefix:
            inside = path.startswith(self.api_prefix + "/")
            path = path[len(self.api_prefix) :] if inside else "/__outside_api__"
        query = parse_qs(parts.query)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        headers = {k.lower(): v for k, v in h.headers.items() if k.lower() != "authorization"}
        rec = RecordedRequest(h.command, path, query, headers, body)
        with self.lock:
            self.requests.append(rec)

        fault = self._take_fault(h.command, path)
        if fault and fault.kind == "reset":
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            rec.status = -1
            return
        if fault and fault.kind == "slow":
            time.sleep(fault.delay)

        try:
            reply = self._dispatch(h, path, query, body, fault)
        except HTTPError as e:
            reply = Reply(e.status, e.body, dict(e.headers))
        rec.status = reply.status
        self._send(h, reply, truncate=bool(fault and fault.kind == "truncate"))

    def _dispatch(
        self,
        h: BaseHTTPRequestHandler,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        fault: Fault | None,
    ) -> Reply:
        method = h.command
        route = None
        for m, pattern, fn in self.routes:
            if m == method and (match := pattern.fullmatch(path)):
                route = (fn, match.groupdict())
                break
        if route is None:
            raise _error(404, "Not Found")
        fn, params = route
        is_token_route = path == "/app" or path.startswith("/app/")  # JWT-authenticated routes
        with self.lock:
            rate = self._rate_headers(consume=not is_token_route)
            if fault and fault.kind == "status":
                raise HTTPError(
                    fault.status,
                    {
                        "message": "Server Error" if fault.status >= 500 else "Injected error",
                        "status": str(fault.status),
                    },
                    rate,
                )
            if fault and fault.kind == "secondary":
                raise HTTPError(
                    403,
                    {
                        "message": SECONDARY_MESSAGE,
                        "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api",
                        "status": "403",
                    },
                    {**rate, "retry-after": str(fault.retry_after)},
                )
            if fault and fault.kind == "too_many":
                raise HTTPError(
                    429,
                    {"message": "Too Many Requests", "status": "429"},
                    {**rate, "retry-after": str(fault.retry_after)},
                )
            if rate.get("x-ratelimit-remaining") == "0" and self._exhausted:
                raise HTTPError(
                    403,
                    {
                        "message": "API rate limit exceeded for installation. If you reach out to GitHub "
                        "Support for help, please include the request ID.",
                        "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api",
                        "status": "403",
                    },
                    rate,
                )
            auth = h.headers.get("Authorization", "")
            if is_token_route:
                ctx: dict[str, Any] = {"jwt": auth}
            else:
                ctx = {"installation": self._check_token(auth)}
            ctx.update(
                params=params,
                query=query,
                body=body,
                accept=h.headers.get("Accept", ""),
                if_none_match=h.headers.get("If-None-Match"),
            )
            reply = fn(**ctx)
            if reply.status == 304 and not is_token_route:
                # GitHub does not count a conditional request answered 304 against the limit
                self.rate_remaining += 1
                rate = self._rate_headers(consume=False)
            if fault and fault.kind == "status_after":
                raise HTTPError(fault.status, {"message": "Server Error", "status": str(fault.status)}, rate)
            reply.headers = {**rate, **reply.headers}
            return reply

    def _rate_headers(self, consume: bool) -> dict[str, str]:
        now = self.clock()
        if now >= self.rate_reset:
            self.rate_remaining = self.rate_limit
            self.rate_reset = now + 3600
        self._exhausted = consume and self.rate_remaining <= 0
        if consume and self.rate_remaining > 0:
            self.rate_remaining -= 1
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(self.rate_remaining, 0)),
            "x-ratelimit-reset": str(int(self.rate_reset)),
            "x-ratelimit-used": str(self.rate_limit - max(self.rate_remaining, 0)),
            "x-ratelimit-resource": "core",
        }

    def _check_token(self, auth: str) -> int:
        token = auth.split(" ", 1)[1] if " " in auth else ""
        entry = self.tokens.get(token)
        if entry is None or entry[1] <= self.clock():
            raise _error(401, "Bad credentials")
        return entry[0]

    def _send(self, h: BaseHTTPRequestHandler, reply: Reply, truncate: bool) -> None:
        if reply.body is None:
            data = b""
        elif isinstance(reply.body, bytes):
            data = reply.body
        elif isinstance(reply.body, str):
            data = reply.body.encode()
        else:
            data = json.dumps(reply.body).encode()
        h.send_response(reply.status)
        ctype = reply.content_type
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("X-GitHub-Media-Type", "github.v3; format=json")
        h.send_header("X-GitHub-Request-Id", secrets.token_hex(8).upper())
        for k, v in reply.headers.items():
            h.send_header(k, v)
        if truncate:
            h.send_header("Connection", "close")
        h.end_headers()
        if truncate:
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        if data:
            h.wfile.write(data)

    # -- routes -----------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        R = r"(?P<repo>[^/]+/[^/]+)"
        table: list[tuple[str, str, Callable[..., Reply]]] = [
            ("POST", r"/app/installations/(?P<iid>\d+)/access_tokens", self._r_access_token),
            ("GET", r"/app", self._r_app),
            ("GET", r"/users/(?P<login>[^/]+)", self._r_user),
            ("GET", rf"/repos/{R}", self._r_repo),
            ("GET", rf"/repos/{R}/pulls/(?P<n>\d+)", self._r_pull),
            ("GET", rf"/repos/{R}/pulls/(?P<n>\d+)/files", self._r_pull_files),
            ("GET", rf"/repos/{R}/pulls/(?P<n>\d+)/commits", self._r_pull_commits),
            ("GET", rf"/repos/{R}/compare/(?P<base>[^/.]+)\.\.\.(?P<head>[^/]+)", self._r_compare),
            ("GET", rf"/repos/{R}/contents/(?P<path>.+)", self._r_contents),
            ("PUT", rf"/repos/{R}/contents/(?P<path>.+)", self._r_put_contents),
            ("GET", rf"/repos/{R}/git/ref/(?P<ref>.+)", self._r_get_ref),
            ("POST", rf"/repos/{R}/git/refs", self._r_create_ref),
            ("POST", rf"/repos/{R}/pulls", self._r_create_pull),
            ("GET", rf"/repos/{R}/pulls/(?P<n>\d+)/reviews", self._r_list_reviews),
            ("POST", rf"/repos/{R}/pulls/(?P<n>\d+)/reviews", self._r_create_review),
            ("DELETE", rf"/repos/{R}/pulls/(?P<n>\d+)/reviews/(?P<id>\d+)", self._r_delete_pending_review),
            ("GET", rf"/repos/{R}/pulls/(?P<n>\d+)/comments", self._r_list_review_comments),
            ("POST", rf"/repos/{R}/pulls/(?P<n>\d+)/comments/(?P<cid>\d+)/replies", self._r_reply),
            ("GET", rf"/repos/{R}/pulls/comments/(?P<cid>\d+)/reactions", self._r_list_pull_reactions),
            ("POST", rf"/repos/{R}/pulls/comments/(?P<cid>\d+)/reactions", self._r_add_pull_reaction),
            ("GET", rf"/repos/{R}/issues/comments/(?P<cid>\d+)/reactions", self._r_list_issue_reactions),
            ("POST", rf"/repos/{R}/issues/comments/(?P<cid>\d+)/reactions", self._r_add_issue_reaction),
            ("GET", rf"/repos/{R}/issues/(?P<n>\d+)/comments", self._r_list_issue_comments),
            ("POST", rf"/repos/{R}/issues/(?P<n>\d+)/comments", self._r_create_issue_comment),
            ("POST", rf"/repos/{R}/check-runs", self._r_create_check_run),
            ("PATCH", rf"/repos/{R}/check-runs/(?P<id>\d+)", self._r_update_check_run),
            ("GET", rf"/repos/{R}/commits/(?P<sha>[^/]+)", self._r_commit),
            ("GET", rf"/repos/{R}/commits/(?P<sha>[^/]+)/check-runs", self._r_list_check_runs),
            ("GET", rf"/repos/{R}/check-runs/(?P<id>\d+)/annotations", self._r_check_run_annotations),
            ("GET", rf"/repos/{R}/actions/runs", self._r_list_workflow_runs),
            ("GET", rf"/repos/{R}/actions/runs/(?P<id>\d+)/artifacts", self._r_list_artifacts),
            ("GET", rf"/repos/{R}/actions/artifacts/(?P<id>\d+)/zip", self._r_download_artifact),
            ("GET", r"/_blobs/artifact-(?P<id>\d+)\.zip", self._r_artifact_blob),
        ]
        return [(m, re.compile(p), fn) for m, p, fn in table]

    # helpers for route handlers

    def _repo_for(self, params: dict[str, str], installation: int) -> FakeRepo:
        r = self.repos.get(params["repo"])
        if r is None or r.installation_id != installation:
            raise _error(404, "Not Found", "/repos/repos#get-a-repository")
        return r

    def _pull_for(self, params: dict[str, str], installation: int) -> FakePull:
        self._repo_for(params, installation)
        pr = self.pulls.get((params["repo"], int(params["n"])))
        if pr is None:
            raise _error(404, "Not Found", "/pulls/pulls#get-a-pull-request")
        return pr

    def _resolve_ref(self, repo: FakeRepo, ref: str | None) -> str:
        ref = ref or repo.default_branch
        if ref in repo.branches:
            return repo.branches[ref]
        if ref in self.commits:
            return ref
        matches = [s for s in self.commits if len(ref) >= 7 and s.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise _error(404, f"No commit found for the ref {ref}", "/repos/contents#get-repository-content")

    def _paginate(self, items: list[Any], query: dict[str, list[str]], path: str) -> Reply:
        per_page = min(int(query.get("per_page", ["30"])[0]), 100)
        page = max(int(query.get("page", ["1"])[0]), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []

        def link(p: int, rel: str) -> str:
            return f'<{self._api(path)}?per_page={per_page}&page={p}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        headers = {"Link": ", ".join(links)} if links else {}
        return Reply(200, chunk, headers)

    @staticmethod
    def _wants_diff(accept: str) -> bool:
        return "diff" in accept and "json" not in accept

    # handlers

    def _r_access_token(self, jwt: str, params: dict, **_: Any) -> Reply:
        iid = int(params["iid"])
        self._app_claims(jwt)
        if iid not in self.installations:
            raise _error(404, "Not Found", "/apps/apps#create-an-installation-access-token-for-an-app")
        self.token_requests.append(iid)
        expires = self.clock() + self.token_ttl
        tok = "ghs_" + secrets.token_hex(18)
        self.tokens[tok] = (iid, expires)
        return Reply(
            201,
            {
                "token": tok,
                "expires_at": _iso(expires),
                "permissions": {
                    "pull_requests": "write",
                    "contents": "read",
                    "checks": "write",
                    "metadata": "read",
                    "issues": "write",
                },
                "repository_selection": "all",
            },
        )

    def _app_claims(self, jwt: str) -> dict[str, Any]:
        token = jwt.split(" ", 1)[1] if jwt.startswith("Bearer ") else ""
        if not self.app_public_key:
            raise _error(401, "A JSON web token could not be decoded", "/apps/apps")
        try:
            # the wall clock, not self.clock: githubkit signs JWTs with the wall clock
            claims = _decode_jwt(token, self.app_public_key, time.time())
        except Exception as e:  # noqa: BLE001 - any decode failure is a 401 on GitHub too
            raise _error(
                401, f"A JSON web token could not be decoded ({type(e).__name__})", "/apps/apps"
            ) from e
        if self.app_id is not None and str(claims.get("iss")) != str(self.app_id):
            raise _error(401, "'Issuer' claim ('iss') must be an Integer or String", "/apps/apps")
        return claims

    def _r_app(self, jwt: str, **_: Any) -> Reply:
        """GET /app (JWT): the App itself; its bot account is `<slug>[bot]`."""
        self._app_claims(jwt)
        slug = self.bot_login.removesuffix("[bot]")
        owner = self._user("acme", "Organization")
        now = _iso(self.clock())
        return Reply(
            200,
            {
                "id": self.app_id or 1,
                "slug": slug,
                "node_id": f"A_{slug}",
                "client_id": f"Iv1.{slug}",
                "owner": owner,
                "name": slug,
                "description": "",
                "external_url": "https://example.test",
                "html_url": f"https://github.com/apps/{slug}",
                "created_at": now,
                "updated_at": now,
                "permissions": {"pull_requests": "write", "checks": "write", "contents": "read"},
                "events": ["pull_request"],
                "installations_count": len(self.installations),
            },
        )

    def _r_user(self, installation: int, params: dict, **_: Any) -> Reply:
        """GET /users/{login}: the account's public profile (its numeric id)."""
        return Reply(200, self._user(params["login"]))

    def _r_repo(self, installation: int, params: dict, **_: Any) -> Reply:
        r = self._repo_for(params, installation)
        return Reply(200, self._repo_json(r.full_name))

    def _r_pull(self, installation: int, params: dict, accept: str, **_: Any) -> Reply:
        pr = self._pull_for(params, installation)
        if self._wants_diff(accept):
            if pr.diff_too_large:
                raise _error(
                    406,
                    "Sorry, the diff exceeded the maximum number of files (300). Consider "
                    "using 'List pull requests files' API or locally cloning the repository "
                    "instead.",
                    "/pulls/pulls#list-pull-requests-files",
                    [{"resource": "PullRequest", "field": "diff", "code": "too_large"}],
                )
            return Reply(200, self.pull_diff(pr.repo, pr.number), content_type="text/plain; charset=utf-8")
        return Reply(200, self._pull_json(pr))

    def _r_pull_files(self, installation: int, params: dict, query: dict, **_: Any) -> Reply:
        pr = self._pull_for(params, installation)
        files = self.pull_files(pr.repo, pr.number)[:MAX_FILES]
        entries = [self._diff_entry(pr.repo, pr.head_sha, f, pr.omit_patch) for f in files]
        return self._paginate(entries, query, f"/repos/{pr.repo}/pulls/{pr.number}/files")

    def _r_pull_commits(self, installation: int, params: dict, query: dict, **_: Any) -> Reply:
        """The PR's commits, oldest first (GitHub lists at most 250)."""
        pr = self._pull_for(params, installation)
        chain = []
        sha: str | None = pr.head_sha
        while sha is not None and sha != pr.base_sha and sha in self.commits and len(chain) < 250:
            chain.append(self.commits[sha])
            sha = self.commits[sha].parent
        entries = [{"sha": c.sha, "commit": {"message": c.message}} for c in reversed(chain)]
        return self._paginate(entries, query, f"/repos/{pr.repo}/pulls/{pr.number}/commits")

    def _r_compare(self, installation: int, params: dict, accept: str, **_: Any) -> Reply:
        r = self._repo_for(params, installation)
        base = self._resolve_ref(r, params["base"])
        head = self._resolve_ref(r, params["head"])
        files = self.diff_commits(base, head)
        if self._wants_diff(accept):
            return Reply(200, "".join(f.git_text() for f in files), content_type="text/plain; charset=utf-8")
        chain, sha = [], head
        while sha and sha != base:
            chain.append(sha)
            sha = self.commits[sha].parent
        ahead = len(chain) if sha == base else 0
        return Reply(
            200,
            {
                "url": self._api(f"/repos/{r.full_name}/compare/{base}...{head}"),
                "html_url": f"https://github.com/{r.full_name}/compare/{base}...{head}",
                "permalink_url": f"https://github.com/{r.full_name}/compare/{base}...{head}",
                "diff_url": f"https://github.com/{r.full_name}/compare/{base}...{head}.diff",
                "patch_url": f"https://github.com/{r.full_name}/compare/{base}...{head}.patch",
                "base_commit": self._commit_json(r.full_name, base),
                "merge_base_commit": self._commit_json(r.full_name, base),
                "status": "identical" if base == head else "ahead" if ahead else "diverged",
                "ahead_by": ahead,
                "behind_by": 0,
                "total_commits": ahead,
                "commits": [self._commit_json(r.full_name, s) for s in reversed(chain)],
                "files": [self._diff_entry(r.full_name, head, f, set()) for f in files],
            },
        )

    def _r_contents(self, installation: int, params: dict, query: dict, **_: Any) -> Reply:
        r = self._repo_for(params, installation)
        sha = self._resolve_ref(r, (query.get("ref") or [None])[0])
        path = params["path"].strip("/")
        files = self.commits[sha].files
        if path not in files:
            raise _error(404, "Not Found", "/repos/contents#get-repository-content")
        content = files[path]
        data = content.encode()
        enc = base64.encodebytes(data).decode()  # GitHub wraps base64 at 60 columns
        u = self._api(f"/repos/{r.full_name}/contents/{path}?ref={sha}")
        html = f"https://github.com/{r.full_name}/blob/{sha}/{path}"
        git = self._api(f"/repos/{r.full_name}/git/blobs/{_blob_sha(content)}")
        return Reply(
            200,
            {
                "type": "file",
                "encoding": "base64",
                "size": len(data),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "content": enc,
                "sha": _blob_sha(content),
                "url": u,
                "git_url": git,
                "html_url": html,
                "download_url": f"https://raw.githubusercontent.com/{r.full_name}/{sha}/{path}",
                "_links": {"self": u, "git": git, "html": html},
            },
        )

    def _ref_json(self, r: FakeRepo, branch: str) -> dict[str, Any]:
        sha = r.branches[branch]
        commit_url = self._api(f"/repos/{r.full_name}/git/commits/{sha}")
        return {
            "ref": f"refs/heads/{branch}",
            "node_id": f"REF_{branch}",
            "url": self._api(f"/repos/{r.full_name}/git/refs/heads/{branch}"),
            "object": {"sha": sha, "type": "commit", "url": commit_url},
        }

    def _r_get_ref(self, installation: int, params: dict, **_: Any) -> Reply:
        """GET /git/ref/heads/<branch>: only branch refs are kept."""
        r = self._repo_for(params, installation)
        ref = unquote(params["ref"])
        branch = ref.removeprefix("heads/")
        if not ref.startswith("heads/") or branch not in r.branches:
            raise _error(404, "Not Found", "/git/refs#get-a-reference")
        return Reply(200, self._ref_json(r, branch))

    def _r_create_ref(self, installation: int, params: dict, body: Any, **_: Any) -> Reply:
        """POST /git/refs: 422 for a ref not under refs/, a sha that is no commit, an existing ref."""
        r = self._repo_for(params, installation)
        body = body if isinstance(body, dict) else {}
        ref, sha = str(body.get("ref") or ""), str(body.get("sha") or "")
        doc = "/git/refs#create-a-reference"
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise _error(422, "Reference name must start with 'refs/' and have at least two slashes.", doc)
        if sha not in self.commits:
            raise _error(422, "Object does not exist", doc)
        if not ref.startswith("refs/heads/"):
            raise _error(422, "Only branch refs are supported by the fake", doc)
        branch = ref.removeprefix("refs/heads/")
        with self.lock:
            if branch in r.branches:
                raise _error(422, "Reference already exists", doc)
            r.branches[branch] = sha
        return Reply(201, self._ref_json(r, branch))

    def _r_put_contents(self, installation: int, params: dict, body: Any, **_: Any) -> Reply:
        """PUT /contents/<path>: one commit on `branch` (default branch when absent). Updating an
        existing file needs its blob `sha` (422 without it, 409 when it is not the current one)."""
        r = self._repo_for(params, installation)
        body = body if isinstance(body, dict) else {}
        path = unquote(params["path"]).strip("/")
        doc = "/repos/contents#create-or-update-file-contents"
        if not body.get("message") or body.get("content") is None:
            raise _error(422, 'Invalid request.\n\n"message", "content" weren\'t supplied.', doc)
        try:
            text = base64.b64decode(str(body["content"]), validate=True).decode()
        except ValueError:
            raise _error(422, "content is not valid Base64", doc) from None
        branch = str(body.get("branch") or r.default_branch)
        with self.lock:
            if branch not in r.branches:
                raise _error(404, f"Branch {branch} not found", doc)
            head = r.branches[branch]
            files = self.commits[head].files
            if path in files:
                if not body.get("sha"):
                    raise _error(422, 'Invalid request.\n\n"sha" wasn\'t supplied.', doc)
                if body["sha"] != _blob_sha(files[path]):
                    raise _error(409, f"{path} does not match {body['sha']}", doc)
            status = 200 if path in files else 201
            sha = self.commit({**files, path: text}, parent=head, message=str(body["message"]))
            r.branches[branch] = sha
        return Reply(
            status,
            {
                "content": {
                    "name": path.rsplit("/", 1)[-1],
                    "path": path,
                    "sha": _blob_sha(text),
                    "type": "file",
                    "size": len(text.encode()),
                },
                "commit": {"sha": sha, "message": body["message"]},
            },
        )

    def _r_create_pull(self, installation: int, params: dict, body: Any, **_: Any) -> Reply:
        """POST /pulls from a branch of the same repo: 422 for a missing branch, no commits between
        base and head, or an open PR for the same head and base."""
        r = self._repo_for(params, installation)
        body = body if isinstance(body, dict) else {}
        head, base, title = str(body.get("head") or ""), str(body.get("base") or ""), body.get("title")
        doc = "/pulls/pulls#create-a-pull-request"
        if not title:
            raise _error(
                422,
                "Validation Failed",
                doc,
                [{"resource": "PullRequest", "field": "title", "code": "missing_field"}],
            )
        with self.lock:
            for field_name, branch in (("head", head), ("base", base)):
                if branch not in r.branches:
                    raise _error(
                        422,
                        "Validation Failed",
                        doc,
                        [{"resource": "PullRequest", "field": field_name, "code": "invalid"}],
                    )
            if r.branches[head] == r.branches[base]:
                why = f"No commits between {base} and {head}"
                raise _error(
                    422,
                    "Validation Failed",
                    doc,
                    [{"resource": "PullRequest", "code": "custom", "message": why}],
                )
            if any(
                p.repo == r.full_name and p.head_ref == head and p.base_ref == base and p.state == "open"
                for p in self.pulls.values()
            ):
                why = f"A pull request already exists for {r.full_name.split('/')[0]}:{head}."
                raise _error(
                    422,
                    "Validation Failed",
                    doc,
                    [{"resource": "PullRequest", "code": "custom", "message": why}],
                )
            number = 1 + max((n for (repo, n) in self.pulls if repo == r.full_name), default=0)
            pr = FakePull(
                repo=r.full_name,
                number=number,
                id=self.next_id(),
                title=str(title),
                body=str(body.get("body") or ""),
                author=self.bot_login,
                author_type="Bot",
                draft=bool(body.get("draft")),
                labels=[],
                base_ref=base,
                head_ref=head,
                base_sha=r.branches[base],
                head_sha=r.branches[head],
                head_repo=r.full_name,
                created_at=self.clock(),
                shas=[r.branches[head]],
            )
            self.pulls[(r.full_name, number)] = pr
        return Reply(201, self._pull_json(pr))

    def _review_json(self, repo: str, number: int, review: dict[str, Any]) -> dict[str, Any]:
        html = f"https://github.com/{repo}/pull/{number}#pullrequestreview-{review['id']}"
        return {
            "id": review["id"],
            "node_id": f"PRR_{review['id']}",
            "user": self._user(review.get("user") or self.bot_login, review.get("user_type") or "Bot"),
            "body": review["body"],
            "state": review["state"],
            "html_url": html,
            "pull_request_url": self._api(f"/repos/{repo}/pulls/{number}"),
            "_links": {
                "html": {"href": html},
                "pull_request": {"href": self._api(f"/repos/{repo}/pulls/{number}")},
            },
            "submitted_at": review["submitted_at"],
            "commit_id": review["commit_id"],
            "author_association": "NONE" if review.get("user_type", "Bot") == "Bot" else "CONTRIBUTOR",
        }

    def add_review(
        self,
        repo: str,
        number: int,
        body: str,
        *,
        user: str = "mallory",
        user_type: str = "User",
        state: str = "COMMENTED",
    ) -> dict[str, Any]:
        """A submitted review by someone else (e.g. a PR author pasting the bot's head marker)."""
        with self.lock:
            pr = self.pulls[(repo, number)]
            review: dict[str, Any] = {
                "id": self.next_id(),
                "body": body,
                "event": "COMMENT",
                "state": state,
                "commit_id": pr.head_sha,
                "submitted_at": _iso(self.clock()),
                "comments": [],
                "user": user,
                "user_type": user_type,
            }
            self.reviews.setdefault((repo, number), []).append(review)
            return review

    def _r_list_reviews(self, installation: int, params: dict, query: dict, **_: Any) -> Reply:
        pr = self._pull_for(params, installation)
        posted = self.reviews.get((pr.repo, pr.number), [])
        items = [self._review_json(pr.repo, pr.number, rv) for rv in posted]
        return self._paginate(items, query, f"/repos/{pr.repo}/pulls/{pr.number}/reviews")

    def _validate_review_comment(self, pr: FakePull, c: dict[str, Any]) -> list[str]:
        """GitHub's validation messages for one review comment (empty when it is acceptable)."""
        errors: list[str] = []
        path, line = c.get("path"), c.get("line")
        side = c.get("side") or "RIGHT"
        files = {f.filename: f for f in self.pull_files(pr.repo, pr.number)}
        if path not in files:
            return [
                "Pull request review thread path is invalid",
                "Pull request review thread diff hunk can't be blank",
            ]
        if not isinstance(line, int):
            return [
                "Pull request review thread line must be part of the diff",
                "Pull request review thread diff hunk can't be blank",
            ]
        hunk = next((h for h in files[path].hunks if line in h.lines_on(side)), None)
        if hunk is None:
            errors += [
                "Pull request review thread line must be part of the diff",
                "Pull request review thread diff hunk can't be blank",
            ]
        start = c.get("start_line")
        if start is not None:
            start_side = c.get("start_side") or side
            if not isinstance(start, int) or start_side == side and start >= line:
                errors.append("Pull request review thread start line must precede the end line.")
            elif hunk is None or start not in hunk.lines_on(start_side):
                errors.append(
                    "Pull request review thread start line must be part of the same hunk as the line."
                )
        return errors

    def _r_create_review(self, installation: int, params: dict, body: Any, **_: Any) -> Reply:
        pr = self._pull_for(params, installation)
        body = body if isinstance(body, dict) else {}
        doc = "/pulls/reviews#create-a-review-for-a-pull-request"
        event = body.get("event")
        if event is not None and event not in ("COMMENT", "APPROVE", "REQUEST_CHANGES"):
            self.rejected_reviews.append(body)
            raise _error(422, "Unprocessable Entity", doc, [f"Event {event} is not a valid value"])
        commit_id = body.get("commit_id") or pr.head_sha
        if commit_id != pr.head_sha:
            self.rejected_reviews.append(body)
            raise _error(
                422,
                "Unprocessable Entity",
                doc,
                [f"commit_id {commit_id} is not the head of the pull request"],
            )
        comments = body.get("comments") or []
        errors: list[str] = []
        for c in comments:
            for e in self._validate_review_comment(pr, c):
                if e not in errors:
                    errors.append(e)
        if event in (None, "COMMENT", "REQUEST_CHANGES") and not comments and not body.get("body"):
            errors.append("Body can't be blank" if event else "Review body can't be blank")
        existing = self.reviews.get((pr.repo, pr.number), [])
        if event is None and any(rv["state"] == "PENDING" for rv in existing):
            errors.append("User can only have one pending review per pull request")
        if errors:
            self.rejected_reviews.append(body)
            raise _error(422, "Unprocessable Entity", doc, [_to_sentence(errors)])
        state = {
            "COMMENT": "COMMENTED",
            "APPROVE": "APPROVED",
            "REQUEST_CHANGES": "CHANGES_REQUESTED",
            None: "PENDING",
        }[event]
        review: dict[str, Any] = {
            "id": self.next_id(),
            "body": body.get("body") or "",
            "event": event,
            "state": state,
            "commit_id": commit_id,
            "submitted_at": _iso(self.clock()),
            "comments": [],
        }
        if event is None:  # a pending review: validated now, visible to nobody until submitted
            review["pending_comments"] = [dict(c) for c in comments]
            self.reviews.setdefault((pr.repo, pr.number), []).append(review)
            return Reply(200, self._review_json(pr.repo, pr.number, review))
        for c in comments:
            side = c.get("side") or "RIGHT"
            hunk = self._hunk_for(pr.repo, pr.number, c["path"], c["line"], side)
            created = self._new_review_comment(
                pr.repo,
                pr.number,
                parent_review_id=review["id"],
                path=c["path"],
                body=c.get("body", ""),
                user=self.bot_login,
                line=c["line"],
                side=side,
                start_line=c.get("start_line"),
                start_side=c.get("start_side") or (side if c.get("start_line") else None),
                diff_hunk=hunk.text_until(c["line"], side) if hunk else "",
                in_reply_to=None,
                commit_id=commit_id,
                user_type="Bot",
            )
            review["comments"].append(created)
        self.reviews.setdefault((pr.repo, pr.number), []).append(review)
        return Reply(200, self._review_json(pr.repo, pr.number, review))

    def _r_delete_pending_review(self, installation: int, params: dict, **_: Any) -> Reply:
        pr = self._pull_for(params, installation)
        reviews = self.reviews.get((pr.repo, pr.number), [])
        review = next((rv for rv in reviews if rv["id"] == int(params["id"])), None)
        doc = "/pulls/reviews#delete-a-pending-review-for-a-pull-request"
        if review is None:
            raise _error(404, "Not Found", doc)
        if review["state"] != "PENDING":
            raise _error(
                422, "Unprocessable Entity", doc, ["Can not delete a non-pending pull request review"]
            )
        reviews.remove(review)
        self.deleted_pending_reviews.append(review)
        return Reply(200, self._review_json(pr.repo, pr.number, review))

    def posted_reviews(self, repo: str, number: int) -> list[dict[str, Any]]:
        """Submitted (non-pending) reviews on the PR, oldest first."""
        return [rv for rv in self.reviews.get((repo, number), []) if rv["state"] != "PENDING"]

    def _r_list_review_comments(self, installation: int, params: dict, query: dict, **_: Any) -> Reply:
        pr = self._pull_for(params, installation)
        items = list(self.review_comments.get((pr.repo, pr.number), []))
        return self._paginate(items, query, f"/repos/{pr.repo}/pulls/{pr.number}/comments")

    def _r_reply(self, installation: int, params: dict, body: Any, **_: Any) -> Reply:
        pr = self._pull_for(params, installation)
        parent = self._find_review_comment(pr.repo, pr.number, int(params["cid"]))
        text = (body or {}).get("body") if isinstance(body, dict) else None
        if not text:
            raise _error(
                422,
                "Validation Failed",
                "/pulls/comments",
                [{"resource": "PullRequestReviewComment", "code": "missing_field", "field": "body"}],
            )
        c = self._new_review_comment(
            pr.repo,
            pr.number,
            parent_review_id=None,
            path=parent["path"],
            body=text,
            user=self.bot_login,
            line=parent.get("line"),
            side=parent.get("side") or "RIGHT",
            start_line=None,
            start_side=None,
            diff_hunk=parent["diff_hunk"],
            in_reply_to=parent["id"],
            commit_id=parent["commit_id"],
            user_type="Bot",
        )
        return Reply(201, c)

    def _list_reactions(
        self, kind: str, installation: int, params: dict, query: dict, if_none_match: str | None
    ) -> Reply:
        self._repo_for(params, installation)
        items = list(self.reactions.get((kind, int(params["cid"])), []))
        etag = 'W/"' + hashlib.sha1(json.dumps(items, sort_keys=True).encode()).hexdigest() + '"'
        if if_none_match and if_none_match.strip() == etag:
            return Reply(304, None, {"ETag": etag})
        path = f"/repos/{params['repo']}/{kind}s/comments/{params['cid']}/reactions"
        reply = self._paginate(items, query, path)
        reply.headers["ETag"] = etag
        return reply

    def _add_reaction(self, kind: str, installation: int, params: dict, body: Any) -> Reply:
        self._repo_for(params, installation)
        cid = int(params["cid"])
        if kind == "pull":
            self._find_review_comment(params["repo"], None, cid)
        elif not any(
            c["id"] == cid for (r, _), cs in self.issue_comments.items() if r == params["repo"] for c in cs
        ):
            raise _error(404, "Not Found", "/reactions/reactions")
        content = body.get("content") if isinstance(body, dict) else None
        if content not in REACTION_CONTENTS:
            raise _error(
                422,
                "Validation Failed",
                "/reactions/reactions",
                [{"resource": "Reaction", "code": "invalid", "field": "content"}],
            )
        for existing in self.reactions.get((kind, cid), []):
            if existing["content"] == content and existing["user"]["login"] == self.bot_login:
                return Reply(200, existing)
        return Reply(201, self.add_reaction(cid, content, self.bot_login, kind=kind))

    def _r_list_pull_reactions(
        self, installation: int, params: dict, query: dict, if_none_match: str | None, **_: Any
    ) -> Reply:
        return self._list_reactions("pull", installation, params, query, if_none_match)

    def _r_list_issue_reactions(
        self, installation: int, params: dict, query: dict, if_none_match: str | None, **_: Any
    ) -> Reply:
        return self._list_reactions("issue", installation, params, query, if_none_match)

    def _r_add_pull_reaction(self, installation: int, params: dict, body: Any, **_: Any) -> Reply:
        return self._add_reaction("pull", installation, params, body)

    def _r_add_issue_reaction(self, installation: int, params: dict, body: Any, **_: Any) -> Reply:
        return self._add_reaction("issue", installation, params, body)

    def add_issue_comment(
        self, repo: str, number: int, body: str, user: str = "alice", user_type: str = "User"
    ) -> dict[str, Any]:
        """A conversation comment on the PR (e.g. a human typing `@reviewbot review`)."""
        with self.lock:
            cid = self.next_id()
            u = self._api(f"/repos/{repo}/issues/comments/{cid}")
            now = _iso(self.clock())
            c = {
                "id": cid,
                "node_id": f"IC_{cid}",
                "url": u,
                "html_url": f"https://github.com/{repo}/pull/{number}#issuecomment-{cid}",
                "body": body,
                "user": self._user(user, user_type),
                "created_at": now,
                "updated_at": now,
                "issue_url": self._api(f"/repos/{repo}/issues/{number}"),
                "author_association": "NONE" if user_type == "Bot" else "MEMBER",
            }
            self.issue_comments.setdefault((repo, number), []).append(c)
            return c

    def _r_list_issue_comments(self, installation: int, params: dict, query: dict, **_: Any) -> Reply:
        self._repo_for(params, installation)
        items = list(self.issue_comments.get((params["repo"], int(params["n"])), []))
        return self._paginate(items, query, f"/repos/{params['repo']}/issues/{params['n']}/comments")

    def _r_create_issue_comment(self, installation: int, params: dict, body: Any, **_: Any) -> Reply:
        self._repo_for(params, installation)
        text = body.get("body") if isinstance(body, dict) else None
        if not text:
            raise _error(
                422,
                "Validation Failed",
                "/issues/comments",
                [{"resource": "IssueComment", "code": "missing_field", "field": "body"}],
            )
        comment = self.add_issue_comment(params["repo"], int(params["n"]), text, self.bot_login, "Bot")
        return Reply(201, comment)

    def _check_run_json(self, run: dict[str, Any]) -> dict[str, Any]:
        repo = run["repo"]
        u = self._api(f"/repos/{repo}/check-runs/{run['id']}")
        out = run.get("output") or {}
        return {
            "id": run["id"],
            "head_sha": run["head_sha"],
            "node_id": f"CR_{run['id']}",
            "external_id": run.get("external_id") or "",
            "url": u,
            "html_url": f"https://github.com/{repo}/runs/{run['id']}",
            "details_url": run.get("details_url"),
            "status": run["status"],
            "conclusion": run.get("conclusion"),
            "started_at": run.get("started_at"),
            "completed_at": run.get("completed_at"),
            "output": {
                "title": out.get("title"),
                "summary": out.get("summary"),
                "text": out.get("text"),
                "annotations_count": len(out.get("annotations") or []),
                "annotations_url": f"{u}/annotations",
            },
            "name": run["name"],
            "check_suite": {"id": run["check_suite_id"]},
            "app": None,
            "pull_requests": [],
        }

    def _r_create_check_run(self, installation: int, params: dict, body: Any, **_: Any) -> Reply:
        self._repo_for(params, installation)
        body = body if isinstance(body, dict) else {}
        if not body.get("name") or not body.get("head_sha"):
            raise _error(422, 'Invalid request.\n\n"name", "head_sha" weren\'t supplied.', "/checks/runs")
        now = _iso(self.clock())
        run = {
            **body,
            "repo": params["repo"],
            "id": self.next_id(),
            "check_suite_id": self.next_id(),
            "status": body.get("status") or ("completed" if body.get("conclusion") else "queued"),
            "started_at": body.get("started_at") or now,
        }
        if run.get("conclusion") and not run.get("completed_at"):
            run["status"] = "completed"
            run["completed_at"] = now
        run["history"] = [dict(body)]
        self.check_runs.append(run)
        return Reply(201, self._check_run_json(run))

    def _r_list_check_runs(self, installation: int, params: dict, query: dict, **_: Any) -> Reply:
        self._repo_for(params, installation)
        name = (query.get("check_name") or [None])[0]
        runs = [
            r
            for r in self.check_runs
            if r["repo"] == params["repo"]
            and r["head_sha"] == params["sha"]
            and (name is None or r["name"] == name)
        ]
        return Reply(200, {"total_count": len(runs), "check_runs": [self._check_run_json(r) for r in runs]})

    def _r_check_run_annotations(self, installation: int, params: dict, query: dict, **_: Any) -> Reply:
        self._repo_for(params, installation)
        wanted = int(params["id"])
        run = next((r for r in self.check_runs if r["id"] == wanted and r["repo"] == params["repo"]), None)
        if run is None:
            raise _error(404, "Not Found", "/checks/runs#list-check-run-annotations")
        per_page = int((query.get("per_page") or ["30"])[0])
        page = int((query.get("page") or ["1"])[0])
        items = [
            {
                "path": a.get("path"),
                "start_line": a.get("start_line"),
                "end_line": a.get("end_line"),
                "start_column": a.get("start_column"),
                "end_column": a.get("end_column"),
                "annotation_level": a.get("annotation_level"),
                "title": a.get("title"),
                "message": a.get("message"),
                "raw_details": a.get("raw_details"),
                "blob_href": f"https://github.com/{params['repo']}/blob/{run['head_sha']}/{a.get('path')}",
            }
            for a in (run.get("output") or {}).get("annotations") or []
        ]
        return Reply(200, items[(page - 1) * per_page : page * per_page])

    def _r_list_workflow_runs(self, installation: int, params: dict, query: dict, **_: Any) -> Reply:
        self._repo_for(params, installation)
        sha = (query.get("head_sha") or [None])[0]
        runs = [
            {
                "id": r["id"],
                "name": r["name"],
                "head_sha": r["head_sha"],
                "status": "completed",
                "conclusion": "success",
                "event": "pull_request",
            }
            for r in self.workflow_runs
            if r["repo"] == params["repo"] and sha in (None, r["head_sha"])
        ]
        return Reply(200, {"total_count": len(runs), "workflow_runs": runs})

    def _r_list_artifacts(self, installation: int, params: dict, **_: Any) -> Reply:
        self._repo_for(params, installation)
        arts = [
            {
                "id": a["id"],
                "name": a["name"],
                "size_in_bytes": len(a["data"]),
                "expired": a["expired"],
                "archive_download_url": self._api(f"/repos/{a['repo']}/actions/artifacts/{a['id']}/zip"),
                "workflow_run": {"id": a["run_id"]},
            }
            for a in self.artifacts
            if a["repo"] == params["repo"] and a["run_id"] == int(params["id"])
        ]
        return Reply(200, {"total_count": len(arts), "artifacts": arts})

    def _r_download_artifact(self, installation: int, params: dict, **_: Any) -> Reply:
        """Like GitHub: a 302 to short-lived blob storage (here, a path on this server)."""
        self._repo_for(params, installation)
        wanted = int(params["id"])
        art = next((a for a in self.artifacts if a["id"] == wanted and a["repo"] == params["repo"]), None)
        if art is None or art["expired"]:
            raise _error(410 if art else 404, "Gone" if art else "Not Found", "/actions/artifacts")
        return Reply(302, None, {"Location": self._api(f"/_blobs/artifact-{art['id']}.zip")})

    def _r_artifact_blob(self, params: dict, **_: Any) -> Reply:
        art = next((a for a in self.artifacts if a["id"] == int(params["id"])), None)
        if art is None:
            raise _error(404, "Not Found")
        return Reply(200, art["data"], content_type="application/zip")

    def _r_update_check_run(self, installation: int, params: dict, body: Any, **_: Any) -> Reply:
        self._repo_for(params, installation)
        run = next(
            (r for r in self.check_runs if r["id"] == int(params["id"]) and r["repo"] == params["repo"]), None
        )
        if run is None:
            raise _error(404, "Not Found", "/checks/runs#update-a-check-run")
        body = body if isinstance(body, dict) else {}
        run["history"].append(dict(body))
        run.update({k: v for k, v in body.items() if k != "history"})
        if body.get("conclusion"):
            run["status"] = "completed"
            run.setdefault("completed_at", _iso(self.clock()))
            run["completed_at"] = run.get("completed_at") or _iso(self.clock())
        return Reply(200, self._check_run_json(run))

    def _r_commit(self, installation: int, params: dict, accept: str, **_: Any) -> Reply:
        r = self._repo_for(params, installation)
        sha = self._resolve_ref(r, params["sha"])
        if self._wants_diff(accept):
            c = self.commits[sha]
            files = self.diff_commits(c.parent, sha)
            return Reply(200, "".join(f.git_text() for f in files), content_type="text/plain; charset=utf-8")
        return Reply(200, self._commit_json(r.full_name, sha, with_files=True))


def _decode_jwt(token: str, public_key: str, now: float) -> dict[str, Any]:
    """Verify an App JWT like GitHub: RS256 signature, `exp` in the future, `iat` not in the future.

    PyJWT's own time checks are off so the caller chooses the clock `now`.
    """
    claims = jwt.decode(
        token,
        public_key,
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp", "iss"]},
    )
    if claims["exp"] <= now:
        raise ValueError("'Expiration time' claim ('exp') must be a numeric value representing the future")
    if claims["iat"] > now + 60:
        raise ValueError("'Issued at' claim ('iat') must be an Integer representing the time")
    if claims["exp"] - claims["iat"] > 600 + 60:
        raise ValueError("'Expiration time' claim ('exp') is too far in the future")
    return claims
