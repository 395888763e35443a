"""One glob dialect (issue #13): config paths, rule paths, path_instructions and severity-by-path
agree, on exactly the patterns where `fnmatch` (severity.meets_minimum's old dialect) and the
documented rules differed."""

from __future__ import annotations

import pytest

from reviewbot.core.config import load_config
from reviewbot.core.domain import Candidate
from reviewbot.core.globs import (
    MAX_PATTERN_CHARS,
    MAX_PATTERNS,
    GlobError,
    GlobList,
    check_patterns,
    glob_match,
    path_selected,
    translate,
    wildcard_match,
)
from reviewbot.filter.severity import meets_minimum
from reviewbot.review.rule_selection import all_added, ruleset_from_config

#: (glob, path, matches) where fnmatchcase and the documented dialect disagree.
DIVERGENT = [
    ("docs/", "docs/a.md", True),  # fnmatch: only the literal "docs/"
    ("docs/", "docs/api/b.md", True),
    ("**/test_*.py", "test_x.py", True),  # fnmatch: '**/' needs a '/'
    ("src/*.py", "src/a/b.py", False),  # fnmatch: '*' crosses '/'
    ("*.md", "docs/a.md", True),  # no '/': the file name at any depth (fnmatch agrees by accident)
    ("/setup.py", "setup.py", True),  # leading '/' anchors at the root; fnmatch: literal '/'
    ("./src/**", "src/a.py", True),
    ("*.{js,ts}", "web/a.ts", True),  # fnmatch has no alternation
    ("[!a]b.py", "cb.py", True),
    ("tests/**", "tests", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), DIVERGENT)
def test_every_consumer_reads_a_glob_the_same_way(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected
    # paths.include / paths.exclude
    config = load_config(f"paths:\n  include: ['{pattern}']\n  exclude: []\n")
    assert config.path_included(path) is expected
    # min_severity_by_path, both through the config and through the filter's meets_minimum
    config = load_config(f"min_severity_by_path:\n  '{pattern}': high\n")
    assert (config.min_severity_for(path) == "high") is expected
    passes, minimum = meets_minimum("medium", path, "low", {pattern: "high"})
    assert (minimum == "high") is expected and passes is not expected
    # path_instructions
    config = load_config(f"path_instructions:\n  - path: '{pattern}'\n    instructions: hi\n")
    assert (config.instructions_for(path) == ["hi"]) is expected
    # a rule's paths
    assert path_selected(path, [pattern]) is expected


def test_docs_dir_minimum_means_high_for_the_filter_too() -> None:
    """Issue #13: `{"docs/": high}` meant high in the config and nothing in meets_minimum."""
    by_path = {"docs/": "high"}
    assert meets_minimum("medium", "docs/guide/intro.md", "low", by_path) == (False, "high")
    assert meets_minimum("high", "docs/guide/intro.md", "low", by_path) == (True, "high")
    assert meets_minimum("medium", "src/docs.py", "low", by_path) == (True, "low")


def test_root_level_test_file_matches_a_globstar_minimum_in_production() -> None:
    by_path = {"**/test_*.py": "critical"}
    assert meets_minimum("high", "test_x.py", "low", by_path) == (False, "critical")
    assert meets_minimum("high", "pkg/tests/test_x.py", "low", by_path) == (False, "critical")


def test_the_last_matching_glob_wins_everywhere() -> None:
    by_path = {"src/**": "high", "src/gen/": "nit", "*.md": "critical"}
    config = load_config("min_severity_by_path:\n  'src/**': high\n  'src/gen/': nit\n  '*.md': critical\n")
    for path, expected in [
        ("src/a.py", "high"),
        ("src/gen/x.py", "nit"),
        ("src/gen/R.md", "critical"),
        ("a", "low"),
    ]:
        assert config.min_severity_for(path) == expected
        assert meets_minimum("nit", path, "low", by_path)[1] == expected


def test_a_custom_rules_paths_use_the_dialect_with_exclusions() -> None:
    config = load_config(
        "rules:\n  custom:\n    - id: no-print\n      languages: [python]\n      severity: low\n"
        "      category: style\n      message: m\n      paths: ['**/test_*.py', '!tests/fixtures/']\n"
        "      query: '((call function: (identifier) @f) @match (#eq? @f \"print\"))'\n"
    )
    rules = ruleset_from_config(config.rules)
    src = "print(1)\n"

    def fires(path: str) -> bool:
        return any(c.rule_id == "no-print" for c in rules.run(all_added(path, src), src))

    assert fires("test_root.py")  # root level: '**/' is zero or more directories
    assert fires("pkg/test_a.py")
    assert not fires("tests/fixtures/test_a.py")
    assert not fires("pkg/a.py")


def test_glob_list_answers_any_first_last_and_every_match_in_order() -> None:
    globs = GlobList(["*.py", "src/**", "nothing/", "src/*.py"])
    assert globs.any("src/a.py") and not globs.any("lib/a.go")
    assert globs.indices("src/a.py") == [0, 1, 3]
    assert globs.first("src/a.py") == "*.py" and globs.last("src/a.py") == "src/*.py"
    assert globs.first("lib/a.go") is None and GlobList([]).any("x") is False


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("a**", "x/ab/c", False),  # no '/': '**' cannot reach across directories to the file name
        ("a**", "ab/c", True),  # ...but does from the root
        ("*", "a/b", True),  # the file name
        ("{a,b}/x", "b/x", True),
        ("{src/,lib/}*.py", "lib/a.py", True),
        ("[b-a]x", "bx", False),
        ("a.b", "aXb", False),  # '.' is literal
        ("a+b(c)|d$", "a+b(c)|d$", True),  # punctuation is literal
        ("é/*.rs", "é/ü.rs", True),
        ("*[!a]*", "a/a/a", False),  # found by fuzzing: the file name 'a' has no non-'a' character
        ("*[!a]*", "a/a/b", True),
    ],
)
def test_dialect_edges(pattern: str, path: str, expected: bool) -> None:
    try:
        assert glob_match(pattern, path) is expected
    except GlobError:
        assert expected is False  # '[b-a]' is not a class: refused, never a crash


