"""Every feedback signal end to end through the fake GitHub (real HTTP), into the store, into a retrain.

The bot's comments are posted with the real GitHubClient; humans react, reply, push and resolve
on the fake; reviewbot polls reactions (ETags) and handles the webhook payloads; the labels land in
the store; a retrain then moves that repo's scores the way the labels say.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reviewbot.app import records
from reviewbot.app.feedback_poll import (
    feedback_handlers,
    handle_event,
    poll_reactions,
    schedule_feedback_jobs,
)
from reviewbot.app.github import GitHubClient
from reviewbot.app.github_types import Limits
from reviewbot.app.queue import JobQueue
from reviewbot.app.records import Tenant
from reviewbot.app.store import Store
from reviewbot.app.worker import Worker
from reviewbot.core.domain import Candidate, Decision
from reviewbot.filter.acceptance import AcceptanceModel, FeatureConfig
from reviewbot.learning.retrain import RetrainPolicy, labelled_findings, retrain_handler, retrain_repo
from reviewbot.learning.stats import repo_stats
from reviewbot.review.render import ReviewComment, fingerprint_marker, render_comment

try:  # tests/ as a package (tests/__init__.py) or as a plain directory on sys.path
    from tests.fakes.fake_github import FakeGitHub
except ImportError:
    from fakes.fake_github import FakeGitHub  # type: ignore[no-redef]

REPO = "acme/shop"
T = Tenant(7, REPO)
BOT = "reviewbot[bot]"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# app/db.py at the PR head: every line is new in the PR, so every line takes a comment.
DB = [
    "import sqlite3",  # 1
    "",  # 2
    "def find(conn, user_id):",  # 3
    "    q = 'SELECT * FROM users WHERE id = %s' % user_id",  # 4  sql -> fixed by a commit
    "    return conn.execute(q).fetchall()",  # 5
    "",  # 6
    "def count(conn, name):",  # 7
    "    q = 'SELECT count(*) FROM t WHERE n = %s' % name",  # 8  sql -> suggestion applied
    "    return conn.execute(q).fetchone()",  # 9
    "",  # 10
    "def helper_fn(x):",  # 11  nit -> resolved, unchanged
    "    return x",  # 12  nit -> untouched
    "",  # 13
    "def other_fn(y):",  # 14  nit -> 👎
    "    return y",  # 15  sql-ish -> 👍
    "",  # 16
    "def last(z):",  # 17  nit -> reply "false positive"
    "    return z",  # 18  sql -> reply "good catch, fixed"
    "",  # 19
    "def tail(w):",  # 20  suppressed; its code changes later
    "    return w",  # 21  suppressed; never changes
]
SQL = "SQL built by string formatting from user input is injectable; use a parameterised query."
NIT = "Nit: consider renaming this function to something more descriptive."
SUGGESTION = "    q = 'SELECT count(*) FROM t WHERE n = ?'"


def text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


@dataclass
class World:
    gh: FakeGitHub
    client: GitHubClient
    store: Store
    clock: list[float]
    comment: dict[int, int]  # line -> github comment id
    finding: dict[int, int]  # line -> finding id
    head: str

    def labels(self, line: int) -> list[tuple[str, str, float]]:
        return [
            (lab, src, w)
            for lab, src, w in self.store.conn.execute(
                "SELECT label, source, weight FROM feedback WHERE finding_id = ? ORDER BY id",
                (self.finding[line],),
            )
        ]

    def tick(self, seconds: float = 60.0) -> None:
        self.clock[0] += seconds


POSTED = {4: SQL, 8: SQL, 11: NIT, 12: NIT, 14: NIT, 15: SQL, 17: NIT, 18: SQL}
SUPPRESSED = {20: NIT, 21: NIT}


@pytest.fixture()
def fake() -> Iterator[tuple[FakeGitHub, list[float]]]:
    clock = [T0.timestamp()]
    with FakeGitHub(clock=lambda: clock[0], bot_login=BOT) as gh:
        yield gh, clock


@pytest.fixture()
async def world(fake: tuple[FakeGitHub, list[float]]) -> AsyncIterator[World]:
    gh, clock = fake
    gh.add_repo(REPO, installation_id=7, files_at_default={"README.md": "shop\n"})
    pr = gh.add_pull(REPO, 1, head_files={"app/db.py": text(DB)})
    client = GitHubClient.with_token(
        gh.issue_token(7), base_url=gh.base_url, bot_login=BOT, limits=Limits(write_interval=0.0)
    )
    comments = []
    for line, body in POSTED.items():
        extra = f"\n\n```suggestion\n{SUGGESTION}\n```" if line == 8 else ""
        comments.append(
            ReviewComment(
                "app/db.py", line, "RIGHT", body + extra + "\n" + fingerprint_marker(f"fp{line}"), f"fp{line}"
            )
        )
    posted = await client.post_review(REPO, 1, commit_id=pr.head_sha, body="review", comments=comments)
    assert len(posted.comment_ids) == len(POSTED)

    store = Store.open(":memory:")
    store.conn.execute(
        "INSERT INTO reviews (installation_id, repo, pr, head_sha, state, created_at) "
        "VALUES (7, ?, 1, ?, 'posted', ?)",
        (REPO, pr.head_sha, T0.isoformat()),
    )
    comment_of: dict[int, int] = {}
    finding_of: dict[int, int] = {}
    for line, body in {**POSTED, **SUPPRESSED}.items():
        cid = posted.comment_ids.get(f"fp{line}")
        cur = store.conn.execute(
            "INSERT INTO findings (review_id, installation_id, repo, pr, path, line, side, body, category, "
            "source, rule_id, score, decision, fingerprint, github_comment_id, created_at) "
            "VALUES (1, 7, ?, 1, 'app/db.py', ?, 'RIGHT', ?, ?, 'llm', NULL, 0.5, ?, ?, ?, ?)",
            (
                REPO,
                line,
                body + ("\n\n```suggestion\n" + SUGGESTION + "\n```" if line == 8 else ""),
                "security" if body == SQL else "style",
                "post" if line in POSTED else "suppress",
                f"fp{line}",
                cid,
                T0.isoformat(),
            ),
        )
        finding_of[line] = int(cur.lastrowid)
        if cid:
            comment_of[line] = cid
    yield World(gh, client, store, clock, comment_of, finding_of, pr.head_sha)
    store.close()


def active_model(store: Store) -> AcceptanceModel | None:
    params = records.active_model_params(store, T)
    return AcceptanceModel.from_json(params) if params is not None else None


def _payload(event_body: dict[str, Any]) -> dict[str, Any]:
    return {"repository": {"full_name": REPO}, "installation": {"id": 7}, **event_body}


async def test_reactions_polled_with_etags_latest_per_user_wins(world: World) -> None:
    w = world
    now = T0 + timedelta(hours=1)
    w.gh.add_reaction(w.comment[15], "+1", "alice")
    w.gh.add_reaction(w.comment[14], "+1", BOT)  # the bot's own reaction: ignored
    w.gh.add_reaction(w.comment[14], "-1", "bob")
    report = await poll_reactions(w.store, w.client, T, now=now)
    assert report.polled == len(POSTED) and not report.errors
    assert w.labels(15) == [("accepted", "reaction", 1.0)]
    assert w.labels(14) == [("dismissed", "reaction", 1.0)]

    # nothing changed: every request is conditional and answered 304
    before = len(w.gh.requests)
    report = await poll_reactions(w.store, w.client, T, now=now)
    assert report.not_modified == len(POSTED) and report.label_changes == 0
    polls = [r for r in w.gh.requests[before:] if r.path.endswith("/reactions")]
    assert len(polls) == len(POSTED)
    assert all(r.status == 304 and r.headers.get("if-none-match") for r in polls)

    # alice changes her mind: her latest reaction replaces her label
    w.tick(60)  # (the fake also uses this clock for token expiry: stay within the hour)
    w.gh.add_reaction(w.comment[15], "confused", "alice")
    report = await poll_reactions(w.store, w.client, T, now=now + timedelta(hours=1))
    assert w.labels(15) == [("dismissed", "reaction", 1.0)]
    assert report.not_modified == len(POSTED) - 1

    # comments older than the polling window are left alone
    report = await poll_reactions(w.store, w.client, T, now=T0 + timedelta(days=15))
    assert report.polled == 0


async def test_replies_become_labels_conservatively(world: World) -> None:
    w = world
    cases = {
        17: "False positive: `z` is validated by the caller.",
        18: "Good catch, fixed!",
        11: "hmm, not fixed yet",
    }
    for line, body in cases.items():
        reply = w.gh.add_reply(REPO, 1, w.comment[line], body, user="carol")
        await handle_event(
            w.store,
            w.client,
            "pull_request_review_comment",
            _payload({"action": "created", "comment": reply, "pull_request": {"number": 1}}),
            now=T0,
        )
    assert w.labels(17) == [("dismissed", "reply", 1.0)]
    assert w.labels(18) == [("accepted", "reply", 1.0)]
    assert w.labels(11) == []  # a negated "fixed" is no label
    # the bot's own reply in the thread is not feedback
    bot_reply = w.gh.add_reply(REPO, 1, w.comment[12], "Done!", user=BOT)
    bot_reply["user"]["type"] = "Bot"
    assert (
        await handle_event(
            w.store,
            w.client,
            "pull_request_review_comment",
            _payload({"action": "created", "comment": bot_reply}),
            now=T0,
        )
        == []
    )


async def test_commits_suggestions_threads_and_closing(world: World) -> None:
    w = world
    new = list(DB)
    new[3] = "    q = 'SELECT * FROM users WHERE id = ?'"  # line 4 addressed by hand
    new[4] = "    return conn.execute(q, (user_id,)).fetchall()"
    new[7] = SUGGESTION  # line 8: the suggestion, applied as is
    new[19] = "def tail(w, v=None):"  # suppressed line 20 changed anyway
    new.insert(0, "# header")  # and everything shifts down by one line
    sha = w.gh.push(REPO, 1, {"app/db.py": text(new)})
    pr = {"number": 1, "head": {"sha": sha}, "merged": False}
    events = await handle_event(
        w.store,
        w.client,
        "pull_request",
        _payload({"action": "synchronize", "after": sha, "pull_request": pr}),
        now=T0 + timedelta(hours=2),
    )
    assert {(e.finding_id, e.source) for e in events} == {
        (w.finding[4], "commit"),
        (w.finding[8], "suggestion"),
        (w.finding[20], "suppressed_followup"),
    }
    assert w.labels(12) == [] and w.labels(21) == []  # untouched lines: nothing yet

    # threads: resolved after the code changed -> accepted; resolved with no change -> weak dismissal
    def thread(line: int, action: str) -> dict[str, Any]:
        comment = {"id": w.comment[line], "path": "app/db.py", "line": line}
        return _payload(
            {
                "action": action,
                "thread": {"node_id": f"PRRT_{line}", "comments": [comment]},
                "pull_request": pr,
                "sender": {"login": "dave"},
            }
        )

    await handle_event(w.store, w.client, "pull_request_review_thread", thread(4, "resolved"), now=T0)
    await handle_event(w.store, w.client, "pull_request_review_thread", thread(11, "resolved"), now=T0)
    assert ("accepted", "thread", 1.0) in w.labels(4)
    assert w.labels(11) == [("weak_dismissed", "thread", 0.5)]
    await handle_event(w.store, w.client, "pull_request_review_thread", thread(11, "unresolved"), now=T0)
    assert w.labels(11) == []  # unresolving withdraws the thread's label

    # merged: untouched posted comments get the weak 'untouched' label, untouched suppressed ones a
    # follow-up 'dismissed'; labelled ones get nothing more
    pr["merged"] = True
    await handle_event(
        w.store,
        w.client,
        "pull_request",
        _payload({"action": "closed", "pull_request": pr}),
        now=T0 + timedelta(days=1),
    )
    assert w.labels(12) == [("weak_dismissed", "untouched", 0.2)]
    assert w.labels(21) == [("dismissed", "suppressed_followup", 1.0)]
    assert [s for _, s, _ in w.labels(4)] == ["commit", "thread"]
    s = repo_stats(w.store, T)
    assert (s.suppressed_followed_up, s.suppressed_changed) == (2, 1)
    assert s.untouched == 6  # 11, 12, 14, 15, 17, 18 had no signal in this test


async def test_the_loop_retrains_the_repo_the_way_its_labels_say(world: World) -> None:
    """All signals together, then a retrain: SQL findings score higher, nits lower, than before."""
    w = world
    for line in (15,):
        w.gh.add_reaction(w.comment[line], "rocket", "alice")
    w.gh.add_reaction(w.comment[14], "-1", "bob")
    await poll_reactions(w.store, w.client, T, now=T0 + timedelta(hours=1))
    for line, body in {17: "@reviewbot ignore", 18: "thanks, updated"}.items():
        reply = w.gh.add_reply(REPO, 1, w.comment[line], body, user="carol")
        await handle_event(
            w.store,
            w.client,
            "pull_request_review_comment",
            _payload({"action": "created", "comment": reply}),
            now=T0,
        )
    new = list(DB)
    new[3] = "    q = 'SELECT * FROM users WHERE id = ?'"
    new[7] = SUGGESTION
    sha = w.gh.push(REPO, 1, {"app/db.py": text(new)})
    pr = {"number": 1, "head": {"sha": sha}, "merged": True}
    await handle_event(
        w.store,
        w.client,
        "pull_request",
        _payload({"action": "synchronize", "after": sha, "pull_request": pr}),
        now=T0,
    )
    thread = {"node_id": "PRRT_11", "comments": [{"id": w.comment[11]}]}
    await handle_event(
        w.store,
        w.client,
        "pull_request_review_thread",
        _payload({"action": "resolved", "thread": thread, "pull_request": pr}),
        now=T0,
    )
    await handle_event(
        w.store,
        w.client,
        "pull_request",
        _payload({"action": "closed", "pull_request": pr}),
        now=T0 + timedelta(days=1),
    )
    # every posted finding now has a label: 4 SQL accepted, 4 nits dismissed (one only weakly)
    outcome = {line: sorted({lab for lab, _, _ in w.labels(line)}) for line in POSTED}
    assert outcome == {
        4: ["accepted"],
        8: ["accepted"],
        15: ["accepted"],
        18: ["accepted"],
        11: ["weak_dismissed"],
        12: ["weak_dismissed"],
        14: ["dismissed"],
        17: ["dismissed"],
    }

    prior = AcceptanceModel(FeatureConfig(n_text=2**12, n_cat=2**8), [])
    policy = RetrainPolicy(min_holdout=2, min_train=4, holdout_fraction=0.25)
    result = retrain_repo(w.store, T, now=T0 + timedelta(days=1), prior=prior, policy=policy)
    assert result.version == 1, result.reason
    model = active_model(w.store) if result.activated else None
    assert model is not None, result.reason
    probe = [
        Candidate(id="sql", path="app/new.py", line=1, body=SQL, repo=REPO, category="security"),
        Candidate(id="nit", path="app/new.py", line=2, body=NIT, repo=REPO, category="style"),
    ]
    before, after = prior.score(probe), model.score(probe)
    assert after[0] > before[0] and after[1] < before[1], (before, after)
    row = w.store.conn.execute("SELECT metrics, active FROM model_versions").fetchone()
    assert json.loads(row[0])["decision"] == "activated" and row[1] == 1


async def test_worker_wiring_polls_handles_deliveries_and_retrains(world: World) -> None:
    """The periodic tick queues a poll per repo; a real Worker runs it, then the retrain it triggers."""
    w = world
    queue = JobQueue(w.store, clock=lambda: w.clock[0])
    now = T0 + timedelta(hours=1)
    for line in (4, 8, 15, 18):
        w.gh.add_reaction(w.comment[line], "+1", "alice")
    for line in (11, 12, 14, 17):
        w.gh.add_reaction(w.comment[line], "-1", "bob")

    async def client_for(installation_id: int) -> GitHubClient:
        assert installation_id == 7
        return w.client

    prior = AcceptanceModel(FeatureConfig(n_text=2**12, n_cat=2**8), [])
    policy = RetrainPolicy(min_new_labels=8, min_holdout=2, min_train=4)
    handlers = {
        **feedback_handlers(
            w.store, client_for, now=lambda: now, enqueue=queue.enqueue, retrain_policy=policy
        ),
        "retrain": retrain_handler(w.store, prior=lambda: prior, now=lambda: now, policy=policy),
    }
    ids = schedule_feedback_jobs(w.store, queue.enqueue, now=now, retrain_policy=policy)
    assert len(ids) == 1  # one poll for acme/shop; no retrain is due yet
    assert (
        schedule_feedback_jobs(w.store, queue.enqueue, now=now, retrain_policy=policy) == ids
    )  # deduplicated while queued
    worker = Worker(queue, handlers, worker_id="w1", heartbeat_interval=0.05, poll_interval=0.01)
    assert await worker.run_until_idle(timeout=30) == 2  # the poll, then the retrain it queued
    kinds = [k for (k,) in w.store.conn.execute("SELECT kind FROM jobs WHERE state = 'done' ORDER BY id")]
    assert kinds == ["poll_feedback", "retrain"]
    assert w.store.conn.execute("SELECT COUNT(*) FROM feedback WHERE source = 'reaction'").fetchone()[0] == 8
    assert active_model(w.store) is not None

    # a webhook delivery queued as webhooks.plan does it: a reply, handled by the 'feedback' job
    reply = w.gh.add_reply(REPO, 1, w.comment[12], "won't fix", user="carol")
    queue.enqueue(
        "feedback",
        {
            "webhook_event": "pull_request_review_comment",
            "webhook": _payload({"action": "created", "comment": reply}),
        },
        installation_id=7,
        repo=REPO,
        pr=1,
    )
    assert await worker.run_until_idle(timeout=30) == 1
    assert ("dismissed", "reply", 1.0) in w.labels(12)


async def test_real_github_payloads(shared_data: Path, fake: tuple[FakeGitHub, list[float]]) -> None:
    """GitHub's own example deliveries (../shared/data/github-webhooks) through handle_event."""
    gh, _ = fake
    gh.add_installation(1)
    client = GitHubClient.with_token(gh.issue_token(1), base_url=gh.base_url, bot_login=BOT)
    hooks = shared_data / "github-webhooks"
    store = Store.open(":memory:")
    head = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    hello = Tenant(1, "Codertocat/Hello-World")  # the installation GitHub's examples carry
    review_id = records.claim_review(store, hello, 2, head, "b" * 40, T0.isoformat())
    records.add_findings(
        store,
        hello,
        review_id,
        [
            records.NewFinding(
                pr=2,
                path="README.md",
                line=1,
                side="RIGHT",
                body="x",
                decision="post",
                reason="r",
                fingerprint="fp",
                comment_id=284312630,
            )
        ],
        T0.isoformat(),
    )

    def load(path: str) -> dict[str, Any]:
        return json.loads((hooks / path).read_text(encoding="utf-8"))

    def sources() -> list[tuple[str, str]]:
        return list(store.conn.execute("SELECT source, label FROM feedback ORDER BY id"))

    # a top-level review comment (no in_reply_to_id) is not feedback; a reply to ours is
    for name in ("created", "edited", "deleted"):
        assert (
            await handle_event(
                store,
                client,
                "pull_request_review_comment",
                load(f"pull_request_review_comment/{name}.payload.json"),
                now=T0,
            )
            == []
        )
    reply = load("pull_request_review_comment/created.payload.json")
    reply["comment"].update(id=999, in_reply_to_id=284312630, body="This is a false positive.")
    await handle_event(store, client, "pull_request_review_comment", reply, now=T0)
    assert sources() == [("reply", "dismissed")]
    reply["action"] = "deleted"
    await handle_event(store, client, "pull_request_review_comment", reply, now=T0)
    assert sources() == []

    # resolved at the same head: nothing changed -> weak dismissal; unresolved withdraws it
    await handle_event(
        store,
        client,
        "pull_request_review_thread",
        load("pull_request_review_thread/resolved.payload.json"),
        now=T0,
    )
    assert sources() == [("thread", "weak_dismissed")]
    await handle_event(
        store,
        client,
        "pull_request_review_thread",
        load("pull_request_review_thread/unresolved.payload.json"),
        now=T0,
    )
    assert sources() == []

    # every pull_request example: only synchronize and closed matter; closed marks ours untouched
    for path in sorted((hooks / "pull_request").glob("*.json")):
        await handle_event(store, client, "pull_request", json.loads(path.read_text()), now=T0)
    assert sources() == [("untouched", "weak_dismissed")]
    store.close()


