"""The fake GitHub server itself: its diffs, its review rules, rate limits and faults, over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from unidiff import PatchSet

from tests.fakes.clock import ManualClock

try:  # tests/ as a package (tests/__init__.py) or as a plain directory on sys.path
    from tests.fakes.fake_github import (
        FakeGitHub,
        diff_file,
        diff_trees,
        generate_app_key,
        load_tree,
    )
except ModuleNotFoundError:
    from fakes.fake_github import FakeGitHub, diff_file, diff_trees, generate_app_key, load_tree  # type: ignore[no-redef]

REPO = "acme/shop"
BASE = {"app.py": "".join(f"line {i}\n" for i in range(1, 41)), "README.md": "hello\n"}
HEAD = {
    "app.py": BASE["app.py"].replace("line 5\n", "line five\n").replace("line 30\n", "line 30\nextra\n"),
    "new.py": "print('hi')",
    "README.md": None,
}


Clock = ManualClock


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_app_key()


@pytest.fixture
def gh(keys: tuple[str, str], clock: Clock) -> Iterator[FakeGitHub]:
    with FakeGitHub(app_id=42, app_public_key=keys[1], clock=clock) as fake:
        fake.add_repo(REPO, 7, BASE)
        fake.add_pull(REPO, 1, head_files=HEAD)
        yield fake


@pytest.fixture
def http(gh: FakeGitHub) -> Iterator[httpx.Client]:
    token = gh.issue_token(7)
    with httpx.Client(base_url=gh.base_url, headers={"Authorization": f"token {token}"}) as c:
        yield c


def _review(http: httpx.Client, gh: FakeGitHub, comments: list[dict], **extra: object) -> httpx.Response:
    body = {
        "commit_id": gh.pulls[(REPO, 1)].head_sha,
        "body": "summary",
        "event": "COMMENT",
        "comments": comments,
        **extra,
    }
    return http.post(f"/repos/{REPO}/pulls/1/reviews", json=body)


def test_diff_is_a_valid_unified_diff_with_per_file_patches(gh: FakeGitHub, http: httpx.Client) -> None:
    diff = http.get(f"/repos/{REPO}/pulls/1", headers={"Accept": "application/vnd.github.v3.diff"})
    assert diff.status_code == 200 and diff.headers["content-type"].startswith("text/plain")
    patch = PatchSet(diff.text)
    by_path = {f.path: f for f in patch}
    assert set(by_path) == {"app.py", "new.py", "README.md"}
    assert by_path["README.md"].is_removed_file and by_path["new.py"].is_added_file
    assert len(by_path["app.py"]) == 2  # two separate hunks
    assert "\\ No newline at end of file" in diff.text
    files = http.get(f"/repos/{REPO}/pulls/1/files").json()
    app = next(f for f in files if f["filename"] == "app.py")
    assert app["status"] == "modified" and app["additions"] == 2 and app["deletions"] == 1
    assert app["patch"].startswith("@@ -2,7 +2,7 @@")


def test_valid_review_is_recorded_with_comments(gh: FakeGitHub, http: httpx.Client) -> None:
    r = _review(
        http,
        gh,
        [
            {"path": "app.py", "line": 5, "side": "RIGHT", "body": "one"},
            {"path": "app.py", "line": 5, "side": "LEFT", "body": "deleted line"},
            {"path": "app.py", "start_line": 29, "line": 31, "side": "RIGHT", "body": "range"},
        ],
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "COMMENTED"
    (review,) = gh.reviews[(REPO, 1)]
    assert review["event"] == "COMMENT" and len(review["comments"]) == 3
    listed = http.get(f"/repos/{REPO}/pulls/1/comments").json()
    assert [c["line"] for c in listed] == [5, 5, 31]
    assert listed[2]["start_line"] == 29 and listed[2]["diff_hunk"].endswith("+extra")


@pytest.mark.parametrize(
    ("comment", "message"),
    [
        (
            {"path": "app.py", "line": 20, "side": "RIGHT"},
            "Pull request review thread line must be part of the diff and Pull request review thread "
            "diff hunk can't be blank",
        ),
        (
            {"path": "app.py", "line": 5, "start_line": 1, "side": "LEFT", "start_side": "LEFT"},
            "Pull request review thread start line must be part of the same hunk as the line.",
        ),
        (
            {"path": "app.py", "line": 31, "start_line": 5, "side": "RIGHT"},
            "Pull request review thread start line must be part of the same hunk as the line.",
        ),
        (
            {"path": "app.py", "line": 5, "start_line": 6, "side": "RIGHT"},
            "Pull request review thread start line must precede the end line.",
        ),
        (
            {"path": "nope.py", "line": 1},
            "Pull request review thread path is invalid and Pull request review thread diff hunk can't be "
            "blank",
        ),
    ],
)
def test_invalid_review_comment_gets_githubs_422(
    gh: FakeGitHub, http: httpx.Client, comment: dict, message: str
) -> None:
    r = _review(http, gh, [{"path": "app.py", "line": 5, "body": "fine"}, {**comment, "body": "bad"}])
    assert r.status_code == 422
    assert r.json()["message"] == "Unprocessable Entity"
    assert r.json()["errors"] == [message]
    assert (REPO, 1) not in gh.reviews  # all or nothing, like GitHub
    assert len(gh.rejected_reviews) == 1


def test_review_must_target_head_and_a_known_event(gh: FakeGitHub, http: httpx.Client) -> None:
    pr = gh.pulls[(REPO, 1)]
    assert _review(http, gh, [], commit_id=pr.base_sha).status_code == 422
    assert _review(http, gh, [], event="LGTM").status_code == 422
    assert _review(http, gh, [], event="APPROVE").json()["state"] == "APPROVED"
    assert gh.reviews[(REPO, 1)][0]["event"] == "APPROVE"


def test_push_moves_head_and_compare_shows_only_new_change(gh: FakeGitHub, http: httpx.Client) -> None:
    pr = gh.pulls[(REPO, 1)]
    old_head = pr.head_sha
    new_head = gh.push(REPO, 1, {"new.py": "print('hi')\nprint('more')\n"})
    assert http.get(f"/repos/{REPO}/pulls/1").json()["head"]["sha"] == new_head
    comp = http.get(f"/repos/{REPO}/compare/{old_head}...{new_head}")
    assert comp.json()["ahead_by"] == 1 and [f["filename"] for f in comp.json()["files"]] == ["new.py"]
    diff = http.get(
        f"/repos/{REPO}/compare/{old_head}...{new_head}", headers={"Accept": "application/vnd.github.diff"}
    ).text
    assert [f.path for f in PatchSet(diff)] == ["new.py"]
    stale = _review(http, gh, [], commit_id=old_head)
    assert stale.status_code == 422
    commit = http.get(f"/repos/{REPO}/commits/{new_head}").json()
    assert [f["filename"] for f in commit["files"]] == ["new.py"]


def test_files_pagination_link_headers_and_cap(keys: tuple[str, str]) -> None:
    with FakeGitHub() as fake:
        fake.add_repo(REPO, 7, {})
        fake.add_pull(REPO, 2, head_files={f"f{i:04}.txt": "x\n" for i in range(3005)})
        with httpx.Client(
            base_url=fake.base_url, headers={"Authorization": f"token {fake.issue_token(7)}"}
        ) as http:
            first = http.get(f"/repos/{REPO}/pulls/2/files", params={"per_page": 100})
            assert len(first.json()) == 100
            assert 'rel="next"' in first.headers["link"] and "page=30" in first.headers["link"]
            last = http.get(f"/repos/{REPO}/pulls/2/files", params={"per_page": 100, "page": 30})
            assert len(last.json()) == 100 and 'rel="next"' not in last.headers["link"]
            default = http.get(f"/repos/{REPO}/pulls/2/files")
            assert len(default.json()) == 30


def test_contents_at_ref_and_404(gh: FakeGitHub, http: httpx.Client) -> None:
    pr = gh.pulls[(REPO, 1)]
    ok = http.get(f"/repos/{REPO}/contents/new.py", params={"ref": pr.head_sha})
    assert ok.status_code == 200 and ok.json()["encoding"] == "base64"
    assert http.get(f"/repos/{REPO}/contents/new.py").status_code == 404  # not on main
    assert http.get(f"/repos/{REPO}/contents/README.md").status_code == 200
    assert http.get("/repos/other/repo").status_code == 404


def test_app_jwt_is_verified(gh: FakeGitHub, keys: tuple[str, str], clock: Clock) -> None:
    def token_req(key: str, iss: str = "42", iat_off: float = -60, exp_off: float = 540) -> httpx.Response:
        now = int(clock())
        tok = jwt.encode({"iss": iss, "iat": now + iat_off, "exp": now + exp_off}, key, algorithm="RS256")
        return httpx.post(
            f"{gh.base_url}/app/installations/7/access_tokens", headers={"Authorization": f"Bearer {tok}"}
        )

    good = token_req(keys[0])
    assert good.status_code == 201 and good.json()["token"].startswith("ghs_")
    assert token_req(generate_app_key()[0]).status_code == 401  # signed by another key
    assert token_req(keys[0], exp_off=-1).status_code == 401  # expired
    assert token_req(keys[0], iss="43").status_code == 401
    token = good.json()["token"]
    auth = {"Authorization": f"token {token}"}
    assert httpx.get(f"{gh.base_url}/repos/{REPO}", headers=auth).is_success
    clock.now += 3601  # tokens live an hour
    assert httpx.get(f"{gh.base_url}/repos/{REPO}", headers=auth).status_code == 401


def test_rate_limit_headers_and_primary_exhaustion(gh: FakeGitHub, http: httpx.Client, clock: Clock) -> None:
    a = http.get(f"/repos/{REPO}")
    b = http.get(f"/repos/{REPO}")
    assert int(a.headers["x-ratelimit-remaining"]) - 1 == int(b.headers["x-ratelimit-remaining"])
    assert b.headers["x-ratelimit-resource"] == "core" and b.headers["x-ratelimit-limit"] == "5000"
    gh.set_rate_limit(1, reset_in=30)
    last = http.get(f"/repos/{REPO}")
    assert last.status_code == 200 and last.headers["x-ratelimit-remaining"] == "0"
    blocked = http.get(f"/repos/{REPO}")
    assert blocked.status_code == 403 and "rate limit exceeded" in blocked.json()["message"]
    assert int(blocked.headers["x-ratelimit-reset"]) == int(clock.now + 30)
    clock.now += 31
    assert http.get(f"/repos/{REPO}").status_code == 200


def test_injected_faults(gh: FakeGitHub, http: httpx.Client) -> None:
    gh.fail_next(2, status=502, path_prefix=f"/repos/{REPO}/pulls")
    assert http.get(f"/repos/{REPO}").status_code == 200  # other paths unaffected
    assert http.get(f"/repos/{REPO}/pulls/1").status_code == 502
    assert http.get(f"/repos/{REPO}/pulls/1").status_code == 502
    assert http.get(f"/repos/{REPO}/pulls/1").status_code == 200
    gh.secondary_limit_next(retry_after=7)
    sec = http.get(f"/repos/{REPO}")
    assert sec.status_code == 403 and sec.headers["retry-after"] == "7"
    assert sec.json()["message"].startswith("You have exceeded a secondary rate limit")
    gh.too_many_requests_next(retry_after=3)
    assert http.get(f"/repos/{REPO}").status_code == 429
    gh.reset_next()
    with pytest.raises(httpx.TransportError):
        http.get(f"/repos/{REPO}")
    gh.truncate_next()
    with pytest.raises(httpx.TransportError):
        http.get(f"/repos/{REPO}/pulls/1")
    gh.slow_next(delay=0.3)
    t0 = time.monotonic()
    assert http.get(f"/repos/{REPO}").status_code == 200
    assert time.monotonic() - t0 >= 0.3
    assert all("authorization" not in r.headers for r in gh.requests)


def test_reactions_etag_and_human_activity(gh: FakeGitHub, http: httpx.Client) -> None:
    _review(http, gh, [{"path": "app.py", "line": 5, "body": "bot says"}])
    cid = gh.reviews[(REPO, 1)][0]["comments"][0]["id"]
    first = http.get(f"/repos/{REPO}/pulls/comments/{cid}/reactions")
    assert first.json() == [] and first.headers["etag"]
    same = http.get(
        f"/repos/{REPO}/pulls/comments/{cid}/reactions", headers={"If-None-Match": first.headers["etag"]}
    )
    assert same.status_code == 304
    assert same.headers["x-ratelimit-remaining"] == first.headers["x-ratelimit-remaining"]  # free
    gh.add_reaction(cid, "+1", "alice")
    changed = http.get(
        f"/repos/{REPO}/pulls/comments/{cid}/reactions", headers={"If-None-Match": first.headers["etag"]}
    )
    assert changed.status_code == 200 and changed.json()[0]["content"] == "+1"
    gh.add_reply(REPO, 1, cid, "good catch, fixed")
    comments = http.get(f"/repos/{REPO}/pulls/1/comments").json()
    assert comments[-1]["in_reply_to_id"] == cid and comments[-1]["user"]["login"] == "alice"
    bot = http.post(f"/repos/{REPO}/pulls/1/comments/{cid}/replies", json={"body": "thanks"})
    assert bot.status_code == 201 and bot.json()["user"]["type"] == "Bot"
    ic = http.post(f"/repos/{REPO}/issues/1/comments", json={"body": "hello"}).json()
    assert (
        http.post(
            f"/repos/{REPO}/issues/comments/{ic['id']}/reactions", json={"content": "rocket"}
        ).status_code
        == 201
    )
    assert (
        http.post(f"/repos/{REPO}/issues/comments/{ic['id']}/reactions", json={"content": "nope"}).status_code
        == 422
    )


def test_check_runs_are_recorded_with_history(gh: FakeGitHub, http: httpx.Client) -> None:
    sha = gh.pulls[(REPO, 1)].head_sha
    run = http.post(
        f"/repos/{REPO}/check-runs", json={"name": "reviewbot", "head_sha": sha, "status": "in_progress"}
    ).json()
    done = http.patch(
        f"/repos/{REPO}/check-runs/{run['id']}",
        json={"conclusion": "neutral", "output": {"title": "2 comments", "summary": "s", "text": "t"}},
    )
    assert done.json()["status"] == "completed" and done.json()["output"]["title"] == "2 comments"
    (rec,) = gh.check_runs
    assert rec["conclusion"] == "neutral" and len(rec["history"]) == 2


def test_diff_file_handles_creation_deletion_and_eof() -> None:
    added = diff_file("a", None, "x\ny")
    assert added is not None and added.status == "added" and added.patch.startswith("@@ -0,0 +1,2 @@")
    removed = diff_file("a", "x\n", None)
    assert removed is not None and removed.status == "removed" and removed.deletions == 1
    assert diff_file("a", "same\n", "same\n") is None


async def test_githubkit_parses_every_answer(gh: FakeGitHub) -> None:
    """The JSON shapes satisfy githubkit's models (required fields present), endpoint by endpoint."""
    from githubkit import GitHub, TokenAuthStrategy

    pr = gh.pulls[(REPO, 1)]
    kit = GitHub(
        TokenAuthStrategy(gh.issue_token(7)), base_url=gh.base_url, http_cache=False, auto_retry=False
    )
    rest = kit.rest
    assert (await rest.pulls.async_get("acme", "shop", 1)).parsed_data.head.sha == pr.head_sha
    assert (await rest.repos.async_get("acme", "shop")).parsed_data.default_branch == "main"
    assert len((await rest.pulls.async_list_files("acme", "shop", 1)).parsed_data) == 3
    content = (await rest.repos.async_get_content("acme", "shop", "README.md")).parsed_data
    assert type(content).__name__ == "ContentFile"
    comp = await rest.repos.async_compare_commits("acme", "shop", f"{pr.base_sha}...{pr.head_sha}")
    assert comp.parsed_data.ahead_by == 1
    assert len((await rest.repos.async_get_commit("acme", "shop", pr.head_sha)).parsed_data.files or []) == 3
    review = await rest.pulls.async_create_review(
        "acme",
        "shop",
        1,
        data={
            "commit_id": pr.head_sha,
            "body": "b",
            "event": "COMMENT",
            "comments": [{"path": "app.py", "line": 5, "side": "RIGHT", "body": "c"}],
        },
    )
    assert review.parsed_data.state == "COMMENTED"
    assert (await rest.pulls.async_list_reviews("acme", "shop", 1)).parsed_data[0].id == review.parsed_data.id
    (comment,) = (await rest.pulls.async_list_review_comments("acme", "shop", 1)).parsed_data
    reply = await rest.pulls.async_create_reply_for_review_comment("acme", "shop", 1, comment.id, body="r")
    assert reply.parsed_data.in_reply_to_id == comment.id
    await rest.reactions.async_create_for_pull_request_review_comment(
        "acme", "shop", comment.id, content="eyes"
    )
    reactions = await rest.reactions.async_list_for_pull_request_review_comment("acme", "shop", comment.id)
    assert reactions.parsed_data[0].content == "eyes"
    ic = (await rest.issues.async_create_comment("acme", "shop", 1, body="x")).parsed_data
    assert (await rest.issues.async_list_comments("acme", "shop", 1)).parsed_data[0].id == ic.id
    r = await rest.reactions.async_create_for_issue_comment("acme", "shop", ic.id, content="+1")
    assert r.parsed_data.content == "+1"
    run = (
        await rest.checks.async_create(
            "acme", "shop", data={"name": "reviewbot", "head_sha": pr.head_sha, "status": "in_progress"}
        )
    ).parsed_data
    done = await rest.checks.async_update(
        "acme", "shop", run.id, data={"conclusion": "success", "output": {"title": "t", "summary": "s"}}
    )
    assert done.parsed_data.status == "completed"


