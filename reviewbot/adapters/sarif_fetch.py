"""The App's side of SARIF in: the head commit's linter results, fetched from GitHub.

`.github/reviewbot.yml` names them (`sarif_in.check_runs`, `sarif_in.artifacts`): the annotations
of check runs (what ruff, eslint or golangci-lint leave on a commit in Actions), and `*.sarif`
files inside workflow-run artifacts (what `upload-artifact` keeps). Both become candidates through
reviewbot.review.sarif_in and then go through the same pipeline as the rules' and the LLM's findings.

I/O only; every failure becomes a note in the review ("artifact x: ..."), never a failed review:
a linter's output is a bonus, the review stands without it.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass, field
from typing import Any

from reviewbot.app.github import GitHubClient, _split
from reviewbot.app.github_types import GitHubError
from reviewbot.core.config_schema import SarifInConfig
from reviewbot.core.domain import Candidate
from reviewbot.core.globs import wildcard_match
from reviewbot.review.sarif_in import SarifError, from_annotations, parse_sarif

log = logging.getLogger(__name__)

#: Our own check run is never an input.
OWN_CHECK = "reviewbot"
MAX_ARTIFACT_BYTES = 20_000_000
MAX_SARIF_BYTES = 10_000_000
MAX_ANNOTATIONS = 1000


@dataclass(slots=True)
class Fetched:
    candidates: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _wanted(name: str, patterns: list[str]) -> bool:
    return name != OWN_CHECK and any(wildcard_match(p, name) for p in patterns)


async def _json(gh: GitHubClient, url: str, **params: Any) -> Any:
    resp = await gh._call(lambda: gh.kit.arequest("GET", url, params=params or None))
    return resp.json()


async def _check_runs(gh: GitHubClient, repo: str, sha: str, patterns: list[str], out: Fetched) -> None:
    owner, name = _split(repo)
    data = await _json(gh, f"/repos/{owner}/{name}/commits/{sha}/check-runs", per_page=100)
    for run in data.get("check_runs") or []:
        check = str(run.get("name") or "")
        if not _wanted(check, patterns):
            continue
        if run.get("status") != "completed":
            out.notes.append(f"check run {check}: not completed yet; its annotations were not imported")
            continue
        annotations: list[Any] = []
        page = 1
        while len(annotations) < MAX_ANNOTATIONS:
            batch = await _json(
                gh, f"/repos/{owner}/{name}/check-runs/{run['id']}/annotations", per_page=100, page=page
            )
            annotations.extend(batch or [])
            if len(batch or []) < 100:
                break
            page += 1
        got = from_annotations(annotations[:MAX_ANNOTATIONS], check_name=check)
        out.candidates.extend(got.candidates)


def sarif_files_in_zip(data: bytes, origin: str) -> list[tuple[str, bytes]]:
    """The `*.sarif` / `*.sarif.json` members of an artifact's zip, each within the size cap."""
    out: list[tuple[str, bytes]] = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            lower = info.filename.lower()
            if info.is_dir() or not lower.endswith((".sarif", ".sarif.json")):
                continue
            if info.file_size > MAX_SARIF_BYTES:
                raise SarifError(f"{origin}/{info.filename}: larger than {MAX_SARIF_BYTES} bytes")
            out.append((info.filename, zf.read(info)))
    return out


async def _artifacts(gh: GitHubClient, repo: str, sha: str, patterns: list[str], out: Fetched) -> None:
    owner, name = _split(repo)
    runs = await _json(gh, f"/repos/{owner}/{name}/actions/runs", head_sha=sha, per_page=100)
    for run in runs.get("workflow_runs") or []:
        arts = await _json(gh, f"/repos/{owner}/{name}/actions/runs/{run['id']}/artifacts", per_page=100)
        for art in arts.get("artifacts") or []:
            label = str(art.get("name") or "")
            if not _wanted(label, patterns) or art.get("expired"):
                continue
            if int(art.get("size_in_bytes") or 0) > MAX_ARTIFACT_BYTES:
                out.notes.append(f"artifact {label}: larger than {MAX_ARTIFACT_BYTES} bytes, not imported")
                continue
            url = f"/repos/{owner}/{name}/actions/artifacts/{art['id']}/zip"
            resp = await gh._call(lambda u=url: gh.kit.arequest("GET", u))  # type: ignore[misc]
            try:
                for member, text in sarif_files_in_zip(resp.content, label):
                    got = parse_sarif(text, origin=f"{label}/{member}")
                    for cand in got.candidates:
                        cand.id = f"{cand.id}@{art['id']}/{member}"
                    out.candidates.extend(got.candidates)
            except (SarifError, zipfile.BadZipFile) as exc:
                out.notes.append(f"artifact {label}: {exc}")


async def fetch_imported(gh: GitHubClient, repo: str, head_sha: str, cfg: SarifInConfig) -> Fetched:
    """The linter findings the repo's config asks for, on `head_sha`; problems become notes."""
    out = Fetched()
    for kind, fetch, patterns in (
        ("check runs", _check_runs, cfg.check_runs),
        ("artifacts", _artifacts, cfg.artifacts),
    ):
        if not patterns:
            continue
        try:
            await fetch(gh, repo, head_sha, list(patterns), out)
        except GitHubError as exc:
            log.warning("cannot import %s: %s", kind, exc)
            out.notes.append(f"SARIF in: cannot read the {kind} of {head_sha[:12]}: {exc}")
    return out
