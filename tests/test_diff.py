"""diff.parse_diff and the GitHub anchoring rules (FileDiff.accepts / accepts_range) on parsed hunks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reviewbot.core.domain import DiffLine, FileDiff, Hunk
from reviewbot.review.diff import (
    DiffParseError,
    _parse_fast,
    _parse_full,
    hunk_index_for,
    parse_diff,
    unquote_path,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = sorted(p for p in (SHARED / "diff-samples").rglob("*") if p.is_file()) if SHARED.is_dir() else []
REAL_PRS = (
    [e["id"] for e in json.loads((SHARED / "real-prs" / "index.json").read_text())]
    if (SHARED / "real-prs" / "index.json").is_file()
    else []
)


def read(path: Path) -> str:
    """Text exactly as stored (no newline translation: CRLF must reach the parser)."""
    return path.read_bytes().decode("utf-8", errors="replace")


def by_path(files: list[FileDiff]) -> dict[str, FileDiff]:
    return {f.path: f for f in files}


def check_hunk_invariants(files: list[FileDiff]) -> None:
    """Every hunk's lines agree with its header, and numbering is consecutive on both sides."""
    for f in files:
        assert f.path
        if f.is_binary:
            assert not f.hunks
        for h in f.hunks:
            old = [ln.old_no for ln in h.lines if ln.kind != "added"]
            new = [ln.new_no for ln in h.lines if ln.kind != "deleted"]
            assert len(old) == h.old_len and len(new) == h.new_len, (f.path, h)
            assert old == list(range(h.old_start, h.old_start + len(old)))
            assert new == list(range(h.new_start, h.new_start + len(new)))
            assert all("\n" not in ln.text and not ln.text.endswith("\r") for ln in h.lines)


# --------------------------------------------------------------------------- hand-made fixtures


@pytest.fixture(scope="module")
def mixed(fixtures_dir: Path) -> dict[str, FileDiff]:
    files = parse_diff(read(fixtures_dir / "diffs" / "git_mixed.diff"))
    check_hunk_invariants(files)
    return by_path(files)


def test_mixed_git_diff_statuses_modes_and_languages(mixed: dict[str, FileDiff]) -> None:
    assert set(mixed) == {
        "crlf.txt",
        "deleted.py",
        "img.bin",
        "mode.sh",
        "multi.py",
        "new name.txt",
        "nonl.txt",
        'quo"te.txt',
        "tab\\there.py",
        "with space.txt",
        "ünï cödé.py",
    }
    assert mixed["deleted.py"].status == "deleted"
    assert mixed["deleted.py"].old_mode == "100644" and mixed["deleted.py"].new_mode is None
    assert mixed["ünï cödé.py"].status == "added" and mixed["ünï cödé.py"].language == "python"
    assert mixed["multi.py"].status == "modified" and mixed["multi.py"].old_path is None
    mode = mixed["mode.sh"]
    assert (mode.status, mode.old_mode, mode.new_mode, mode.hunks) == ("modified", "100644", "100755", [])
    spaced = mixed["with space.txt"]  # header-only entry with spaces: no ---/+++ lines at all
    assert (spaced.old_mode, spaced.new_mode, spaced.hunks) == ("100644", "100755", [])
    binary = mixed["img.bin"]
    assert binary.is_binary and binary.hunks == [] and binary.status == "modified"


def test_rename_without_hunks(mixed: dict[str, FileDiff]) -> None:
    renamed = mixed["new name.txt"]
    assert (renamed.status, renamed.old_path, renamed.hunks, renamed.is_binary) == (
        "renamed",
        "old name.txt",
        [],
        False,
    )


def test_rename_with_hunk_and_a_real_tab_in_a_quoted_name(fixtures_dir: Path) -> None:
    files = by_path(parse_diff(read(fixtures_dir / "diffs" / "git_rename_hunk_tab.diff")))
    assert set(files) == {"real\ttab.py", "sub dir/renamed.txt"}
    moved = files["sub dir/renamed.txt"]
    assert moved.status == "renamed" and moved.old_path == "new name.txt"
    last = moved.hunks[0].lines[-1]
    assert (last.kind, last.text, last.old_no, last.new_no) == ("added", "four", None, 4)
    assert files["real\ttab.py"].status == "added"


