"""The config changes a repo's feedback supports, opened as a pull request on the repo.

`reviewbot suggest-config --open-pr` turns what reviewbot learned into a reviewable, revertible
change the team merges or closes, instead of behaviour hidden in a model. Through the GitHub API
only: a branch ref from the default branch's head, the file put on that branch, a pull request
to the default branch. Nothing is pushed to the default branch itself.

`merged_config` is pure (the current file plus the changes); `open_config_pr` does the I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import yaml

from reviewbot.app.github import GitHubClient
from reviewbot.app.github_types import GitHubAPIError
from reviewbot.core.config import CONFIG_PATH

#: Tried in turn when a branch of that name exists already (GitHub answers 422 to its creation).
MAX_BRANCH_TRIES = 5


@dataclass(frozen=True, slots=True)
class OpenedPR:
    number: int
    url: str
    branch: str


def merged_config(current: str | None, changes: Mapping[str, Any]) -> str:
    """The file the pull request proposes: the current YAML with `changes` merged in (mappings
    merged key by key, any other value replaced). Comments of the current file are not kept (a
    YAML round trip drops them); the PR's diff shows exactly what changes."""
    loaded = yaml.safe_load(current) if current and current.strip() else {}
    base: dict[str, Any] = dict(loaded) if isinstance(loaded, dict) else {}
    return yaml.safe_dump(_merge(base, changes), sort_keys=False)


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def pr_body(repo: str, reasons: Sequence[str]) -> str:
    lines = [f"reviewbot's feedback for `{repo}` supports these changes to `{CONFIG_PATH}`:", ""]
    lines += [f"- {r}" for r in reasons]
    lines += [
        "",
        "Opened by `reviewbot suggest-config --open-pr`: merge to apply, close to keep things as they are.",
    ]
    return "\n".join(lines)


async def open_config_pr(
    gh: GitHubClient,
    repo: str,
    *,
    changes: Mapping[str, Any],
    reasons: Sequence[str],
    branch: str,
    path: str = CONFIG_PATH,
) -> OpenedPR:
    """Open a PR that sets `path` on a new branch (named `branch`, or `branch-2`... when taken)
    to the default branch's file with `changes` merged in."""
    owner, name = repo.split("/", 1)
    default = await gh.get_default_branch(repo)
    ref = await gh._call(lambda: gh.rest.git.async_get_ref(owner, name, f"heads/{default}"))
    base_sha = str(ref.json()["object"]["sha"])
    current = await gh.get_file(repo, path, base_sha)
    made = await _create_branch(gh, owner, name, branch, base_sha)
    text = merged_config(current, changes)
    put: dict[str, Any] = {
        "message": f"reviewbot: apply the config changes its feedback supports ({path})",
        "content": base64.b64encode(text.encode()).decode(),
        "branch": made,
    }
    if current is not None:  # updating a file needs the blob sha it replaces
        existing = await gh._call(lambda: gh.rest.repos.async_get_content(owner, name, path, ref=made))
        put["sha"] = existing.json()["sha"]
    await gh._call(
        lambda: gh.rest.repos.async_create_or_update_file_contents(owner, name, path, data=cast(Any, put)),
        write=True,
    )
    data = {
        "title": "reviewbot: config changes learned from this repo's feedback",
        "head": made,
        "base": default,
        "body": pr_body(repo, reasons),
    }
    resp = await gh._call(lambda: gh.rest.pulls.async_create(owner, name, data=cast(Any, data)), write=True)
    pr = resp.json()
    return OpenedPR(number=int(pr["number"]), url=str(pr["html_url"]), branch=made)


async def _create_branch(gh: GitHubClient, owner: str, name: str, branch: str, sha: str) -> str:
    """Create `branch` (or the first free `branch-N`) at `sha`; the name created."""
    for n in range(1, MAX_BRANCH_TRIES + 1):
        candidate = branch if n == 1 else f"{branch}-{n}"
        data = {"ref": f"refs/heads/{candidate}", "sha": sha}
        try:
            await _create_ref(gh, owner, name, data)
        except GitHubAPIError as exc:
            if exc.status == 422:  # "Reference already exists"
                continue
            raise
        return candidate
    taken = f"branches {branch} to {branch}-{MAX_BRANCH_TRIES} all exist"
    raise GitHubAPIError(422, taken, "POST", "/git/refs")


async def _create_ref(gh: GitHubClient, owner: str, name: str, data: dict[str, str]) -> None:
    await gh._call(lambda: gh.rest.git.async_create_ref(owner, name, data=cast(Any, data)), write=True)
