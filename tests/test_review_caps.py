"""The operator's per-review caps (files, changed lines, candidates, LLM requests): a giant change
is reviewed in part, in bounded cost, and what was left out is named in the CLI report and the
App's check run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from reviewbot.adapters.local import build_repo_from_dirs
from reviewbot.core.config_schema import RepoConfig
from reviewbot.core.costs import OperatorLimits, ReviewCaps, limits_from_settings, token_cap
from reviewbot.core.domain import Candidate
from reviewbot.core.settings import Settings
from reviewbot.review.diff import parse_diff
from reviewbot.review.pipeline import cap_candidates, changed_lines, select_files
from tests.fakes.fake_llm import FakeLLM, diff_lines
from tests.test_app_e2e import INSTALLATION, REPO, World, module
from tests.test_review_e2e import run_cli


def _diff(sizes: list[int]) -> str:
    """A unified diff adding files f0.py.. with `sizes[i]` lines each."""
    parts = []
    for i, n in enumerate(sizes):
        body = "".join(f"+x{i}_{k} = {k}\n" for k in range(n))
        parts.append(
            f"diff --git a/f{i}.py b/f{i}.py\nnew file mode 100644\n--- /dev/null\n+++ b/f{i}.py\n"
            f"@@ -0,0 +1,{n} @@\n{body}"
        )
    return "".join(parts)


def test_select_files_caps_files_in_diff_order_and_names_the_rest() -> None:
    files = parse_diff(_diff([3, 3, 3, 3]))
    keep, skipped = select_files(files, RepoConfig(), ReviewCaps(max_files=2))
    assert [f.path for f in keep] == ["f0.py", "f1.py"]
    assert set(skipped) == {"f2.py", "f3.py"}
    assert all("REVIEWBOT_REVIEW_MAX_FILES" in why for why in skipped.values())


def test_select_files_caps_changed_lines_and_smaller_files_still_fit() -> None:
    files = parse_diff(_diff([4, 10, 3, 5]))
    assert [changed_lines(f) for f in files] == [4, 10, 3, 5]
    keep, skipped = select_files(files, RepoConfig(), ReviewCaps(max_changed_lines=8))
    assert [f.path for f in keep] == ["f0.py", "f2.py"]  # 4 + 3; 10 and then 5 do not fit
    assert "REVIEWBOT_REVIEW_MAX_CHANGED_LINES" in skipped["f1.py"] and "changes 10" in skipped["f1.py"]
    assert set(skipped) == {"f1.py", "f3.py"}


def test_no_caps_select_every_eligible_file() -> None:
    files = parse_diff(_diff([3] * 5))
    keep, skipped = select_files(files, RepoConfig(), None)
    assert len(keep) == 5 and not skipped


def test_cap_candidates_keeps_the_most_severe_in_their_order() -> None:
    sev = ["low", "critical", "nit", "high", None, "medium"]
    cands = [Candidate(id=str(i), path="a.py", line=1, body="b", severity=s) for i, s in enumerate(sev)]
    kept, dropped = cap_candidates(cands, 3)
    assert [c.id for c in kept] == ["1", "3", "5"]
    assert {d.candidate.id for d in dropped} == {"0", "2", "4"}
    assert all(d.stage == "cap" for d in dropped)
    assert cap_candidates(cands, None) == (cands, [])


def test_the_caps_are_operator_settings_read_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("REVIEWBOT_REVIEW_MAX_FILES", "7")
    monkeypatch.setenv("REVIEWBOT_REVIEW_MAX_CHANGED_LINES", "900")
    monkeypatch.setenv("REVIEWBOT_REVIEW_MAX_CANDIDATES", "40")
    monkeypatch.setenv("REVIEWBOT_REVIEW_MAX_LLM_REQUESTS", "12")
    caps = limits_from_settings(Settings.from_env()).review
    assert caps == ReviewCaps(max_files=7, max_changed_lines=900, max_candidates=40, max_llm_requests=12)


def test_the_request_cap_refuses_past_its_count_and_names_itself() -> None:
    cap = token_cap(OperatorLimits(review=ReviewCaps(max_llm_requests=2)))
    assert cap is not None and cap.limit is None
    assert [cap.reserve(10**9) for _ in range(4)] == [True, True, False, False]
    assert cap.stopped == 2 and cap.name == "LLM requests per review (REVIEWBOT_REVIEW_MAX_LLM_REQUESTS=2)"
    assert token_cap(OperatorLimits()) is None


def test_with_a_token_cap_too_the_name_is_the_cap_that_stopped_first() -> None:
    by_tokens = token_cap(OperatorLimits(tokens_per_pr=100, review=ReviewCaps(max_llm_requests=5)))
    assert by_tokens is not None and by_tokens.reserve(60) and not by_tokens.reserve(60)
    assert "REVIEWBOT_LLM_MAX_TOKENS_PER_PR=100" in by_tokens.name
    by_count = token_cap(OperatorLimits(tokens_per_pr=100, review=ReviewCaps(max_llm_requests=1)))
    assert by_count is not None and by_count.reserve(10) and not by_count.reserve(10)
    assert not by_count.reserve(1000)  # now over both: the first refusal still names the count
    assert "REVIEWBOT_REVIEW_MAX_LLM_REQUESTS=1" in by_count.name


def one_finding_per_file(request_json: dict[str, Any]) -> dict[str, Any]:
    findings = []
    for path, lines in diff_lines(request_json).items():
        right = [(n, code) for side, n, code in lines if side == "RIGHT" and code.strip()]
        if right:
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
                    "title": "Value can be None",
                    "body": f"`{code.strip()[:30]}` can be None here.",
                    "suggestion": None,
                    "quoted_code": code,
                }
            )
    return {"findings": findings}


def _repo(tmp_path: Path, files: int, config: str | None = None) -> tuple[Path, str, str]:
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    (before / "README.md").write_text("x\n")
    after.mkdir()
    (after / "README.md").write_text("x\n")
    if config is not None:
        for side in (before, after):
            (side / ".github").mkdir()
            (side / ".github" / "reviewbot.yml").write_text(config)
    for i in range(files):
        (after / f"m{i}.py").write_text(module(30, {7: f"m{i}a"}, name=f"v{i}"))
    repo = tmp_path / "repo"
    base, head = build_repo_from_dirs(repo, before, after)
    return repo, base, head


def test_cli_review_applies_the_caps_and_the_report_names_what_was_left_out(tmp_path: Path) -> None:
    repo, base, head = _repo(tmp_path, 6)
    with FakeLLM(responder=one_finding_per_file) as llm:
        env = {
            "REVIEWBOT_LLM_BASE_URL": llm.base_url,
            "REVIEWBOT_LLM_API_KEY": "test-key",
            "REVIEWBOT_REVIEW_MAX_FILES": "4",
            "REVIEWBOT_REVIEW_MAX_CANDIDATES": "2",
        }
        proc = run_cli("review", str(repo), "--base", base, "--head", head, "--format", "json", env=env)
        assert proc.returncode in (0, 1), proc.stderr
        sent = {path for body in llm.requests for path in diff_lines(body)}
        text = run_cli("review", str(repo), "--base", base, "--head", head, env=env)
    report = json.loads(proc.stdout)
    capped = {p for p, why in report["files_not_reviewed"].items() if "REVIEWBOT_REVIEW_MAX_FILES" in why}
    assert len(capped) == 2
    assert sent and not (sent & capped), "a file over the cap never reaches the LLM"
    notes = "\n".join(report["notes"])
    assert "cap of 4 files per review (REVIEWBOT_REVIEW_MAX_FILES): 2 file(s)" in notes
    assert "cap of 2 candidates per review (REVIEWBOT_REVIEW_MAX_CANDIDATES)" in notes
    assert len(report["findings"]) + len(report["suppressed"]) <= 2
    assert sum(d["stage"] == "cap" for d in report["dropped"]) >= 2  # 4 files, one finding each
    assert "REVIEWBOT_REVIEW_MAX_FILES" in text.stdout and "REVIEWBOT_REVIEW_MAX_CANDIDATES" in text.stdout


def test_cli_review_sends_at_most_the_capped_llm_requests_and_says_so(tmp_path: Path) -> None:
    repo, base, head = _repo(tmp_path, 4, config="llm:\n  passes: 3\n")
    args = ("review", str(repo), "--base", base, "--head", head, "--format", "json")
    with FakeLLM(responder=one_finding_per_file) as llm:
        env = {"REVIEWBOT_LLM_BASE_URL": llm.base_url, "REVIEWBOT_LLM_API_KEY": "test-key"}
        uncapped = run_cli(*args, env=env)
        assert uncapped.returncode in (0, 1), uncapped.stderr
        wanted = len(llm.requests)
        assert wanted >= 3, "the uncapped review needs more requests than the cap allows"
        llm.requests.clear()
        capped = run_cli(*args, env={**env, "REVIEWBOT_REVIEW_MAX_LLM_REQUESTS": "2"})
        sent = len(llm.requests)
    assert capped.returncode in (0, 1), capped.stderr
    assert sent == 2
    report = json.loads(capped.stdout)
    notes = "\n".join(report["notes"])
    stop = re.search(
        r"Stopped by the operator's cap on LLM requests per review "
        r"\(REVIEWBOT_REVIEW_MAX_LLM_REQUESTS=2\): (\d+) LLM request\(s\) not sent",
        notes,
    )
    assert stop and int(stop.group(1)) >= wanted - 2  # a refused pass, and the judge's requests
    assert report["usage"]["stopped_by"] == "LLM requests per review (REVIEWBOT_REVIEW_MAX_LLM_REQUESTS=2)"


class RequestCapWorld(World):
    def settings(self) -> Settings:
        return super().settings().model_copy(update={"review_max_llm_requests": 1})


def test_app_review_sends_at_most_the_capped_llm_requests_and_the_check_run_names_the_cap(
    tmp_path: Path,
) -> None:
    w = RequestCapWorld(tmp_path)
    w.gh.add_repo(REPO, INSTALLATION, {".github/reviewbot.yml": "min_acceptance: 0.01\nllm:\n  passes: 3\n"})
    w.start_worker()
    try:
        heads = {f"m{i}.py": module(40, {7: f"m{i}a"}, name=f"v{i}") for i in range(3)}
        pr = w.gh.add_pull(REPO, 1, head_files=heads)
        w.deliver("pull_request", w.pr_event("opened", pr))
        w.settle()
        assert len(w.reviews()) == 1
        assert len(w.llm.requests) == 1  # three passes asked for, one request allowed
        [check] = w.checks(pr.head_sha)
        out = check["output"]
        assert "stopped by a cost cap" in out["title"]
        assert "LLM requests per review (REVIEWBOT_REVIEW_MAX_LLM_REQUESTS=1)" in out["summary"]
    finally:
        w.close()


class CapWorld(World):
    def settings(self) -> Settings:
        caps = {"review_max_files": 3, "review_max_changed_lines": 10_000}
        return super().settings().model_copy(update=caps)


def test_app_review_applies_the_caps_and_the_check_run_names_the_files_left_out(tmp_path: Path) -> None:
    w = CapWorld(tmp_path)
    w.gh.add_repo(REPO, INSTALLATION, {".github/reviewbot.yml": "min_acceptance: 0.01\nmax_comments: 50\n"})
    w.start_worker()
    try:
        heads = {f"m{i}.py": module(40, {7: f"m{i}a"}, name=f"v{i}") for i in range(5)}
        pr = w.gh.add_pull(REPO, 1, head_files=heads)
        w.deliver("pull_request", w.pr_event("opened", pr))
        w.settle()
        assert len(w.reviews()) == 1
        [check] = w.checks(pr.head_sha)
        out = check["output"]
        assert "2 file(s) not reviewed" in out["title"]
        assert out["text"].count("REVIEWBOT_REVIEW_MAX_FILES") >= 3  # the note and both files
        sent = {path for body in w.llm.requests for path in diff_lines(body)}
        assert sent == {"m0.py", "m1.py", "m2.py"}
    finally:
        w.close()