def test_crlf_content_lines_lose_the_carriage_return(mixed: dict[str, FileDiff]) -> None:
    lines = [(ln.kind, ln.text) for ln in mixed["crlf.txt"].hunks[0].lines]
    assert lines == [("context", "a"), ("deleted", "b"), ("added", "B"), ("context", "c")]


def test_whole_diff_in_crlf(fixtures_dir: Path) -> None:
    raw = (fixtures_dir / "diffs" / "crlf_whole.diff").read_bytes()
    assert b"\r\n" in raw
    (f,) = parse_diff(raw.decode())
    hunk = f.hunks[0]
    assert f.path == "app.py" and f.language == "python" and f.new_mode == "100644"
    assert hunk.section == "def main():"
    assert [(ln.kind, ln.text, ln.new_no) for ln in hunk.lines] == [
        ("context", "def main():", 1),
        ("deleted", "    return 1", None),
        ("added", "    return 2", 2),
        ("context", "", 3),
    ]


def test_no_newline_at_end_of_file_marker_is_not_a_line(mixed: dict[str, FileDiff]) -> None:
    hunk = mixed["nonl.txt"].hunks[0]
    assert [(ln.kind, ln.text, ln.old_no, ln.new_no) for ln in hunk.lines] == [
        ("context", "x", 1, 1),
        ("deleted", "y", 2, None),
        ("added", "z", None, 2),
    ]


def test_c_quoted_names(mixed: dict[str, FileDiff]) -> None:
    assert mixed['quo"te.txt'].hunks[0].added_line_numbers() == [2]
    assert mixed["tab\\there.py"].language == "python"
    assert unquote_path('"a/\\303\\274 \\t\\"x\\\\"') == 'a/ü \t"x\\'
    assert unquote_path("a/plain name.txt") == "a/plain name.txt"


def test_header_only_entries_with_quoted_and_ambiguous_spaced_names(fixtures_dir: Path) -> None:
    files = parse_diff(read(fixtures_dir / "diffs" / "header_only_quoted.diff"))
    got = [(f.path, f.old_path, f.status, f.old_mode, f.new_mode, f.hunks) for f in files]
    assert got == [
        ('dir/we"ird name.sh', None, "modified", "100644", "100755", []),
        ("a b/d.txt", "a b/c.txt", "renamed", None, None, []),
        ("x b/y.md", None, "added", None, "100644", []),
    ]


def test_git_binary_patch(fixtures_dir: Path) -> None:
    (f,) = parse_diff(read(fixtures_dir / "diffs" / "git_binary_patch.diff"))
    assert (f.path, f.is_binary, f.hunks) == ("img.bin", True, [])


def test_blank_input_is_an_empty_change() -> None:
    assert parse_diff("") == [] and parse_diff("  \n\n") == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bad_short_hunk.diff", r"^x\.py: hunk 1 \(diff line 7\): the diff ends before the hunk"),
        ("bad_long_hunk.diff", r"^x\.py: hunk 1 \(diff line 5\): the hunk has more lines than its @@ header"),
        ("bad_line_in_hunk.diff", r"^x\.py: hunk 1 \(diff line 5\): a line inside a hunk must start.*'\?b'"),
        ("bad_overlapping_hunks.diff", r"^x\.py: hunk 2 \(@@ -2,2 \+2,2 @@\) overlaps or precedes hunk 1"),
        ("bad_hunk_without_file.diff", r"^diff line 1: a hunk header with no file header before it"),
        ("bad_quoted_escape.diff", r"unknown escape \\q in quoted file name"),
        ("not_a_diff.txt", r"^no unified diff found in the input \(it starts with 'This is a commit"),
    ],
)
def test_malformed_input_raises_one_typed_error(fixtures_dir: Path, name: str, expected: str) -> None:
    with pytest.raises(DiffParseError, match=expected) as info:
        parse_diff(read(fixtures_dir / "diffs" / name))
    assert isinstance(info.value, ValueError)


def test_error_carries_location(fixtures_dir: Path) -> None:
    with pytest.raises(DiffParseError) as info:
        parse_diff(read(fixtures_dir / "diffs" / "bad_short_hunk.diff"))
    assert (info.value.path, info.value.hunk, info.value.line_no) == ("x.py", 1, 7)


def test_non_text_input_is_a_diff_parse_error() -> None:
    with pytest.raises(DiffParseError, match="must be text"):
        parse_diff(None)  # type: ignore[arg-type]