def test_pending_review_is_validated_hidden_and_deletable(gh: FakeGitHub, http: httpx.Client) -> None:
    sha = gh.pulls[(REPO, 1)].head_sha
    ok = http.post(
        f"/repos/{REPO}/pulls/1/reviews",
        json={"commit_id": sha, "comments": [{"path": "app.py", "line": 5, "body": "x"}]},
    )
    assert ok.json()["state"] == "PENDING"
    again = http.post(f"/repos/{REPO}/pulls/1/reviews", json={"commit_id": sha, "body": "y"})
    assert again.status_code == 422 and "one pending review" in again.json()["errors"][0]
    assert http.get(f"/repos/{REPO}/pulls/1/comments").json() == []  # pending comments are private
    assert gh.posted_reviews(REPO, 1) == []
    assert http.delete(f"/repos/{REPO}/pulls/1/reviews/{ok.json()['id']}").status_code == 200
    bad = http.post(
        f"/repos/{REPO}/pulls/1/reviews",
        json={"commit_id": sha, "comments": [{"path": "app.py", "line": 20, "body": "x"}]},
    )
    assert bad.status_code == 422
    done = _review(http, gh, [])
    assert http.delete(f"/repos/{REPO}/pulls/1/reviews/{done.json()['id']}").status_code == 422


