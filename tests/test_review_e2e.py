"""`reviewbot review` end to end: a real git repository, the real CLI, the fake LLM over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reviewbot.adapters.local import build_repo_from_dirs, load_change
from reviewbot.core.config import load_config
from reviewbot.core.domain import SEVERITIES
from reviewbot.core.settings import Settings
from reviewbot.review.diff import parse_diff
from tests.fakes.fake_llm import FakeLLM, diff_lines

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "demo"


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWBOT_", "OPENAI_"))}
    base_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "reviewbot", *args],
        capture_output=True,
        text=True,
        env=base_env,
        cwd=cwd or ROOT,
        timeout=120,
    )


def review_json(repo: Path, base: str, head: str, llm: FakeLLM, *extra: str) -> subprocess.CompletedProcess:
    """`reviewbot review --format json` of base..head in a subprocess, against the fake LLM."""
    return run_cli(
        "review",
        str(repo),
        "--base",
        base,
        "--head",
        head,
        "--format",
        "json",
        *extra,
        env={"REVIEWBOT_LLM_BASE_URL": llm.base_url, "REVIEWBOT_LLM_API_KEY": "test-key"},
    )


def hostile_responder(request_json: dict[str, Any]) -> dict[str, Any]:
    """Answer like a sloppy model: one good finding per file, plus off-diff and invented ones."""
    findings: list[dict[str, Any]] = []
    for path, lines in diff_lines(request_json).items():
        right = [(n, code) for side, n, code in lines if side == "RIGHT" and code.strip()]
        if not right:
            continue
        line, code = right[0]
        findings.append(
            {
                "path": path,
                "line": line,
                "end_line": None,
                "side": "RIGHT",
                "severity": "high",
                "category": "bug",
                "confidence": 0.9,
                "title": "Unchecked value can be None",
                "body": f"`{code.strip()[:40]}` can raise TypeError when the value is None.",
                "suggestion": None,
                "quoted_code": code,
            }
        )
        # Wrong line number, right quote: must be re-anchored onto a line of the diff.
        findings.append(
            {
                "path": path,
                "line": line + 100_000,
                "end_line": None,
                "side": "RIGHT",
                "severity": "medium",
                "category": "correctness",
                "confidence": 0.6,
                "title": "Off-by-one in the loop bound",
                "body": "The loop stops one element early.",
                "suggestion": None,
                "quoted_code": right[-1][1],
            }
        )
        # Outside the diff and quoting nothing in it: must be dropped.
        findings.append(
            {
                "path": path,
                "line": 987_654,
                "end_line": None,
                "side": "RIGHT",
                "severity": "high",
                "category": "bug",
                "confidence": 0.9,
                "title": "Invented",
                "body": "Refers to nothing.",
                "suggestion": None,
                "quoted_code": "this code is not in the change at all",
            }
        )
    findings.append(
        {
            "path": "src/hallucinated.py",
            "line": 3,
            "end_line": None,
            "side": "RIGHT",
            "severity": "critical",
            "category": "security",
            "confidence": 1.0,
            "title": "SQL injection",
            "body": "Hallucinated file.",
            "suggestion": None,
            "quoted_code": "cursor.execute(query)",
        }
    )
    return {"findings": findings}


@pytest.fixture()
def demo_repo(tmp_path: Path) -> tuple[Path, str, str]:
    repo = tmp_path / "demo"
    base, head = build_repo_from_dirs(repo, DEMO / "before", DEMO / "after")
    return repo, base, head


def test_demo_runs_rules_only_and_posts_the_planted_bugs() -> None:
    proc = run_cli("demo", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "no LLM configured" in proc.stderr
    report = json.loads(proc.stdout)
    posted = {f["rule_id"] for f in report["findings"]}
    assert {"py-eval-exec", "py-subprocess-shell", "py-yaml-unsafe-load", "go-defer-in-loop"} <= posted
    assert report["funnel"]["posted"] == len(report["findings"])


def test_review_cli_with_fake_llm_posts_only_valid_anchors(demo_repo: tuple[Path, str, str]) -> None:
    repo, base, head = demo_repo
    with FakeLLM(responder=hostile_responder) as llm:
        proc = review_json(repo, base, head, llm)
        assert llm.requests, "the LLM was never asked"
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    files = {f.path: f for f in parse_diff(load_change(repo, base, head).diff_text)}
    for finding in report["findings"] + report["suppressed"]:
        assert finding["path"] in files
        assert files[finding["path"]].accepts(finding["line"], finding["side"]), finding
    reasons = " ".join(d["reason"] for d in report["dropped"])
    assert "unknown path" in reasons and "outside the diff" in reasons
    assert report["usage"]["requests"] >= 1 and report["usage"]["prompt_tokens"] > 0


def test_review_cli_text_sarif_and_fail_on(demo_repo: tuple[Path, str, str], tmp_path: Path) -> None:
    repo, base, head = demo_repo
    text = run_cli("review", str(repo), "--base", base, "--head", head)
    assert text.returncode == 0, text.stderr
    assert "inventory.py:" in text.stdout and "Funnel:" in text.stdout

    out = tmp_path / "out.sarif"
    sarif = run_cli("review", str(repo), "--base", base, "--head", head, "--format", "sarif", "-o", str(out))
    assert sarif.returncode == 0, sarif.stderr
    doc = json.loads(out.read_text())
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert run["results"]
    for res in run["results"]:
        assert res["ruleId"] in rule_ids
        assert res["level"] in {"error", "warning", "note"}
        region = res["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1

    failing = run_cli("review", str(repo), "--base", base, "--head", head, "--fail-on", "high")
    assert failing.returncode == 1
    bad = run_cli("review", str(repo), "--base", base, "--fail-on", "urgent")
    assert bad.returncode == 2 and "--fail-on" in bad.stderr


def test_review_cli_errors_are_one_line(tmp_path: Path) -> None:
    not_repo = run_cli("review", str(tmp_path))
    assert not_repo.returncode == 2
    assert "not a git repository" in not_repo.stderr and "Traceback" not in not_repo.stderr


def test_repo_config_is_read_from_the_base_revision(tmp_path: Path) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    (before / ".github").mkdir(parents=True)
    (before / ".github" / "reviewbot.yml").write_text("paths:\n  exclude: ['*.py']\n")
    (after / ".github").mkdir(parents=True)
    (after / ".github" / "reviewbot.yml").write_text("enabled: true\n")  # the PR tries to lift it
    (after / "app.py").write_text("def f(x=[]):\n    return eval(x)\n")
    base, head = build_repo_from_dirs(tmp_path / "repo", before, after)
    proc = run_cli("review", str(tmp_path / "repo"), "--base", base, "--head", head, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["findings"] == []
    assert report["files_not_reviewed"]["app.py"] == "excluded by paths"


def _real_pr_repo(pr_dir: Path, target: Path) -> tuple[Path, str, str]:
    base, head = build_repo_from_dirs(target, pr_dir / "before", pr_dir / "after")
    return target, base, head


def test_real_prs_with_fake_llm_only_valid_anchors(shared_data: Path, tmp_path: Path) -> None:
    """Every real PR, rebuilt as a git repo: the pipeline posts only comments GitHub would accept."""
    from reviewbot.commands.review_cmd import run_local_review
    from reviewbot.review.review_config import load_review_config

    entries = json.loads((shared_data / "real-prs" / "index.json").read_text())
    config = load_review_config(None)
    checked = 0
    with FakeLLM(responder=hostile_responder) as llm:
        settings = Settings.from_env(llm_base_url=llm.base_url, llm_api_key="k")
        for entry in entries:
            repo, base, head = _real_pr_repo(shared_data / "real-prs" / entry["id"], tmp_path / entry["id"])
            change = load_change(repo, base, head)
            files = {f.path: f for f in parse_diff(change.diff_text)}
            result = asyncio.run(
                run_local_review(change, config=config, settings=settings, show_progress=False)
            )
            for decision in result.posted + result.suppressed:
                cand = decision.candidate
                assert cand.path in files, (entry["id"], cand.path)
                assert files[cand.path].accepts(cand.line, cand.side), (entry["id"], cand.path, cand.line)
                if cand.end_line:
                    assert files[cand.path].accepts_range(cand.line, cand.end_line, cand.side)
                assert decision.severity in SEVERITIES
            assert len(result.posted) <= config.config.max_comments
            checked += 1
    assert checked == len(entries)


def test_local_review_never_explores(demo_repo: tuple[Path, str, str]) -> None:
    """Exploration posts near-threshold candidates to learn from the answer; a local run learns nothing."""
    from reviewbot.adapters.llm import LLMClient
    from reviewbot.filter.acceptance import load_prior
    from reviewbot.review.pipeline import Change, review_change
    from reviewbot.review.rule_selection import ruleset_from_config

    repo, base, head = demo_repo
    change = load_change(repo, base, head)
    config = load_config("exploration_rate: 0.5\nmax_comments: 50\n")

    async def run(explore: bool) -> list[bool]:
        async with LLMClient(base_url=llm.base_url, api_key="k", model="m") as client:
            result = await review_change(
                Change(change.diff_text, change.read_head),
                config=config,
                rules=ruleset_from_config(config.rules),
                model=load_prior(),
                llm=client,
                explore=explore,
            )
        return [d.explore for d in result.posted + result.suppressed]

    with FakeLLM(responder=hostile_responder) as llm:
        assert any(asyncio.run(run(True)))
        assert not any(asyncio.run(run(False)))
    proc = run_cli("review", str(repo), "--base", base, "--head", head, "--format", "json")
    assert not any(f["explore"] for f in json.loads(proc.stdout)["findings"])
