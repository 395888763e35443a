"""`reviewbot review` as a new user meets it: the repo's config honoured exactly as the App honours
it (max_comments, enabled), and a text report that fits a screen for a large range."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from reviewbot.adapters.local import build_repo_from_dirs
from reviewbot.filter.acceptance import load_prior
from reviewbot.review.pipeline import Change, review_change
from reviewbot.review.review_config import load_review_config
from tests.test_review_e2e import DEMO, run_cli


def _demo(tmp_path: Path) -> tuple[Path, str, str]:
    repo = tmp_path / "demo"
    base, head = build_repo_from_dirs(repo, DEMO / "before", DEMO / "after")
    return repo, base, head


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reviewbot.yml"
    path.write_text(text)
    return path


def test_max_comments_caps_the_local_review_like_the_app(tmp_path: Path) -> None:
    repo, base, head = _demo(tmp_path)
    unlimited = run_cli("review", str(repo), "--base", base, "--head", head, "--format", "json")
    assert unlimited.returncode == 0, unlimited.stderr
    assert len(json.loads(unlimited.stdout)["findings"]) > 2  # the demo has more than two to post
    capped_cfg = _config(tmp_path, "max_comments: 2\n")
    capped = run_cli(
        "review", str(repo), "--base", base, "--head", head, "--format", "json", "--config", str(capped_cfg)
    )
    assert capped.returncode == 0, capped.stderr
    report = json.loads(capped.stdout)
    assert len(report["findings"]) == 2
    assert any(d["reason"] == "over budget (max_comments=2)" for d in report["suppressed"])


def test_the_budget_is_the_same_with_and_without_a_pull_request_number() -> None:
    """One code path: the App's change carries a PR number, the local one does not."""
    files = {p.name: p.read_text() for p in (DEMO / "after").iterdir()}
    before = {p.name: p.read_text() for p in (DEMO / "before").iterdir()}
    import difflib

    diff = ""
    for name in sorted(files):
        a, b = before.get(name, "").splitlines(keepends=True), files[name].splitlines(keepends=True)
        body = "".join(difflib.unified_diff(a, b, f"a/{name}", f"b/{name}"))
        diff += f"diff --git a/{name} b/{name}\n{body}"
    loaded = load_review_config("max_comments: 2\n")

    def posted(pr: int | None) -> list[str]:
        change = Change(diff_text=diff, read_head=files.get, repo="acme/shop", pr=pr)
        result = asyncio.run(
            review_change(change, config=loaded.config, rules=loaded.rules, model=load_prior(), explore=False)
        )
        return sorted(d.fingerprint for d in result.posted)

    assert len(posted(7)) == 2
    assert posted(None) == posted(7)


