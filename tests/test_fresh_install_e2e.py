"""A fresh install (no history, shipped prior) through `reviewbot review` and the fake LLM server.

Issue #10: every LLM finding scored 0.20 on a fresh install and was suppressed. A concrete,
high-severity finding that quotes its line must be posted; style remarks and hedged speculation
must not be.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reviewbot.adapters.local import build_repo_from_dirs
from tests.fakes.fake_llm import FakeLLM, diff_lines
from tests.test_review_e2e import review_json

N_PLANTED = 8


def _planted_repo(tmp_path: Path) -> tuple[Path, str, str]:
    before, after = tmp_path / "before", tmp_path / "after"
    (before / "stats").mkdir(parents=True)
    (after / "stats").mkdir(parents=True)
    (before / "stats" / "__init__.py").write_text("")
    (after / "stats" / "__init__.py").write_text("")
    funcs = []
    for k in range(N_PLANTED):
        funcs.append(
            f"def total_{k}(values_{k}):\n"
            f"    acc_{k} = 0\n"
            f"    for i in range(1, len(values_{k})):\n"
            f"        acc_{k} += values_{k}[i] * {k + 2}\n"
            f"    return acc_{k}\n"
        )
    (after / "stats" / "sums.py").write_text("\n\n".join(funcs))
    base, head = build_repo_from_dirs(tmp_path / "repo", before, after)
    return tmp_path / "repo", base, head


def _concrete(request_json: dict[str, Any]) -> dict[str, Any]:
    findings = []
    for path, lines in diff_lines(request_json).items():
        for side, n, code in lines:
            if side == "RIGHT" and "range(1, len(" in code:
                name = code.split("len(")[1].split(")")[0]
                findings.append(
                    {
                        "path": path,
                        "line": n,
                        "end_line": None,
                        "side": "RIGHT",
                        "severity": "high",
                        "category": "bug",
                        "confidence": 0.9,
                        "title": "Off-by-one: the loop skips index 0",
                        "body": f"`range(1, len({name}))` starts at 1, so `{name}[0]` is never added and "
                        "the total is wrong for every non-empty input.",
                        "suggestion": code.replace("range(1, ", "range(0, "),
                        "quoted_code": code,
                    }
                )
    return {"findings": findings}


def _vague(request_json: dict[str, Any]) -> dict[str, Any]:
    findings = []
    for path, lines in diff_lines(request_json).items():
        right = [(n, code) for side, n, code in lines if side == "RIGHT" and code.strip()]
        for k, (n, code) in enumerate(right[: 2 * N_PLANTED]):
            if k % 2:
                body = "Consider renaming this variable to something more descriptive for readability."
                title, severity, category = "Naming", "low", "style"
            else:
                body = (
                    "This might potentially cause issues in some edge cases; "
                    "perhaps consider adding more checks."
                )
                title, severity, category = "Possible issue", "medium", "maintainability"
            findings.append(
                {
                    "path": path,
                    "line": n,
                    "end_line": None,
                    "side": "RIGHT",
                    "severity": severity,
                    "category": category,
                    "confidence": 0.5,
                    "title": title,
                    "body": body,
                    "suggestion": None,
                    "quoted_code": code,
                }
            )
    return {"findings": findings}


def _review(tmp_path: Path, responder: Any) -> dict[str, Any]:
    repo, base, head = _planted_repo(tmp_path)
    with FakeLLM(responder=responder) as llm:
        proc = review_json(repo, base, head, llm)
        assert llm.requests, "the LLM was never asked"
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def test_fresh_install_posts_concrete_high_severity_findings(tmp_path: Path) -> None:
    report = _review(tmp_path, _concrete)
    posted = [f for f in report["findings"] if "Off-by-one" in (f.get("title") or f.get("body", ""))]
    lines = {f["line"] for f in posted}
    assert len(lines) >= 0.75 * N_PLANTED, (report["funnel"], [s.get("reason") for s in report["suppressed"]])


def test_fresh_install_posts_no_style_remark_or_hedged_speculation(tmp_path: Path) -> None:
    report = _review(tmp_path, _vague)
    assert report["funnel"]["candidates"] >= N_PLANTED
    assert report["findings"] == [], report["findings"]
    # never silently silent: the report says how many, the best score and what would post it
    assert report["silence"].startswith(f"Nothing posted: {report['funnel']['candidates']} candidates")
    assert "the best scored" in report["silence"] and "would" in report["silence"]
