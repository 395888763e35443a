"""SARIF in: a team's linters (ruff, semgrep: fixtures made by the real tools) through the filter.

The fixture change is fixtures/sarif/{before,after}; fixtures/sarif/make_sarif.py ran ruff and
semgrep (local rules, no registry) on its head to write ruff.sarif and semgrep.sarif. Their
findings must reach the filter, be anchored to the lines the change adds, be deduplicated against
reviewbot's rules and the LLM's findings, and be posted or suppressed with a reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reviewbot.adapters.local import load_change
from reviewbot.core.domain import Candidate
from reviewbot.review.diff import parse_diff
from reviewbot.review.sarif_in import (
    SarifError,
    anchor,
    from_annotations,
    parse_sarif,
    read_sarif_files,
    severity_for,
)
from tests.fakes.fake_llm import FakeLLM, diff_lines

ROOT = Path(__file__).resolve().parent.parent
SARIF = ROOT / "fixtures" / "sarif"
sys.path.insert(0, str(SARIF))
import make_sarif  # noqa: E402

Repo = tuple[Path, str, str]


@pytest.fixture()
def change_repo(tmp_path: Path) -> Repo:
    repo = tmp_path / "repo"
    base, head = make_sarif.build_repo(repo)
    return repo, base, head


def _review(repo: Path, base: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWBOT_", "OPENAI_"))}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reviewbot",
            "review",
            str(repo),
            "--base",
            base,
            "--format",
            "json",
            "--sarif-in",
            str(SARIF / "ruff.sarif"),
            "--sarif-in",
            str(SARIF / "semgrep.sarif"),
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _by_rule(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in [*doc["findings"], *doc["suppressed"]]:
        out.setdefault(str(item["rule_id"]), []).append(item)
    return out


# ------------------------------------------------------------------------------------ reading


def test_ruff_and_semgrep_fixtures_become_candidates_per_tool_and_rule() -> None:
    ruff = parse_sarif((SARIF / "ruff.sarif").read_text()).candidates
    semgrep = parse_sarif((SARIF / "semgrep.sarif").read_text()).candidates
    assert {c.rule_id for c in ruff} == {"ruff/F401", "ruff/S307", "ruff/S602", "ruff/S324"}
    assert {c.source for c in ruff} == {"sarif:ruff"}
    assert {c.rule_id for c in semgrep} == {
        "semgrep-oss/no-eval",
        "semgrep-oss/subprocess-shell-true",
        "semgrep-oss/open-without-encoding",
    }
    # ruff writes absolute file: URIs, semgrep %SRCROOT%-relative ones; both name report.py
    assert all(c.path and c.path.endswith("report.py") for c in ruff + semgrep)
    # semgrep grades its rules (ERROR/WARNING/INFO): the levels carry over
    levels = {c.rule_id: c.severity for c in semgrep}
    assert levels["semgrep-oss/no-eval"] == "high" and levels["semgrep-oss/open-without-encoding"] == "low"
    # ruff calls every rule "error": that says nothing, so the severity stage grades from the text
    f401 = next(c for c in ruff if c.rule_id == "ruff/F401")
    assert f401.severity is None
    assert next(c for c in ruff if c.rule_id == "ruff/S307").category == "security"


def test_suppressed_fixed_and_passing_results_are_skipped_with_a_reason() -> None:
    loc = {"physicalLocation": {"artifactLocation": {"uri": "a.py"}, "region": {"startLine": 3}}}
    doc = {
        "runs": [
            {
                "tool": {"driver": {"name": "eslint"}},
                "results": [
                    {
                        "ruleId": "no-eval",
                        "message": {"text": "eval is evil"},
                        "locations": [loc],
                        "level": "error",
                    },
                    {
                        "ruleId": "x",
                        "message": {"text": "ignored inline"},
                        "locations": [loc],
                        "suppressions": [{"kind": "inSource"}],
                    },
                    {
                        "ruleId": "y",
                        "message": {"text": "fixed"},
                        "locations": [loc],
                        "baselineState": "absent",
                    },
                    {"ruleId": "z", "message": {"text": "ok"}, "locations": [loc], "kind": "pass"},
                    {"ruleId": "w", "message": {"text": "where?"}},
                ],
            }
        ]
    }
    got = parse_sarif(json.dumps(doc))
    assert [c.rule_id for c in got.candidates] == ["eslint/no-eval"]
    reasons = [why for _, why in got.skipped]
    assert reasons == [
        "suppressed in the source",
        "absent from the baseline (fixed)",
        "kind pass: not a problem",
        "no location",
    ]


def test_security_severity_wins_over_level_and_bad_input_is_an_error() -> None:
    assert severity_for("note", "9.8") == "critical"
    assert severity_for("error", "5.0") == "medium"
    assert severity_for("warning", None) == "medium"
    assert severity_for("none") == "nit"
    with pytest.raises(SarifError, match="not JSON"):
        parse_sarif("{oops")
    with pytest.raises(SarifError, match="no 'runs'"):
        parse_sarif('{"version": "2.1.0"}')


def test_check_run_annotations_become_candidates() -> None:
    got = from_annotations(
        [
            {
                "path": "src/a.go",
                "start_line": 7,
                "end_line": 7,
                "annotation_level": "failure",
                "title": "errcheck",
                "message": "Error return value of `f.Close` is not checked",
            },
            {"path": "src/a.go", "annotation_level": "notice", "message": "no line"},
        ],
        check_name="golangci-lint",
    )
    assert [(c.rule_id, c.source, c.severity, c.line) for c in got.candidates] == [
        ("golangci-lint/errcheck", "sarif:golangci-lint", "high", 7)
    ]
    assert len(got.skipped) == 1


# ------------------------------------------------------------------------------------ anchoring


def test_anchor_keeps_added_lines_and_says_why_it_drops_the_rest(change_repo: Repo) -> None:
    repo, base, head = change_repo
    files = {f.path: f for f in parse_diff(load_change(repo, base=base, head=head).diff_text)}
    imported = read_sarif_files([SARIF / "ruff.sarif", SARIF / "semgrep.sarif"]).candidates
    stray = Candidate(id="x", path="/else/other.py", line=1, body="b", source="sarif:t", rule_id="t/r")
    kept, dropped = anchor([*imported, stray], files, rule_enabled=lambda r: r != "semgrep-oss/no-eval")
    kept_rules = {(c.rule_id, c.line) for c in kept}
    assert ("ruff/F401", 5) in kept_rules  # `import os`: added
    assert all(c.path == "report.py" for c in kept)
    why = {(d.candidate.rule_id, d.candidate.line): d.reason for d in dropped}
    assert why[("ruff/F401", 7)] == "not on a line this change adds (pre-existing)"  # `import sys`
    assert why[("semgrep-oss/open-without-encoding", 11)].endswith("(pre-existing)")
    assert why[("semgrep-oss/no-eval", 21)] == "rule disabled by rules.disable"
    assert why[("t/r", 1)] == "file not changed by this change"
    assert all(d.stage == "sarif" for d in dropped)
    assert imported[0].path != "report.py"  # the caller's candidates are not rewritten


# ------------------------------------------------------------------------------------ end to end


def test_review_with_sarif_in_anchors_dedups_posts_and_suppresses(change_repo: Repo) -> None:
    repo, base, _ = change_repo
    doc = _review(repo, base)
    rules = _by_rule(doc)
    # ruff's S307 and semgrep's no-eval say what reviewbot's own eval rule says: one issue
    eval_rule = rules["py-eval-exec"][0]
    for other in ("ruff/S307", "semgrep-oss/no-eval"):
        (item,) = rules[other]
        assert item["decision"] == "suppress" and item["reason"].startswith("duplicate of")
        assert item["cluster"] == eval_rule["cluster"]
    # a linter finding nobody else raised, on an added line, is posted on its own merit...
    (md5,) = rules["ruff/S324"]
    assert md5["decision"] == "post" and md5["line"] == 31 and md5["source"] == "sarif:ruff"
    # ...and a low one is held back by the acceptance model, with the reason
    (unused,) = [r for r in rules["ruff/F401"]]
    assert unused["decision"] == "suppress" and unused["reason"].startswith("below acceptance")
    assert doc["funnel"]["dropped"]["sarif: not on a line this change adds (pre-existing)"] == 2
    assert {(d["path"], d["line"]) for d in doc["dropped"]} == {("report.py", 7), ("report.py", 11)}


def test_repo_config_disables_and_regrades_imported_rules(change_repo: Repo, tmp_path: Path) -> None:
    repo, base, _ = change_repo
    cfg = tmp_path / "reviewbot.yml"
    cfg.write_text("rules:\n  disable: ['ruff/S3*']\n  severity: {ruff/F401: critical}\n")
    doc = _review(repo, base, "--config", str(cfg))
    rules = _by_rule(doc)
    assert "ruff/S324" not in rules and "ruff/S307" not in rules
    assert doc["funnel"]["dropped"]["sarif: rule disabled by rules.disable"] == 2
    (unused,) = rules["ruff/F401"]
    assert unused["severity"] == "critical" and unused["decision"] == "post"


def _llm_responder(request_json: dict[str, Any]) -> dict[str, Any]:
    """An LLM that raises the eval issue in its own words on the line it sees it."""
    findings = []
    for path, lines in diff_lines(request_json).items():
        for side, line, code in lines:
            if side == "RIGHT" and "eval(" in code:
                findings.append(
                    {
                        "path": path,
                        "line": line,
                        "side": "RIGHT",
                        "severity": "high",
                        "category": "security",
                        "confidence": 0.9,
                        "title": "Insecure eval of a user expression",
                        "body": "eval() of the user's filter expression runs arbitrary code: use "
                        "ast.literal_eval or a small parser instead.",
                        "quoted_code": code,
                    }
                )
    return {"findings": findings}


def test_sarif_findings_dedup_against_llm_findings(change_repo: Repo, tmp_path: Path) -> None:
    repo, base, _ = change_repo
    cfg = tmp_path / "reviewbot.yml"
    cfg.write_text("rules:\n  disable: [py-eval-exec]\n")  # leave the eval issue to the LLM and linters
    with FakeLLM(responder=_llm_responder) as llm:
        doc = _review(
            repo,
            base,
            "--config",
            str(cfg),
            env={"REVIEWBOT_LLM_BASE_URL": llm.base_url, "REVIEWBOT_LLM_API_KEY": "k"},
        )
        assert llm.requests, "the LLM was asked"
    line21 = [i for i in [*doc["findings"], *doc["suppressed"]] if i["line"] == 21]
    assert {i["source"] for i in line21} >= {"llm", "sarif:ruff", "sarif:semgrep-oss"}
    assert len({i["cluster"] for i in line21}) == 1, "one issue, however many tools raised it"
    assert sum(1 for i in line21 if i["decision"] == "post") == 1


def test_unreadable_sarif_is_a_usage_error(change_repo: Repo, tmp_path: Path) -> None:
    repo, base, _ = change_repo
    bad = tmp_path / "bad.sarif"
    bad.write_text("not json")
    proc = subprocess.run(
        [sys.executable, "-m", "reviewbot", "review", str(repo), "--base", base, "--sarif-in", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "bad.sarif: not JSON" in proc.stderr


# ------------------------------------------------------------------------------------ the real tools


@pytest.mark.parametrize("tool", make_sarif.TOOLS)
def test_fixture_matches_a_fresh_run_of_the_real_tool(tool: str, change_repo: Repo, tmp_path: Path) -> None:
    if make_sarif.tool_path(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} must be installed in CI (.ci/run installs it)")
        pytest.skip(f"{tool} is not installed (pip install {tool}; .ci/run does)")
    repo, _, _ = change_repo
    out = tmp_path / f"{tool}.sarif"
    make_sarif.run_tool(tool, repo, out)

    def shape(path: Path) -> list[tuple[str | None, int | None, str]]:
        return sorted((c.rule_id, c.line, c.body) for c in parse_sarif(path.read_text()).candidates)

    assert shape(out) == shape(SARIF / f"{tool}.sarif"), f"regenerate: python {SARIF / 'make_sarif.py'}"