def test_enabled_false_is_honoured_with_a_note(tmp_path: Path) -> None:
    repo, base, head = _demo(tmp_path)
    cfg = _config(tmp_path, "enabled: false\n")
    proc = run_cli("review", str(repo), "--base", base, "--head", head, "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert "inventory.py:" not in proc.stdout
    assert "Note: not reviewed: reviewbot is disabled in the config (enabled: false)" in proc.stdout
    as_json = run_cli(
        "review", str(repo), "--base", base, "--head", head, "--config", str(cfg), "--format", "json"
    )
    report = json.loads(as_json.stdout)
    assert report["findings"] == [] and report["funnel"]["candidates"] == 0


def _big_range(tmp_path: Path) -> tuple[Path, str, str]:
    """A range like the issue's: hundreds of deleted and vendored files, one new empty file."""
    before, after = tmp_path / "before", tmp_path / "after"
    for d in (before, after):
        (d / "vendor" / "lib").mkdir(parents=True)
        (d / "old").mkdir(parents=True)
    for i in range(300):
        body = "".join(f"    step_{k} = {i * k}\n" for k in range(12))  # too big to pass as a rename
        (before / "old" / f"gone{i}.py").write_text(f"def gone_{i}():\n{body}    return step_0\n")
    for i in range(200):
        (after / "vendor" / "lib" / f"v{i}.py").write_text(f"VENDORED = [{i}, {i + 1}]  # third party\n")
    (before / "app.py").write_text("def f(x):\n    return x\n")
    (after / "app.py").write_text("def f(x):\n    return eval(x)\n")
    (after / "empty.py").write_text("")
    base, head = build_repo_from_dirs(tmp_path / "repo", before, after)
    return tmp_path / "repo", base, head


def test_text_report_fits_a_screen_for_a_large_range(tmp_path: Path) -> None:
    repo, base, head = _big_range(tmp_path)
    proc = run_cli("review", str(repo), "--base", base, "--head", head)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) < 40, proc.stdout
    assert lines[0] == f"Reviewed {base[:12]}..{head[:12]} (--base)"
    assert "app.py:2" in proc.stdout  # the finding is still there, above the summary
    assert "Files not reviewed: 501 (-v lists them)" in lines
    assert "   300  deleted file" in lines
    assert "   200  excluded by paths" in lines
    assert "     1  new empty file" in lines

    verbose = run_cli("review", str(repo), "--base", base, "--head", head, "-v")
    assert "  empty.py: new empty file" in verbose.stdout.splitlines()
    assert "  old/gone7.py: deleted file" in verbose.stdout.splitlines()


def test_no_empty_severity_line_when_nothing_is_posted(tmp_path: Path) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    (before / "a.py").write_text("X = 1\n")
    (after / "a.py").write_text("X = 2\n")
    base, head = build_repo_from_dirs(tmp_path / "repo", before, after)
    proc = run_cli("review", str(tmp_path / "repo"), "--base", base, "--head", head)
    assert proc.returncode == 0, proc.stderr
    assert "No findings worth posting." in proc.stdout
    assert "Posted by severity" not in proc.stdout


def test_default_branch_without_base_says_what_it_compared(tmp_path: Path) -> None:
    repo, base, head = _demo(tmp_path)  # two commits, both on main: HEAD is the default branch
    proc = run_cli("review", str(repo))
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith(f"Reviewed {base[:12]}..{head[:12]} (HEAD~1: HEAD is on the default branch")
    assert "--base" in first
    assert "inventory.py:" in proc.stdout


def test_a_single_commit_repository_asks_for_a_base(tmp_path: Path) -> None:
    repo = tmp_path / "one"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("X = 1\n")
    from reviewbot.adapters.local import _git

    build_repo_from_dirs(repo, tmp_path / "src", tmp_path / "src")
    _git(repo, "reset", "-q", "--soft", "HEAD~1")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "--amend", "-m", "only")
    proc = run_cli("review", str(repo))
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("pass --base REV") and "Traceback" not in proc.stderr


@pytest.mark.shared
def test_a_1000_commit_range_of_a_real_project_fits_a_screen(shared_data: Path, tmp_path: Path) -> None:
    """click (../shared/data/real-repos), the last 1,000 commits reviewed in one range."""
    repo = tmp_path / "click"
    subprocess.run(
        ["git", "clone", "-q", str(shared_data / "real-repos" / "click.bundle"), str(repo)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    base = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--skip=1000", "--max-count=1", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    text = run_cli("review", str(repo), "--base", base)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) <= 40, text.stdout  # one screen
    assert lines[0].startswith(f"Reviewed {base[:12]}..")
    [summary] = [ln for ln in lines if ln.startswith("Files not reviewed: ")]
    total = int(summary.split()[3])
    per_reason = lines[lines.index(summary) + 1 :]
    counted = sum(int(ln.split()[0]) for ln in per_reason if ln[:6].strip().isdigit())
    assert total == counted > 10

    verbose = run_cli("review", str(repo), "--base", base, "-v")
    listed = verbose.stdout.splitlines()
    start = listed.index("Files not reviewed:")
    assert sum(1 for ln in listed[start + 1 :] if ln.startswith("  ") and ": " in ln) == total