def test_a_path_that_is_not_valid_utf8_is_matched_not_crashed() -> None:
    assert glob_match("**", "a/\udcff.py") is True
    assert GlobList(["*.py", "x/"]).any("a/\udcff.py") is True
    assert wildcard_match("*", "\udcff") is True


def test_limits_name_the_limit() -> None:
    with pytest.raises(GlobError, match=f"at most {MAX_PATTERN_CHARS}"):
        check_patterns(["a" * (MAX_PATTERN_CHARS + 1)])
    with pytest.raises(GlobError, match=f"at most {MAX_PATTERNS}"):
        check_patterns(["a"] * (MAX_PATTERNS + 1))
    with pytest.raises(GlobError, match="invalid glob"):
        check_patterns(["[z-a]"])


def test_wildcards_for_names_are_case_insensitive_and_bracket_literal() -> None:
    assert wildcard_match("*[bot]", "Dependabot[BOT]")
    assert not wildcard_match("*[bot]", "dependabotb")
    assert wildcard_match("py-?val", "py-eval") and not wildcard_match("py-?val", "py-eeval")


def test_translation_is_plain_re2_text() -> None:
    """A glob becomes an RE2 expression with punctuation escaped as \\x{..}: no way to inject syntax."""
    assert "(" not in translate("a(b").replace("(?:", "")


def test_candidate_path_with_globs_goes_through_the_filter_dialect() -> None:
    """severity's only glob user: the filter's minimum for a candidate on a root-level test file."""
    cand = Candidate(id="x", path="test_x.py", line=1, body="b", severity="high")
    assert meets_minimum(cand.severity or "low", cand.path, "low", {"**/test_*.py": "critical"})[0] is False