def test_pull_from_fixture_dirs(fixtures_dir: Path) -> None:
    with FakeGitHub() as fake:
        fake.add_repo("acme/demo", 7, {})
        demo = fixtures_dir / "demo"
        pr = fake.add_pull_from_dirs("acme/demo", 1, demo / "before", demo / "after")
        assert fake.commits[pr.base_sha].files == load_tree(fixtures_dir / "demo/before")
        assert fake.commits[pr.head_sha].files == load_tree(fixtures_dir / "demo/after")
        with httpx.Client(
            base_url=fake.base_url, headers={"Authorization": f"token {fake.issue_token(7)}"}
        ) as http:
            diff = http.get("/repos/acme/demo/pulls/1", headers={"Accept": "application/vnd.github.diff"})
        assert {f.path for f in PatchSet(diff.text)} == {"cart.js", "files.go", "inventory.py"}


@pytest.mark.shared
def test_diffs_match_gits_on_real_prs(shared_data: Path) -> None:
    """The fake's hunks are git's hunks (what GitHub shows), checked on the real PRs' diff.patch."""
    root = shared_data / "real-prs"
    ids = [e["id"] for e in json.loads((root / "index.json").read_text())][:20]
    for pr_id in ids:
        d = root / pr_id
        ours = {
            f.filename: [h.header.split(" @@")[0] for h in f.hunks]
            for f in diff_trees(load_tree(d / "before"), load_tree(d / "after"))
        }
        real = {
            f.path: [str(h).split(" @@")[0] for h in f]
            for f in PatchSet((d / "diff.patch").read_text(errors="replace"))
            if not f.is_binary_file
        }
        assert ours == real, pr_id