def line_counts(files: Iterable[FileDiff]) -> tuple[int, int]:
    """(added, deleted) lines over the parsed files."""
    kinds = [ln.kind for f in files for h in f.hunks for ln in h.lines]
    return kinds.count("added"), kinds.count("deleted")


def test_stats_and_changed_lines(mixed: dict[str, FileDiff]) -> None:
    assert line_counts(mixed.values()) == (8, 7)
    assert mixed["multi.py"].added_line_numbers() == {5, 30, 31}


# --------------------------------------------------------------------------- GitHub anchoring


def test_accepts_on_a_multi_hunk_file(mixed: dict[str, FileDiff]) -> None:
    f = mixed["multi.py"]  # hunk 1: new 2..8 (5 changed); hunk 2: new 27..34 (30, 31 added)
    assert [(h.new_start, h.new_len) for h in f.hunks] == [(2, 7), (27, 8)]
    for line in (*range(2, 9), *range(27, 35)):
        assert f.accepts(line, "RIGHT"), line
    for line in (1, 9, 18, 26, 35, 100, 0, -1):
        assert not f.accepts(line, "RIGHT"), line
    # LEFT: deleted 5 and 30, and context lines by their old numbers (hunk 2 old 27..33)
    assert f.accepts(5, "LEFT") and f.accepts(30, "LEFT") and f.accepts(33, "LEFT")
    assert not f.accepts(34, "LEFT") and not f.accepts(1, "LEFT")
    assert hunk_index_for(f, 31) == 1 and hunk_index_for(f, 3) == 0 and hunk_index_for(f, 20) is None


def test_accepts_range_same_hunk_only(mixed: dict[str, FileDiff]) -> None:
    f = mixed["multi.py"]
    assert f.accepts_range(2, 8) and f.accepts_range(29, 31) and f.accepts_range(27, 34)
    assert not f.accepts_range(5, 28)  # start in another hunk
    assert not f.accepts_range(8, 27)
    assert not f.accepts_range(8, 8) and not f.accepts_range(8, 3)  # start must precede end
    assert not f.accepts_range(1, 5)  # start outside any hunk
    assert f.accepts_range(2, 5, "LEFT") and not f.accepts_range(5, 30, "LEFT")


def test_added_file_accepts_only_right_and_deleted_only_left(mixed: dict[str, FileDiff]) -> None:
    added, deleted = mixed["ünï cödé.py"], mixed["deleted.py"]
    assert added.accepts(1, "RIGHT") and not added.accepts(1, "LEFT")
    assert deleted.accepts(1, "LEFT") and deleted.accepts(2, "LEFT") and not deleted.accepts(1, "RIGHT")
    assert not mixed["mode.sh"].accepts(1) and not mixed["img.bin"].accepts(1)


_KINDS = st.sampled_from([" ", "+", "-"])
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
)


@settings(max_examples=150, deadline=None)
@given(
    body=st.lists(st.tuples(_KINDS, _TEXT), min_size=1, max_size=30),
    old_start=st.integers(min_value=1, max_value=5000),
    shift=st.integers(min_value=-50, max_value=50),
)
def test_property_random_hunks_number_consecutively_and_accepts_agrees(
    body: list[tuple[str, str]], old_start: int, shift: int
) -> None:
    old_len = sum(1 for k, _ in body if k != "+")
    new_len = sum(1 for k, _ in body if k != "-")
    new_start = max(1, old_start + shift)
    # An empty side starts at the line before (GNU/git convention); keep it simple and valid.
    o_start = old_start if old_len else old_start - 1
    n_start = new_start if new_len else new_start - 1
    text = f"--- a/f.py\n+++ b/f.py\n@@ -{o_start},{old_len} +{n_start},{new_len} @@\n" + "".join(
        f"{k}{t}\n" for k, t in body
    )
    (f,) = parse_diff(text)
    (hunk,) = f.hunks
    assert [(ln.kind, ln.text) for ln in hunk.lines] == [
        ({" ": "context", "+": "added", "-": "deleted"}[k], t) for k, t in body
    ]
    right = [ln.new_no for ln in hunk.lines if ln.kind != "deleted"]
    left = [ln.old_no for ln in hunk.lines if ln.kind != "added"]
    assert right == list(range(n_start, n_start + new_len))
    assert left == list(range(o_start, o_start + old_len))
    for line in range(n_start - 2, n_start + new_len + 2):
        assert f.accepts(line, "RIGHT") == (line in right)
    for line in range(o_start - 2, o_start + old_len + 2):
        assert f.accepts(line, "LEFT") == (line in left)
    if len(right) >= 2:
        assert f.accepts_range(right[0], right[-1]) and not f.accepts_range(right[-1], right[0])
        assert not f.accepts_range(right[0] - 1, right[-1])


