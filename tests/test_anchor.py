"""anchor.py: raw LLM findings -> candidates on lines GitHub accepts, or drops with reasons."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reviewbot.core.domain import DiffLine, FileDiff, Hunk
from reviewbot.review.anchor import anchor_candidates, resolve_path


def make_file(
    path: str,
    *hunks: tuple[int, int, list[str]],
    language: str | None = "python",
    status: str = "modified",
    old_path: str | None = None,
) -> FileDiff:
    """A FileDiff from (old_start, new_start, ['+added', ' context', '-deleted', ...]) hunks."""
    built = []
    for old_start, new_start, lines in hunks:
        old_no, new_no = old_start, new_start
        dl = []
        for raw in lines:
            mark, text = raw[0], raw[1:]
            if mark == "+":
                dl.append(DiffLine("added", text, None, new_no))
                new_no += 1
            elif mark == "-":
                dl.append(DiffLine("deleted", text, old_no, None))
                old_no += 1
            else:
                dl.append(DiffLine("context", text, old_no, new_no))
                old_no += 1
                new_no += 1
        built.append(Hunk(old_start, old_no - old_start, new_start, new_no - new_start, "", dl))
    return FileDiff(path, old_path or path, status, built, language=language)  # type: ignore[arg-type]


UTIL = make_file(
    "app/util.py",
    (
        10,
        10,
        [
            " def mean(items):",
            "-    return sum(items) / max(len(items), 1)",
            "+    total = sum(items)",
            "+    return total / len(items)",
            " ",
        ],
    ),
    (40, 41, [" def load(path):", "+    data = open(path).read()", "+    return eval(data)"]),
)
FILES = {"app/util.py": UTIL}


def finding(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "path": "app/util.py",
        "line": 12,
        "end_line": None,
        "side": "RIGHT",
        "severity": "high",
        "category": "bug",
        "confidence": 0.8,
        "title": "t",
        "body": "b",
        "suggestion": None,
        "quoted_code": None,
    }
    base.update(kw)
    return base


def assert_all_valid(cands: list) -> None:
    for c in cands:
        fd = FILES[c.path]
        assert fd.accepts(c.line, c.side), c
        if c.end_line is not None:
            assert fd.accepts_range(c.line, c.end_line, c.side), c


def test_valid_line_kept_with_deterministic_id() -> None:
    raw = [finding(quoted_code="return total / len(items)")]
    cands, dropped = anchor_candidates(raw, FILES, source="llm")
    assert dropped == []
    got = [(c.id, c.line, c.side, c.source, c.hunk_size) for c in cands]
    assert got == [("llm:0", 12, "RIGHT", "llm", 5)]


def test_line_outside_diff_reanchored_by_quoted_code_in_nearest_hunk() -> None:
    raw = [finding(line=30, quoted_code="  return   total / len(items)")]  # whitespace differs
    cands, dropped = anchor_candidates(raw, FILES, source="llm")
    assert dropped == [] and cands[0].line == 12
    raw = [finding(line=99, quoted_code="eval(data)")]  # substring match, nearest hunk is the second
    cands, _ = anchor_candidates(raw, FILES, source="llm")
    assert cands[0].line == 43
    assert_all_valid(cands)


def test_line_outside_diff_without_matching_quote_is_dropped_with_reason() -> None:
    raw = [finding(line=200, quoted_code="print('not in this diff')"), finding(line=201)]
    cands, dropped = anchor_candidates(raw, FILES, source="llm")
    assert cands == []
    assert [d.stage for d in dropped] == ["anchor", "anchor"]
    assert all("line outside the diff" in d.reason for d in dropped)


def test_hallucinated_path_dropped_and_prefixes_stripped() -> None:
    raw = [finding(path="app/ghost.py"), finding(path="b/app/util.py"), finding(path="./app/util.py")]
    cands, dropped = anchor_candidates(raw, FILES, source="llm", id_prefix="llm:3")
    assert [d.reason for d in dropped] == ["unknown path"]
    assert dropped[0].candidate.id == "llm:3:0"
    assert [(c.id, c.path) for c in cands] == [("llm:3:1", "app/util.py"), ("llm:3:2", "app/util.py")]
    assert resolve_path("a/app/util.py", FILES) == "app/util.py"


def test_off_by_one_line_moved_to_the_quoted_code_in_the_same_hunk() -> None:
    cands, _ = anchor_candidates(
        [finding(line=11, quoted_code="return total / len(items)")], FILES, source="llm"
    )
    assert cands[0].line == 12


def test_end_line_outside_hunk_or_before_line_becomes_single_line() -> None:
    raw = [
        finding(line=11, end_line=12),
        finding(line=11, end_line=42),
        finding(line=12, end_line=11),
        finding(line=12, end_line=12),
    ]
    cands, dropped = anchor_candidates(raw, FILES, source="llm")
    assert dropped == []
    assert [c.end_line for c in cands] == [12, None, None, None]
    assert_all_valid(cands)


def test_left_side_only_on_deleted_or_context_old_lines() -> None:
    raw = [
        finding(line=11, side="LEFT"),  # old line 11 was deleted: valid
        finding(line=13, side="LEFT", quoted_code="return total / len(items)"),  # not an old line: moved
        finding(line=12, side="LEFT", suggestion="x = 1"),  # old 12 is context (blank): suggestion cleared
        finding(line=30, side="LEFT"),  # nowhere
    ]
    cands, dropped = anchor_candidates(raw, FILES, source="llm")
    assert [(c.line, c.side) for c in cands] == [(11, "LEFT"), (12, "RIGHT"), (12, "LEFT")]
    assert cands[2].suggestion is None
    assert len(dropped) == 1 and "line outside the diff" in dropped[0].reason
    assert_all_valid(cands)


def test_left_context_line_compared_with_its_old_text() -> None:
    # old 12 is the blank context line; new 12 is an added line: a LEFT quote must match old text
    raw = [finding(line=10, side="LEFT", quoted_code="def mean(items):")]
    cands, _ = anchor_candidates(raw, FILES, source="llm")
    assert [(c.line, c.side) for c in cands] == [(10, "LEFT")]
    raw = [finding(line=12, side="LEFT", quoted_code="return total / len(items)")]
    cands, _ = anchor_candidates(raw, FILES, source="llm")
    assert [(c.line, c.side) for c in cands] == [(12, "RIGHT")]  # the quote is the new line 12


def test_defused_tags_copied_from_the_prompt_are_restored() -> None:
    html = make_file("t.html", (1, 1, ["+<div>", "+</diff-tag>"]), language="html")
    raw = [finding(path="t.html", line=9, quoted_code="<\u200b/diff-tag>", suggestion="<\u200b/diff-tag>x")]
    cands, _ = anchor_candidates(raw, {"t.html": html}, source="llm")
    assert [(c.line, c.quoted_code, c.suggestion) for c in cands] == [(2, "</diff-tag>", "</diff-tag>x")]


def test_trivial_quotes_do_not_anchor() -> None:
    cands, dropped = anchor_candidates([finding(line=300, quoted_code=")")], FILES, source="llm")
    assert cands == [] and len(dropped) == 1


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "path": st.sampled_from(["app/util.py", "b/app/util.py", "app/nope.py"]),
                "line": st.integers(min_value=1, max_value=60),
                "end_line": st.none() | st.integers(min_value=-5, max_value=70),
                "side": st.sampled_from(["RIGHT", "LEFT"]),
                "quoted_code": st.none()
                | st.sampled_from([ln.text for h in UTIL.hunks for ln in h.lines])
                | st.text(max_size=12),
            }
        ),
        max_size=8,
    )
)
def test_every_anchored_candidate_is_accepted_by_github(items: list[dict[str, object]]) -> None:
    raw = [finding(**item) for item in items]
    cands, dropped = anchor_candidates(raw, FILES, source="llm")
    assert len(cands) + len(dropped) == len(raw)  # nothing lost silently
    assert_all_valid(cands)
    assert len({c.id for c in cands} | {d.candidate.id for d in dropped}) == len(raw)