async def test_replies_count_only_from_write_access_or_the_pr_author(world: World) -> None:
    """On a public repo anyone can reply; a passer-by's "false positive" must not teach the model."""
    w = world
    stranger = w.gh.add_reply(REPO, 1, w.comment[17], "False positive.", user="mallory")
    stranger["author_association"] = "NONE"
    author = w.gh.add_reply(REPO, 1, w.comment[18], "Good catch, fixed!", user="dana")
    author["author_association"] = "CONTRIBUTOR"
    pr = {"number": 1, "user": {"login": "dana", "type": "User"}}
    for reply in (stranger, author):
        payload = _payload({"action": "created", "comment": reply, "pull_request": pr})
        await handle_event(w.store, w.client, "pull_request_review_comment", payload, now=T0)
    assert w.labels(17) == []
    assert w.labels(18) == [("accepted", "reply", 1.0)]


async def test_an_applied_suggestion_is_labelled_from_the_rows_production_writes(
    fake: tuple[FakeGitHub, list[float]],
) -> None:
    """Issue #17: the stored body lacked the suggestion block, so an applied suggestion was
    labelled 'commit'. Here the comment and the findings row come from the production paths
    (render_comment, NewFinding.from_decision, finish_review): nothing is inserted by hand."""
    gh, _clock = fake
    gh.add_repo(REPO, installation_id=7, files_at_default={"README.md": "shop\n"})
    pr = gh.add_pull(REPO, 1, head_files={"app/db.py": text(DB)})
    client = GitHubClient.with_token(
        gh.issue_token(7), base_url=gh.base_url, bot_login=BOT, limits=Limits(write_interval=0.0)
    )
    cand = Candidate(
        id="llm:1",
        path="app/db.py",
        line=8,
        body=SQL,
        title="SQL injection",
        category="security",
        severity="high",
        suggestion=SUGGESTION + "\n",
    )
    decision = Decision(cand, "post", "posted", 0.9, "high", "security", "c1", "fp-sugg")
    comment = ReviewComment("app/db.py", 8, "RIGHT", render_comment(decision), "fp-sugg")
    posted = await client.post_review(REPO, 1, commit_id=pr.head_sha, body="review", comments=[comment])
    store = Store.open(":memory:")
    review_id = records.claim_review(store, T, 1, pr.head_sha, "b" * 40, T0.isoformat())
    row = records.NewFinding.from_decision(decision, pr=1, comment_id=posted.comment_ids["fp-sugg"])
    records.finish_review(
        store,
        T,
        review_id,
        github_review_id=posted.review_id,
        check_run_id=None,
        funnel={},
        usage={},
        findings=[row],
        now=T0.isoformat(),
    )
    [finding] = records.pr_findings(store, T, 1)
    new = list(DB)
    new[7] = SUGGESTION
    sha = gh.push(REPO, 1, {"app/db.py": text(new)})
    payload = {"action": "synchronize", "after": sha, "pull_request": {"number": 1, "head": {"sha": sha}}}
    events = await handle_event(store, client, "pull_request", _payload(payload), now=T0 + timedelta(hours=1))
    assert [(e.finding_id, e.label, e.source) for e in events] == [(finding.id, "accepted", "suggestion")]
    # the model still sees the comment's text alone, as it scored it
    [lf] = labelled_findings(store, T)
    assert lf.row.candidate.body == SQL
    store.close()
