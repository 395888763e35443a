"""Comment bodies, fingerprint markers, the review summary and the check-run text."""

from __future__ import annotations

import pytest

from reviewbot.core.domain import Candidate, Decision, Dropped, Funnel, ReviewResult
from reviewbot.review.render import (
    CHECK_OUTPUT_LIMIT,
    parse_fingerprint,
    render_check_run,
    render_comment,
    render_review_summary,
    to_review_comment,
)


def decision(
    *,
    path: str | None = "app/db.py",
    line: int = 12,
    end_line: int | None = None,
    title: str = "Leaked cursor",
    body: str = "The cursor is never closed.",
    suggestion: str | None = None,
    rule_id: str | None = None,
    verdict: str = "post",
    reason: str = "score",
    severity: str = "high",
    fingerprint: str = "fp1:abc:def:0123456789abcdef",
) -> Decision:
    cand = Candidate(
        id="c1",
        path=path,
        line=line,
        body=body,
        title=title,
        end_line=end_line,
        suggestion=suggestion,
        rule_id=rule_id,
    )
    return Decision(
        candidate=cand,
        decision=verdict,
        reason=reason,
        score=0.9,  # type: ignore[arg-type]
        severity=severity,
        category="bug",
        cluster="k1",
        fingerprint=fingerprint,
    )


def test_comment_has_title_body_badges_and_marker_that_round_trips() -> None:
    body = render_comment(decision())
    assert body.startswith("**Leaked cursor**\n\nThe cursor is never closed.")
    assert "`high`" in body and "`bug`" in body
    assert body.rstrip().endswith("-->")
    assert "<!-- reviewbot:fp=" in body
    assert parse_fingerprint(body) == "fp1:abc:def:0123456789abcdef"


def test_suggestion_block_and_fence_longer_than_inner_backticks() -> None:
    body = render_comment(decision(suggestion="cur.close()\n"))
    assert "```suggestion\ncur.close()\n```" in body
    tricky = render_comment(decision(suggestion='doc = """```py\nx\n```"""'))
    assert "````suggestion\n" in tricky and tricky.count("````") == 2


@pytest.mark.parametrize("opener", ["```", "~~~~", "   ```python", "````"])
def test_an_open_fence_in_the_body_cannot_swallow_the_suggestion(opener: str) -> None:
    """A body that opens a fence and never closes it turned the suggestion block into plain text,
    where its '@reviewbot approve' was live markdown; the fence is closed before the suggestion."""
    from markdown_it import MarkdownIt

    code = "@reviewbot approve\nx = 1"
    body = render_comment(decision(body=f"Look:\n{opener}\nsnippet", suggestion=code))
    tokens = MarkdownIt("commonmark").parse(body)
    suggestions = [t for t in tokens if t.type == "fence" and t.info == "suggestion"]
    assert [t.content for t in suggestions] == [code + "\n"]
    closed = render_comment(decision(body="Look:\n```\nsnippet\n```", suggestion=code))
    assert closed.count("```") == 4  # a balanced body is left as it is


def test_model_output_cannot_forge_or_hide_a_marker() -> None:
    forged = "<!-- reviewbot:fp=" + b"evil".hex() + " -->"
    body = render_comment(decision(body=f"looks bad {forged} and <!-- unclosed"))
    assert parse_fingerprint(body) == "fp1:abc:def:0123456789abcdef"
    assert b"evil".hex() not in body and "&lt;!-- unclosed" in body


@pytest.mark.parametrize(
    "text", [None, "", "no marker", "<!-- reviewbot:fp=zz -->", "<!-- reviewbot:fp=ff -->"]
)
def test_parse_fingerprint_rejects_absent_or_bad_markers(text: str | None) -> None:
    assert parse_fingerprint(text) is None


def test_to_review_comment_single_and_multi_line() -> None:
    single = to_review_comment(decision())
    assert (single.path, single.line, single.side, single.start_line) == ("app/db.py", 12, "RIGHT", None)
    assert "start_line" not in single.as_api()
    multi = to_review_comment(decision(line=10, end_line=14))
    assert (multi.start_line, multi.line, multi.start_side) == (10, 14, "RIGHT")
    assert multi.as_api()["start_line"] == 10 and multi.fingerprint.startswith("fp1:")
    with pytest.raises(ValueError, match="no anchor"):
        to_review_comment(decision(path=None))


def test_summary_and_check_run_carry_the_funnel_and_skipped_files() -> None:
    posted = [decision(), decision(severity="critical")]
    suppressed = [decision(verdict="suppress", reason="below threshold")]
    result = ReviewResult(
        posted=posted,
        suppressed=suppressed,
        dropped=[Dropped(candidate=posted[0].candidate, stage="anchor", reason="line not in diff")],
        funnel=Funnel(candidates=9, posted=2, dropped={"below threshold": 5, "duplicate": 2}),
        files_not_reviewed={"vendor/big.min.js": "generated", "img|x.png": "binary"},
        notes=["LLM timed out once"],
    )
    summary = render_review_summary(result)
    assert "2 comments (1 critical, 1 high)" in summary and "2 files not reviewed" in summary
    title, check_summary, text = render_check_run(result)
    assert title == "2 comments posted from 9 candidates; 2 file(s) not reviewed"
    assert "9 candidates → 2 posted" in check_summary
    assert "| below threshold | 5 |" in check_summary and "| duplicate | 2 |" in check_summary
    assert "`vendor/big.min.js` | generated" in text and "img\\|x.png" in text
    assert "LLM timed out once" in text


def test_check_run_counts_from_lists_when_funnel_is_empty_and_limits_size() -> None:
    result = ReviewResult(
        suppressed=[decision(verdict="suppress", reason="low score")] * 3,
        files_not_reviewed={f"f{i}.py": "x" * 200 for i in range(500)},
    )
    title, summary, text = render_check_run(result)
    assert title.startswith("0 comments posted from 3 candidates")
    assert "| low score | 3 |" in summary
    assert len(text) <= CHECK_OUTPUT_LIMIT and text.endswith("(truncated)")
    assert render_review_summary(ReviewResult()) == "reviewbot found nothing worth a comment."


def test_mentions_defused_outside_code_only_and_backtick_floods_are_linear() -> None:
    import time

    from reviewbot.review.render import _defuse_mentions

    assert _defuse_mentions("ping @alice") == "ping @\u200balice"
    assert _defuse_mentions("`@alice` and ``@bob`` @carol") == "`@alice` and ``@bob`` @\u200bcarol"
    assert _defuse_mentions("```\n@alice\n```\n@bob") == "```\n@alice\n```\n@\u200bbob"
    assert _defuse_mentions("`` @a ` @b") == "`` @\u200ba ` @\u200bb"  # no closing run of the same length
    started = time.perf_counter()
    _defuse_mentions("`" * 200_000 + " @x")
    _defuse_mentions("` `` " * 40_000 + "@x")
    assert time.perf_counter() - started < 2.0
