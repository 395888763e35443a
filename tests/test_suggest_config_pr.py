"""`reviewbot suggest-config --open-pr`: the learned config as a pull request, against the fake GitHub."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from reviewbot.app.github import GitHubClient
from reviewbot.app.github_types import GitHubAPIError
from reviewbot.app.store import Store
from reviewbot.commands import stats_cmd
from reviewbot.core.config import load_config
from reviewbot.learning.config_pr import merged_config, open_config_pr
from tests.fakes.fake_github import FakeGitHub, generate_app_key

try:  # tests/ as a package (tests/__init__.py) or as a plain directory on sys.path
    from tests.feedback_data import INSTALLATION, REPO, seed
except ImportError:
    from feedback_data import INSTALLATION, REPO, seed  # type: ignore[no-redef]

APP_ID = 42
CURRENT = "# the team's config\npaths:\n  exclude: ['docs/**']\nmax_comments: 5\n"


@pytest.fixture()
def gh() -> Iterator[tuple[FakeGitHub, str]]:
    priv, pub = generate_app_key()
    with FakeGitHub(app_id=APP_ID, app_public_key=pub) as fake:
        fake.add_repo(REPO, INSTALLATION, {".github/reviewbot.yml": CURRENT, "app.py": "x = 1\n"})
        yield fake, priv


def _cli() -> typer.Typer:
    app = typer.Typer()
    stats_cmd.register(app)
    return app


def test_merged_config_keeps_the_rest_and_merges_mappings() -> None:
    out = yaml.safe_load(
        merged_config(
            CURRENT, {"rules": {"disable": ["py.bare-except"]}, "paths": {"exclude": ["docs/**", "gen/**"]}}
        )
    )
    assert out == {
        "paths": {"exclude": ["docs/**", "gen/**"]},
        "max_comments": 5,
        "rules": {"disable": ["py.bare-except"]},
    }
    assert yaml.safe_load(merged_config(None, {"min_acceptance": 0.3})) == {"min_acceptance": 0.3}


def test_open_pr_puts_the_file_on_a_new_branch_and_opens_the_pr(
    gh: tuple[FakeGitHub, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, priv = gh
    db = tmp_path / "reviewbot.db"
    store = Store.open(db)
    seed(store)  # acme/web's labels: the noisy rule py.bare-except, dismissed 10 of 12 times
    store.close()
    for k, v in {
        "REVIEWBOT_GITHUB_APP_ID": str(APP_ID),
        "REVIEWBOT_GITHUB_PRIVATE_KEY": priv,
        "REVIEWBOT_GITHUB_API_URL": fake.base_url,
        "REVIEWBOT_DATABASE_PATH": str(db),
    }.items():
        monkeypatch.setenv(k, v)
    default_head = fake.repos[REPO].branches["main"]

    r = CliRunner().invoke(_cli(), ["suggest-config", REPO, "--open-pr"])
    assert r.exit_code == 0, r.output
    [pr] = [p for (repo, _n), p in fake.pulls.items() if repo == REPO]
    assert r.output.strip() == f"https://github.com/{REPO}/pull/{pr.number}"
    assert pr.base_ref == "main" and pr.head_ref.startswith("reviewbot/suggest-config-")
    assert pr.author == "reviewbot[bot]" and "10 of 12 labelled comments dismissed" in pr.body
    # the default branch is untouched; the branch holds one commit: the merged file
    assert fake.repos[REPO].branches["main"] == default_head
    head = fake.commits[pr.head_sha]
    assert head.parent == default_head
    proposed = head.files[".github/reviewbot.yml"]
    assert head.files["app.py"] == "x = 1\n"
    cfg = load_config(proposed)
    assert "py.bare-except" in cfg.rules.disable and "docs/**" in cfg.paths.exclude and cfg.max_comments == 5

    # the same day again: the branch name is taken (GitHub's 422), the next free one is used
    r = CliRunner().invoke(_cli(), ["suggest-config", REPO, "--open-pr"])
    assert r.exit_code == 0, r.output
    heads = sorted(p.head_ref for (repo, _n), p in fake.pulls.items() if repo == REPO)
    assert heads == [pr.head_ref, pr.head_ref + "-2"]


def test_the_fake_enforces_githubs_rules_for_refs_files_and_pulls(gh: tuple[FakeGitHub, str]) -> None:
    fake, _ = gh
    client = GitHubClient.with_token(fake.issue_token(INSTALLATION), base_url=fake.base_url)

    async def go() -> None:
        owner, name = REPO.split("/")
        sha = fake.repos[REPO].branches["main"]
        for data in (
            {"ref": "refs/heads/main", "sha": sha},
            {"ref": "heads/x", "sha": sha},
            {"ref": "refs/heads/x", "sha": "0" * 40},
        ):
            with pytest.raises(GitHubAPIError) as err:
                await client._call(lambda data=data: client.rest.git.async_create_ref(owner, name, data=data))  # type: ignore[misc]
            assert err.value.status == 422
        with pytest.raises(GitHubAPIError) as err:  # an existing file needs its blob sha
            put = {"message": "m", "content": base64.b64encode(b"y").decode(), "branch": "main"}
            await client._call(
                lambda: client.rest.repos.async_create_or_update_file_contents(
                    owner, name, "app.py", data=put
                )  # type: ignore[call-overload]
            )
        assert err.value.status == 422
        with pytest.raises(GitHubAPIError) as err:  # no commits between the branches
            await client._call(
                lambda: client.rest.git.async_create_ref(
                    owner, name, data={"ref": "refs/heads/same", "sha": sha}
                )
            )
            data = {"title": "t", "head": "same", "base": "main"}
            await client._call(lambda: client.rest.pulls.async_create(owner, name, data=data))  # type: ignore[call-overload]
        assert err.value.status == 422
        # the happy path, then a second PR for the same head: 422
        opened = await open_config_pr(
            client, REPO, changes={"min_acceptance": 0.3}, reasons=["r"], branch="b"
        )
        assert opened.branch == "b"
        with pytest.raises(GitHubAPIError) as err:
            data = {"title": "t", "head": "b", "base": "main"}
            await client._call(lambda: client.rest.pulls.async_create(owner, name, data=data))  # type: ignore[call-overload]
        assert err.value.status == 422 and "already exists" in str(err.value)

    asyncio.run(go())


def test_open_pr_without_the_app_settings_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "reviewbot.db"
    store = Store.open(db)
    seed(store)
    store.close()
    for k in ("REVIEWBOT_GITHUB_APP_ID", "REVIEWBOT_GITHUB_PRIVATE_KEY", "REVIEWBOT_GITHUB_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(k, raising=False)
    r = CliRunner().invoke(_cli(), ["suggest-config", REPO, "--db", str(db), "--open-pr"])
    assert r.exit_code == 2 and "REVIEWBOT_GITHUB_APP_ID" in r.output