# --------------------------------------------------------------------------- shared real data


@pytest.mark.shared
@pytest.mark.parametrize("sample", SAMPLES, ids=[str(p.relative_to(SHARED)) for p in SAMPLES])
def test_every_shared_sample_parses_or_raises_diff_parse_error(shared_data: Path, sample: Path) -> None:
    try:
        files = parse_diff(read(sample))
    except DiffParseError as exc:
        assert str(exc)
        return
    assert files
    check_hunk_invariants(files)


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        (
            "unidiff/git_rename.diff",
            [("moved", "renamed"), ("newfile", "renamed"), ("sub/otherfile", "renamed")],
        ),
        ("unidiff/git_quoted_filename_with_spaces.diff", [("docs/develop/Bug 排查.md", "modified")]),
        ("unidiff/git_filenames_with_spaces.diff", [("has spaces/t.sql", "added")]),
        ("unidiff/binary.diff", [("1x1.png", "added")]),
        ("unidiff/git_no_prefix.diff", [("file1", "deleted"), ("file2", "modified"), ("file3", "added")]),
        ("unidiff/sample2.diff", DiffParseError),
        ("unidiff/sample6.diff", DiffParseError),
        ("whatthepatch/diff-context.diff", DiffParseError),
        (
            "whatthepatch/svn-unified.patch",
            [
                (p, "modified")
                for p in (
                    "bugtrace/trunk/src/bugtrace/csc.py",
                    "bugtrace/trunk/src/bugtrace/Diffxplore.py",
                    "bugtrace/trunk/src/bugtrace/Bugxplore.py",
                )
            ],
        ),
    ],
)
def test_known_shared_samples(shared_data: Path, name: str, outcome: object) -> None:
    text = read(shared_data / "diff-samples" / name)
    if outcome is DiffParseError:
        with pytest.raises(DiffParseError):
            parse_diff(text)
        return
    files = parse_diff(text)
    if name.endswith("git_rename.diff"):
        assert [f.old_path for f in files] == ["added", "oldfile", "sub/onefile"]
    assert [(f.path, f.status) for f in files] == outcome


_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def independent_counts(text: str) -> tuple[int, int]:
    """Count '+'/'-' lines inside hunks using only the @@ header lengths (no unidiff)."""
    added = deleted = old_left = new_left = 0
    for line in text.replace("\r\n", "\n").split("\n"):
        if old_left or new_left:
            if line.startswith("\\"):
                continue
            kind = line[:1] or " "
            if kind == "+":
                added, new_left = added + 1, new_left - 1
            elif kind == "-":
                deleted, old_left = deleted + 1, old_left - 1
            else:
                old_left, new_left = old_left - 1, new_left - 1
            continue
        match = _HUNK.match(line)
        if match:
            old_left = int(match.group(1) or 1)
            new_left = int(match.group(2) or 1)
    return added, deleted


@pytest.mark.shared
@pytest.mark.parametrize("pr_id", REAL_PRS)
def test_real_pr_diffs_parse_and_counts_match(shared_data: Path, pr_id: str) -> None:
    pr = shared_data / "real-prs" / pr_id
    text = read(pr / "diff.patch")
    files = parse_diff(text)
    check_hunk_invariants(files)
    meta = json.loads((pr / "meta.json").read_text())
    assert line_counts(files) == independent_counts(text) == (meta["added"], meta["deleted"])
    assert {f.path for f in files} == set(meta["files"])


