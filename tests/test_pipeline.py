"""The pipeline's own decisions: which files it reviews, huge files, the funnel's grouping."""

from __future__ import annotations

import asyncio
import difflib

from reviewbot.core.config import load_config
from reviewbot.filter.acceptance import load_prior
from reviewbot.review.diff import parse_diff
from reviewbot.review.pipeline import MAX_FILE_BYTES, Change, reason_kind, review_change, select_files
from reviewbot.review.rule_selection import ruleset_from_config


def unified(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return f"diff --git a/{path} b/{path}\n" + "".join(lines)


def test_select_files_says_why_each_file_is_not_reviewed() -> None:
    diff = (
        unified("app.py", "x = 1\n", "x = 2\n")
        + unified("package-lock.json", "{}\n", '{"a": 1}\n')
        + unified("notes.md", "a\n", "b\n")
        + "diff --git a/logo.png b/logo.png\nindex 1..2 100644\n"
        + "Binary files a/logo.png and b/logo.png differ\n"
    )
    config = load_config("languages: [python]\n")
    keep, skipped = select_files(parse_diff(diff), config)
    assert [f.path for f in keep] == ["app.py"]
    assert skipped == {
        "package-lock.json": "excluded by paths",
        "notes.md": "language unknown not enabled",
        "logo.png": "binary file",
    }


def test_a_huge_head_file_is_reviewed_without_context_and_says_so() -> None:
    before = "def f(x=[]):\n    return x\n"
    after = before + "# pad\n" * (MAX_FILE_BYTES // 6 + 10) + "def g(y=[]):\n    return y\n"
    diff = unified("big.py", before, after)
    config = load_config(None)
    result = asyncio.run(
        review_change(
            Change(diff, lambda _path: after),
            config=config,
            rules=ruleset_from_config(config.rules),
            model=load_prior(),
        )
    )
    assert any("big.py: larger than" in n for n in result.notes)
    assert result.posted == []  # no parse, so no rule ran on it


def test_reason_kind_groups_reasons_that_carry_ids_or_numbers() -> None:
    assert reason_kind("duplicate of llm:0:3") == "duplicate"
    assert reason_kind("below acceptance threshold 0.50") == "below acceptance"
    assert reason_kind("over budget (max_comments=10)") == "over budget"
    assert reason_kind("dismissed before") == "dismissed before"


def test_a_dismissed_finding_is_not_raised_again_elsewhere_in_the_same_function() -> None:
    """Issue #17: the fingerprint named the hunk's symbol, none for a new file (one hunk around
    every function), so a finding dismissed there came back, named after its function, when a
    later PR touched that function. It names the symbol around the finding's line now."""
    config = load_config("languages: [python]\n")
    rules = ruleset_from_config(config.rules)
    first = "def compute(expr):\n    value = eval(expr)\n    return value\n\n\ndef other(x):\n    return x\n"
    pr1 = asyncio.run(
        review_change(
            Change(unified("app/calc.py", "", first), lambda _p: first),
            config=config,
            rules=rules,
            model=load_prior(),
            explore=False,
        )
    )
    [found] = [d for d in pr1.posted + pr1.suppressed if d.candidate.rule_id == "py-eval-exec"]
    assert found.candidate.symbol == "compute"
    second = first.replace("    return value\n", "    more = eval(expr + '1')\n    return value + more\n")
    pr2 = asyncio.run(
        review_change(
            Change(unified("app/calc.py", first, second), lambda _p: second),
            config=config,
            rules=rules,
            model=load_prior(),
            explore=False,
            dismissed_fingerprints={found.fingerprint},
        )
    )
    again = [d for d in pr2.posted + pr2.suppressed if d.candidate.rule_id == "py-eval-exec"]
    assert again and all(d.candidate.line == 3 and d.decision == "suppress" for d in again)
    assert all(d.fingerprint == found.fingerprint for d in again)
    assert [d.candidate.line for d in again if "dismissed" in d.reason] == [3]
