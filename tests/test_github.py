"""The GitHub adapter through real HTTP: githubkit pointed at the fake GitHub server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
from unidiff import PatchSet

from reviewbot.app.github import GitHubApp, GitHubClient
from reviewbot.app.github_types import (
    GitHubAPIError,
    GitHubRateLimitError,
    GitHubTransientError,
    Limits,
    ReviewRejectedError,
)
from reviewbot.core.domain import Candidate, Decision
from reviewbot.review.render import ReviewComment, render_comment, to_review_comment

try:  # tests/ as a package (tests/__init__.py) or as a plain directory on sys.path
    from tests.fakes.fake_github import FakeGitHub, generate_app_key
except ModuleNotFoundError:
    from fakes.fake_github import FakeGitHub, generate_app_key  # type: ignore[no-redef]

REPO = "acme/shop"
APP_ID = 42
INST = 7
BASE = {
    "app.py": "".join(f"line {i}\n" for i in range(1, 61)),
    ".github/reviewbot.yml": "min_severity: medium\n",
    "README.md": "hello\n",
}
HEAD = {
    "app.py": BASE["app.py"].replace("line 5\n", "line five\n").replace("line 40\n", "line 40\nextra\n"),
    "new.py": "import os\nprint(os.getcwd())\n",
    ".github/reviewbot.yml": "enabled: false\n",  # the PR tries to switch its own review off
    "README.md": None,  # deleted by the PR
}


class FakeTime:
    """A clock and an async sleep that advances it, shared by the client and the fake server."""

    def __init__(self) -> None:
        self.now = time.time()
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_app_key()


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


@pytest.fixture
def fake(keys: tuple[str, str], ft: FakeTime) -> Iterator[FakeGitHub]:
    with FakeGitHub(app_id=APP_ID, app_public_key=keys[1], clock=ft) as gh:
        gh.add_repo(REPO, INST, BASE)
        gh.add_pull(REPO, 1, head_files=HEAD, labels=["backend"], author="dev1")
        yield gh


def make_app(fake: FakeGitHub, keys: tuple[str, str], ft: FakeTime, **limits: float) -> GitHubApp:
    return GitHubApp(
        APP_ID,
        keys[0],
        base_url=fake.base_url,
        limits=Limits(write_interval=0, **limits),
        sleep=ft.sleep,
        clock=ft,
    )


@pytest.fixture
async def client(fake: FakeGitHub, keys: tuple[str, str], ft: FakeTime) -> AsyncIterator[GitHubClient]:
    yield await make_app(fake, keys, ft).installation_client(INST)


def rc(path: str, line: int, fp: str, *, start_line: int | None = None, side: str = "RIGHT") -> ReviewComment:
    return ReviewComment(
        path=path,
        line=line,
        side=side,
        body=f"finding {fp}\n\n<!-- reviewbot:fp="  # type: ignore[arg-type]
        f"{fp.encode().hex()} -->",
        fingerprint=fp,
        start_line=start_line,
        start_side=side if start_line else None,
    )  # type: ignore[arg-type]


# -- auth -------------------------------------------------------------------------------------


async def test_installation_token_is_exchanged_once_and_cached(
    fake: FakeGitHub, keys: tuple[str, str], ft: FakeTime
) -> None:
    app = make_app(fake, keys, ft)
    client = await app.installation_client(INST)
    assert await app.installation_client(INST) is client
    await client.get_pull(REPO, 1)
    await client.get_default_branch(REPO)
    assert fake.token_requests == [INST]
    # a second App object has its own token cache: nothing leaks between apps or servers
    other = await make_app(fake, keys, ft).installation_client(INST)
    await other.get_default_branch(REPO)
    assert fake.token_requests == [INST, INST]


async def test_token_refreshed_when_about_to_expire(keys: tuple[str, str], ft: FakeTime) -> None:
    with FakeGitHub(app_id=APP_ID, app_public_key=keys[1], clock=ft, token_ttl=59) as gh:
        gh.add_repo(REPO, INST, BASE)
        client = await make_app(gh, keys, ft).installation_client(INST)
        await client.get_default_branch(REPO)
        await client.get_default_branch(REPO)
        assert gh.token_requests == [INST, INST]  # githubkit drops tokens a minute before expiry


async def test_enterprise_server_base_url(keys: tuple[str, str], ft: FakeTime) -> None:
    with FakeGitHub(app_id=APP_ID, app_public_key=keys[1], clock=ft, api_prefix="/api/v3") as ghes:
        ghes.add_repo(REPO, INST, BASE)
        ghes.add_pull(REPO, 1, head_files={f"f{i}.py": "x\n" for i in range(120)})
        assert ghes.base_url.endswith("/api/v3")
        client = await make_app(ghes, keys, ft).installation_client(INST)
        assert len(await client.list_pull_files(REPO, 1)) == 120  # Link headers keep the prefix
        assert ghes.token_requests == [INST]
        assert all(r.path != "/__outside_api__" for r in ghes.requests)


async def test_wrong_key_is_refused_without_retrying(fake: FakeGitHub, ft: FakeTime) -> None:
    client = await make_app(fake, generate_app_key(), ft).installation_client(INST)
    with pytest.raises(GitHubAPIError, match="JSON web token") as err:
        await client.get_default_branch(REPO)
    assert err.value.status == 401 and fake.token_requests == []
    assert len(fake.requests_to("POST", "/app/")) == 1 and ft.slept == []


# -- reading ----------------------------------------------------------------------------------


async def test_get_pull(client: GitHubClient, fake: FakeGitHub) -> None:
    pr = await client.get_pull(REPO, 1)
    fpr = fake.pulls[(REPO, 1)]
    assert (pr.number, pr.author, pr.author_type, pr.labels) == (1, "dev1", "User", ("backend",))
    assert (pr.head_sha, pr.base_sha, pr.base_ref, pr.state) == (fpr.head_sha, fpr.base_sha, "main", "open")
    assert pr.head_repo_full_name == REPO and pr.draft is False


async def test_diff_media_type_and_too_large_fallback(client: GitHubClient, fake: FakeGitHub) -> None:
    diff = await client.get_pull_diff(REPO, 1)
    assert isinstance(diff, str) and diff.source == "diff" and diff.skipped == {}
    assert any(r.headers.get("accept") == "application/vnd.github.diff" for r in fake.requests)
    full = {f.path: [str(h) for h in f] for f in PatchSet(diff)}
    fake.add_pull(REPO, 2, head_files=HEAD, diff_too_large=True, omit_patch={"new.py"})
    rebuilt = await client.get_pull_diff(REPO, 2)
    assert rebuilt.source == "files" and "too large" in rebuilt.notes[0]
    assert rebuilt.skipped == {"new.py": "GitHub omitted the patch (binary or too large to display)"}
    parsed = {f.path: [str(h) for h in f] for f in PatchSet(rebuilt)}
    assert parsed == {k: v for k, v in full.items() if k != "new.py"}  # same hunks as the real diff


async def test_files_of_a_big_pr_come_from_every_page(client: GitHubClient, fake: FakeGitHub) -> None:
    fake.add_pull(REPO, 3, head_files={f"src/m{i:03}.py": f"x = {i}\n" for i in range(250)})
    files = await client.list_pull_files(REPO, 3)
    assert len(files) == 250 and len({f.filename for f in files}) == 250
    pages = [r for r in fake.requests if r.path == f"/repos/{REPO}/pulls/3/files"]
    assert [r.query["page"] for r in pages] == [["1"], ["2"], ["3"]]
    assert all(r.query["per_page"] == ["100"] for r in pages)


async def test_compare_diff_has_only_the_new_push(client: GitHubClient, fake: FakeGitHub) -> None:
    reviewed = fake.pulls[(REPO, 1)].head_sha
    new_head = fake.push(REPO, 1, {"new.py": HEAD["new.py"] + "print('again')\n"})
    diff = await client.compare_diff(REPO, reviewed, new_head)
    (only,) = PatchSet(diff)
    assert only.path == "new.py" and only.added == 1


async def test_compare_status_and_list_reviews(client: GitHubClient, fake: FakeGitHub) -> None:
    reviewed = fake.pulls[(REPO, 1)].head_sha
    new_head = fake.push(REPO, 1, {"new.py": HEAD["new.py"] + "print('again')\n"})
    assert await client.compare_status(REPO, reviewed, new_head) == "ahead"
    assert await client.compare_status(REPO, reviewed, reviewed) == "identical"
    assert await client.compare_status(REPO, "0" * 40, new_head) is None  # unknown to GitHub
    assert await client.list_reviews(REPO, 1) == []
    await client.post_review(REPO, 1, commit_id=new_head, body="summary <!-- run -->", comments=[])
    (review,) = await client.list_reviews(REPO, 1)
    assert "<!-- run -->" in review["body"]


async def test_get_file_at_ref_and_absent(client: GitHubClient, fake: FakeGitHub) -> None:
    head = fake.pulls[(REPO, 1)].head_sha
    assert await client.get_file(REPO, "new.py", head) == HEAD["new.py"]
    assert await client.get_file(REPO, "new.py", "main") is None
    assert await client.get_file(REPO, "README.md") == "hello\n"
    assert await client.get_file(REPO, "README.md", head) is None  # deleted by the PR


async def test_config_comes_from_default_branches_never_the_pr_head(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    assert await client.get_repo_config(REPO) == (None, "min_severity: medium\n")
    fake.add_repo("acme/.github", INST, {".github/reviewbot.yml": "languages: [python]\n"})
    org, repo_text = await client.get_repo_config(REPO)
    assert org == "languages: [python]\n" and repo_text == "min_severity: medium\n"
    assert "enabled: false" not in (org or "") + (repo_text or "")
    assert await client.get_default_branch(REPO) == "main"


# -- posting ----------------------------------------------------------------------------------


def decision(path: str, line: int, fp: str, end_line: int | None = None) -> Decision:
    cand = Candidate(
        id=fp, path=path, line=line, end_line=end_line, title="Title", body="Body", suggestion="fixed()\n"
    )
    return Decision(
        candidate=cand,
        decision="post",
        reason="score",
        score=0.9,
        severity="high",
        category="bug",
        cluster=fp,
        fingerprint=fp,
    )


async def test_valid_review_is_one_comment_review(client: GitHubClient, fake: FakeGitHub) -> None:
    head = fake.pulls[(REPO, 1)].head_sha
    comments = [
        to_review_comment(decision("app.py", 5, "fp-a")),
        to_review_comment(decision("app.py", 39, "fp-b", end_line=41)),
        to_review_comment(decision("new.py", 2, "fp-c")),
    ]
    posted = await client.post_review(REPO, 1, commit_id=head, body="2 findings", comments=comments)
    (review,) = fake.posted_reviews(REPO, 1)
    assert review["event"] == "COMMENT" and review["id"] == posted.review_id
    assert review["body"].startswith("2 findings")
    assert set(posted.comment_ids) == {"fp-a", "fp-b", "fp-c"} and posted.rejected == []
    multi = next(c for c in review["comments"] if c["line"] == 41)
    assert multi["start_line"] == 39 and "```suggestion" in multi["body"]
    assert await client.existing_fingerprints(REPO, 1) == {"fp-a", "fp-b", "fp-c"}
    assert render_comment(decision("app.py", 5, "fp-a")) == review["comments"][0]["body"]


async def test_422_is_bisected_and_the_rest_posted_in_one_review(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    head = fake.pulls[(REPO, 1)].head_sha
    good = [
        rc("app.py", 5, "g1"),
        rc("app.py", 41, "g2", start_line=39),
        rc("new.py", 1, "g3"),
        rc("app.py", 5, "g4", side="LEFT"),
        rc("new.py", 2, "g5"),
    ]
    bad_line = rc("app.py", 20, "b1")  # outside every hunk
    bad_range = rc("app.py", 41, "b2", start_line=5)  # start_line in another hunk
    comments = [good[0], bad_line, good[1], good[2], bad_range, good[3], good[4]]
    posted = await client.post_review(REPO, 1, commit_id=head, body="summary", comments=comments)
    (review,) = fake.posted_reviews(REPO, 1)
    assert {c["body"].split()[1] for c in review["comments"]} == {"g1", "g2", "g3", "g4", "g5"}
    assert [c.fingerprint for c, _ in posted.rejected] == ["b1", "b2"]
    reasons = dict((c.fingerprint, why) for c, why in posted.rejected)
    assert "line must be part of the diff" in reasons["b1"]
    assert "same hunk" in reasons["b2"]
    assert "2 comments were left out" in review["body"]
    assert set(posted.comment_ids) == {"g1", "g2", "g3", "g4", "g5"}
    assert posted.probes == len(fake.deleted_pending_reviews) + len(fake.rejected_reviews) - 1
    assert all(rv["state"] != "PENDING" for rv in fake.reviews[(REPO, 1)])  # no probe left behind


async def test_bisection_survives_stale_and_lost_pending_reviews(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    head = fake.pulls[(REPO, 1)].head_sha
    # a crashed earlier run left a pending review behind
    await client.rest.pulls.async_create_review(
        "acme",
        "shop",
        1,
        data={"commit_id": head, "comments": [{"path": "app.py", "line": 5, "body": "stale"}]},
    )
    # the 2nd POST (first probe) is processed but its answer lost
    fake.fail_next(
        2, status=502, path_prefix=f"/repos/{REPO}/pulls/1/reviews", method="POST", after_processing=True
    )
    posted = await client.post_review(
        REPO, 1, commit_id=head, body="s", comments=[rc("app.py", 5, "ok"), rc("app.py", 20, "bad")]
    )
    (review,) = fake.posted_reviews(REPO, 1)
    assert [c["line"] for c in review["comments"]] == [5]
    assert [c.fingerprint for c, _ in posted.rejected] == ["bad"]
    assert all(rv["state"] != "PENDING" for rv in fake.reviews[(REPO, 1)])
    # deleted: the stale one, the probe whose answer was lost, the retried probe
    assert len(fake.deleted_pending_reviews) == 3
    posts = fake.requests_to("POST", f"/repos/{REPO}/pulls/1/reviews")
    assert [r.status for r in posts][:3] == [200, 422, 502]


async def test_all_comments_rejected_still_posts_the_review(client: GitHubClient, fake: FakeGitHub) -> None:
    head = fake.pulls[(REPO, 1)].head_sha
    posted = await client.post_review(
        REPO, 1, commit_id=head, body="summary", comments=[rc("app.py", 20, "b1"), rc("nope.py", 1, "b2")]
    )
    (review,) = fake.posted_reviews(REPO, 1)
    assert review["comments"] == [] and "2 comments were left out" in review["body"]
    assert len(posted.rejected) == 2 and posted.comment_ids == {}


async def test_stale_commit_raises_and_posts_nothing(client: GitHubClient, fake: FakeGitHub) -> None:
    old = fake.pulls[(REPO, 1)].head_sha
    fake.push(REPO, 1, {"new.py": "changed\n"})
    with pytest.raises(ReviewRejectedError, match="not the head"):
        await client.post_review(REPO, 1, commit_id=old, body="s", comments=[rc("app.py", 5, "a")])
    assert fake.posted_reviews(REPO, 1) == []


async def test_review_lost_answer_is_not_posted_twice(client: GitHubClient, fake: FakeGitHub) -> None:
    head = fake.pulls[(REPO, 1)].head_sha
    fake.fail_next(
        1, status=502, path_prefix=f"/repos/{REPO}/pulls/1/reviews", method="POST", after_processing=True
    )
    posted = await client.post_review(REPO, 1, commit_id=head, body="s", comments=[rc("app.py", 5, "a")])
    (review,) = fake.posted_reviews(REPO, 1)
    assert posted.review_id == review["id"] and posted.comment_ids.keys() == {"a"}


async def test_existing_fingerprints_ignore_humans_and_survive_db_loss(
    client: GitHubClient, fake: FakeGitHub
) -> None:
    fake.add_review_comment(
        REPO,
        1,
        "app.py",
        5,
        "old\n<!-- reviewbot:fp=" + b"fp-old".hex() + " -->",
        user="reviewbot[bot]",
        user_type="Bot",
    )
    fake.add_review_comment(
        REPO, 1, "app.py", 5, "<!-- reviewbot:fp=" + b"fp-forged".hex() + " -->", user="mallory"
    )
    assert await client.existing_fingerprints(REPO, 1) == {"fp-old"}


# -- rate limits, retries ---------------------------------------------------------------------


async def test_remaining_zero_waits_until_reset(client: GitHubClient, fake: FakeGitHub, ft: FakeTime) -> None:
    await client.get_default_branch(REPO)  # token + first call
    fake.set_rate_limit(1, reset_in=120)
    await client.get_default_branch(REPO)  # answered with remaining 0
    assert client.stats.last_rate_remaining == 0
    await client.get_default_branch(REPO)
    assert ft.slept == [pytest.approx(121, abs=1)]
    assert all(r.status != 403 for r in fake.requests)  # waited instead of hitting the wall


async def test_primary_403_waits_for_reset(client: GitHubClient, fake: FakeGitHub, ft: FakeTime) -> None:
    await client.get_default_branch(REPO)
    fake.set_rate_limit(0, reset_in=50)
    assert await client.get_default_branch(REPO) == "main"
    assert [r.status for r in fake.requests if r.path == f"/repos/{REPO}"][-2:] == [403, 200]
    assert ft.slept == [pytest.approx(51, abs=1)]


async def test_secondary_limit_and_429_honour_retry_after(
    client: GitHubClient, fake: FakeGitHub, ft: FakeTime
) -> None:
    fake.secondary_limit_next(1, retry_after=7, path_prefix=f"/repos/{REPO}/pulls")
    fake.too_many_requests_next(1, retry_after=3, path_prefix=f"/repos/{REPO}/pulls")
    pr = await client.get_pull(REPO, 1)
    assert pr.number == 1 and ft.slept == [7, 3]
    assert client.stats.rate_limit_waits == 2


async def test_wait_longer_than_max_wait_gives_up(
    fake: FakeGitHub, keys: tuple[str, str], ft: FakeTime
) -> None:
    client = await make_app(fake, keys, ft, max_wait=60).installation_client(INST)
    fake.too_many_requests_next(1, retry_after=3600, path_prefix="/repos")
    with pytest.raises(GitHubRateLimitError):
        await client.get_default_branch(REPO)


async def test_5xx_and_resets_are_retried_with_backoff(
    client: GitHubClient, fake: FakeGitHub, ft: FakeTime
) -> None:
    await client.get_default_branch(REPO)
    fake.fail_next(2, status=502, path_prefix=f"/repos/{REPO}")
    fake.reset_next(1, path_prefix=f"/repos/{REPO}")
    assert await client.get_default_branch(REPO) == "main"
    assert ft.slept == [1, 2, 4]  # tenacity exponential backoff through the injected sleep
    fake.fail_next(10, status=503, path_prefix=f"/repos/{REPO}")
    with pytest.raises(GitHubTransientError):
        await client.get_default_branch(REPO)


async def test_timeouts_and_truncated_answers_are_retried(
    fake: FakeGitHub, keys: tuple[str, str], ft: FakeTime
) -> None:
    app = GitHubApp(
        APP_ID,
        keys[0],
        base_url=fake.base_url,
        timeout=0.3,
        limits=Limits(write_interval=0),
        sleep=ft.sleep,
        clock=ft,
    )
    client = await app.installation_client(INST)
    await client.get_default_branch(REPO)
    fake.slow_next(1, delay=1.0, path_prefix=f"/repos/{REPO}/pulls")
    fake.truncate_next(1, path_prefix=f"/repos/{REPO}/pulls")
    assert (await client.get_pull(REPO, 1)).number == 1
    assert ft.slept == [1, 2] and app.stats.transport_errors == 2


async def test_writes_are_spaced_per_installation(
    fake: FakeGitHub, keys: tuple[str, str], ft: FakeTime
) -> None:
    app = GitHubApp(
        APP_ID, keys[0], base_url=fake.base_url, limits=Limits(write_interval=1.0), sleep=ft.sleep, clock=ft
    )
    client = await app.installation_client(INST)
    head = fake.pulls[(REPO, 1)].head_sha
    await client.create_check_run(REPO, head, title="reviewing", summary="...")
    await client.create_check_run(REPO, head, title="done", summary="s", text="t", conclusion="success")
    assert ft.slept == [pytest.approx(1.0)]
    assert [r["output"]["title"] for r in fake.check_runs] == ["reviewing", "done"]


async def test_reactions_etag_replies_and_comments(client: GitHubClient, fake: FakeGitHub) -> None:
    head = fake.pulls[(REPO, 1)].head_sha
    posted = await client.post_review(REPO, 1, commit_id=head, body="s", comments=[rc("app.py", 5, "a")])
    cid = posted.comment_ids["a"]
    reactions, etag = await client.get_comment_reactions(REPO, cid)
    assert reactions == [] and etag
    assert await client.get_comment_reactions(REPO, cid, etag) == (None, etag)
    fake.add_reaction(cid, "-1", "alice")
    reactions, etag2 = await client.get_comment_reactions(REPO, cid, etag)
    assert reactions is not None and reactions[0]["content"] == "-1" and etag2 != etag
    assert reactions[0]["user"]["login"] == "alice"
    fake.add_reply(REPO, 1, cid, "false positive")
    reply_id = await client.reply(REPO, 1, cid, "Thanks, noted.")
    thread = [c for c in await client.list_review_comments(REPO, 1) if c.in_reply_to_id == cid]
    assert [c.body for c in thread] == ["false positive", "Thanks, noted."] and thread[1].id == reply_id
    issue_comment = fake.add_issue_comment(REPO, 1, "@reviewbot review")
    await client.add_reaction(REPO, issue_comment["id"], "eyes")
    await client.add_reaction(REPO, cid, "+1", kind="pull")
    assert fake.reactions[("issue", issue_comment["id"])][0]["content"] == "eyes"
    new_id = await client.comment(REPO, 1, "Paused.")
    assert fake.issue_comments[(REPO, 1)][-1]["id"] == new_id


async def test_stats_and_metrics_hook(fake: FakeGitHub, keys: tuple[str, str], ft: FakeTime) -> None:
    seen: list[tuple[str, int, int | None, int | None]] = []
    app = GitHubApp(
        APP_ID,
        keys[0],
        base_url=fake.base_url,
        limits=Limits(write_interval=0),
        sleep=ft.sleep,
        clock=ft,
        on_call=lambda *a: seen.append(a),
    )
    client = await app.installation_client(INST)
    await client.get_pull(REPO, 1)
    await client.get_default_branch(REPO)
    assert app.stats.calls[("POST", 201)] == 1 and app.stats.calls[("GET", 200)] == 2
    assert sum(app.stats.calls.values()) == 3
    assert app.stats.rate_remaining[INST] == fake.rate_remaining == app.stats.last_rate_remaining
    assert seen[-1] == ("GET", 200, fake.rate_remaining, INST)


async def test_with_token_client(fake: FakeGitHub, ft: FakeTime) -> None:
    client = GitHubClient.with_token(
        fake.issue_token(INST),
        base_url=fake.base_url,
        limits=Limits(write_interval=0),
        sleep=ft.sleep,
        clock=ft,
    )
    assert (await client.get_pull(REPO, 1)).number == 1