_FRAGMENTS = st.sampled_from(
    [
        "diff --git a/x.py b/x.py",
        'diff --git "a/x\\303.py" "b/y.py"',
        "diff --git a/x b",
        "--- a/x.py",
        "+++ b/x.py",
        "--- /dev/null",
        "+++ /dev/null",
        "@@ -1,2 +1,2 @@",
        "@@ -0,0 +1 @@",
        "@@ -1 +0,0 @@",
        "@@ -3,1 +3,2 @@ def f():",
        " a",
        "-b",
        "+c",
        "",
        "\\ No newline at end of file",
        "new file mode 100644",
        "deleted file mode 100644",
        "old mode 100644",
        "new mode 100755",
        "rename from a b",
        'rename to "q\\""',
        "Binary files a/x and b/x differ",
        "GIT binary patch",
        "literal 3",
        "index 1234567..89abcde 100644",
        "copy from x",
        "copy to y",
        '"',
        "\r",
        "+++ ",
        "--- ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.one_of(_FRAGMENTS, st.text(max_size=8)), max_size=25),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_property_arbitrary_diffish_text_parses_or_raises_diff_parse_error(
    lines: list[str], newline: str
) -> None:
    try:
        files = parse_diff(newline.join(lines))
    except DiffParseError as exc:
        assert str(exc)
        return
    check_hunk_invariants(files)


def test_hunk_line_sets_are_cached_but_follow_changes_to_the_lines() -> None:
    """FileDiff.accepts answers from per-hunk sets built once; a hunk whose lines grow or are
    replaced (a hand-built hunk, say) is answered from its new lines."""
    hunk = Hunk(10, 1, 10, 2, "", [DiffLine("context", "a", 10, 10), DiffLine("added", "b", None, 11)])
    file = FileDiff("x.py", None, "modified", [hunk])
    assert file.accepts(11) and not file.accepts(12) and file.accepts(10, "LEFT")
    assert file.accepts_range(10, 11) and not file.accepts_range(11, 12)
    hunk.lines.append(DiffLine("added", "c", None, 12))
    assert file.accepts(12) and file.accepts_range(11, 12)
    hunk.lines = [DiffLine("deleted", "a", 10, None)]
    assert not file.accepts(11) and file.accepts(10, "LEFT") and not file.accepts(10)
    assert hunk == Hunk(10, 1, 10, 2, "", [DiffLine("deleted", "a", 10, None)])  # the cache is not data


# --------------------------------------------------------------------------- the fast path


def _both_ways(text: str) -> tuple[list[FileDiff] | None, list[FileDiff] | str]:
    """(the fast path's answer, unidiff's full parse or its error message) on the same text."""
    normalised = text.replace("\r\n", "\n")
    try:
        full: list[FileDiff] | str = _parse_full(normalised)
    except DiffParseError as exc:
        full = str(exc)
    return _parse_fast(normalised), full


def assert_fast_path_agrees(text: str) -> None:
    """parse_diff's fast path (unidiff metadata + hunk bodies read here) gives exactly unidiff's
    full parse whenever the full parse succeeds, and declines (None) whenever it fails."""
    fast, full = _both_ways(text)
    if isinstance(full, str):
        assert fast is None, full
    else:
        assert fast == full


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(
        st.one_of(_FRAGMENTS, st.text(max_size=8), st.sampled_from([" \r", "+x\r", "\r\rq", "\t", "\x0b"])),
        max_size=25,
    ),
    newline=st.sampled_from(["\n", "\r\n"]),
    end=st.sampled_from(["", "\n", "\r\n"]),
)
def test_property_fast_path_agrees_with_the_full_parse(lines: list[str], newline: str, end: str) -> None:
    assert_fast_path_agrees(newline.join(lines) + end)


@settings(max_examples=150, deadline=None)
@given(body=st.lists(st.tuples(_KINDS, _TEXT), min_size=1, max_size=30), cut=st.integers(-3, 3))
def test_property_fast_path_agrees_on_valid_and_miscounted_hunks(
    body: list[tuple[str, str]], cut: int
) -> None:
    old_len = sum(1 for k, _ in body if k != "+")
    new_len = sum(1 for k, _ in body if k != "-")
    header = f"@@ -1,{max(0, old_len + cut)} +1,{new_len} @@"
    head = f"diff --git a/f.py b/f.py\n--- a/f.py\n+++ b/f.py\n{header}\n"
    text = head + "".join(f"{k}{t}\n" for k, t in body)
    assert_fast_path_agrees(text)


def test_fast_path_agrees_on_every_fixture_diff(fixtures_dir: Path) -> None:
    paths = sorted((fixtures_dir / "diffs").glob("*"))
    assert paths
    for path in paths:
        assert_fast_path_agrees(read(path))


@pytest.mark.shared
@pytest.mark.parametrize("pr_id", REAL_PRS)
def test_fast_path_agrees_on_real_pr_diffs(shared_data: Path, pr_id: str) -> None:
    text = read(shared_data / "real-prs" / pr_id / "diff.patch")
    fast, full = _both_ways(text)
    assert fast is not None and fast == full
