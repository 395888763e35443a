"""Rule packs and the rule engine: every built-in rule's examples, and the engine's contracts."""

from __future__ import annotations

import difflib
from collections import Counter
from pathlib import Path

import pytest

from reviewbot.core.domain import DiffLine, FileDiff, Hunk
from reviewbot.core.languages import parser
from reviewbot.review.rule_selection import all_added, build_ruleset, check_examples, ruleset_from_config
from reviewbot.review.rules import (
    RuleError,
    RuleQueryError,
    RuleSet,
    builtin_rules_dir,
    load_builtin_rules,
    load_pack,
    parse_rules,
)
from reviewbot.review.rulespec import RuleSpec

BUILTIN = load_builtin_rules()
QUERY_RULES = [r for r in BUILTIN if r.query]


def rule(**overrides: object) -> RuleSpec:
    fields: dict[str, object] = {
        "id": "t-eval",
        "languages": ["python"],
        "severity": "high",
        "category": "security",
        "message": "Do not eval. It runs arbitrary code.",
        "query": '((call function: (identifier) @f) @match (#eq? @f "eval"))',
    }
    fields.update(overrides)
    return RuleSpec.model_validate(fields)


def file_diff(path: str, lines: list[tuple[str, str]]) -> FileDiff:
    """One hunk starting at line 1: (kind, text) with kind '+' added or ' ' context."""
    out: list[DiffLine] = []
    old = new = 0
    for kind, text in lines:
        new += 1
        if kind == "+":
            out.append(DiffLine(kind="added", text=text, old_no=None, new_no=new))
        else:
            old += 1
            out.append(DiffLine(kind="context", text=text, old_no=old, new_no=new))
    hunk = Hunk(old_start=1, old_len=old, new_start=1, new_len=new, lines=out)
    return FileDiff(path=path, old_path=path, status="modified", hunks=[hunk])


def diff_files(path: str, before: str, after: str) -> FileDiff:
    """A FileDiff with 3 lines of context, computed with difflib (independent of diff.py)."""
    a, b = before.splitlines(), after.splitlines()
    hunks: list[Hunk] = []
    for group in difflib.SequenceMatcher(None, a, b).get_grouped_opcodes(3):
        lines: list[DiffLine] = []
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [DiffLine("context", a[i], i + 1, j1 + i - i1 + 1) for i in range(i1, i2)]
                continue
            lines += [DiffLine("deleted", a[i], i + 1, None) for i in range(i1, i2)]
            lines += [DiffLine("added", b[j], None, j + 1) for j in range(j1, j2)]
        first_old, first_new = group[0][1], group[0][3]
        old_len = sum(1 for ln in lines if ln.kind != "added")
        new_len = sum(1 for ln in lines if ln.kind != "deleted")
        hunks.append(Hunk(first_old + 1, old_len, first_new + 1, new_len, lines=lines))
    return FileDiff(path=path, old_path=path, status="modified", hunks=hunks)


# --------------------------------------------------------------------------- built-in packs


@pytest.mark.parametrize("spec", QUERY_RULES, ids=[r.id for r in QUERY_RULES])
def test_builtin_rule_examples(spec: RuleSpec) -> None:
    assert len(spec.examples.positive) >= 2, "every query rule needs >= 2 positive examples"
    assert len(spec.examples.negative) >= 2, "every query rule needs >= 2 negative examples"
    assert check_examples(spec) == []
    # And through the public entry point: each positive, all lines added, yields a candidate.
    ruleset = RuleSet(rules=[spec])
    lang = spec.languages[0]
    ext = {"python": "py", "javascript": "js", "typescript": "ts", "go": "go"}[lang]
    for example in spec.examples.positive:
        found = ruleset.run(all_added(f"example.{ext}", example), example)
        assert any(c.rule_id == spec.id for c in found), example
    for example in spec.examples.negative:
        assert ruleset.run(all_added(f"example.{ext}", example), example) == []


def test_builtin_packs_cover_the_languages() -> None:
    on = [r for r in QUERY_RULES if r.enabled]
    by_lang = Counter(r.languages[0] for r in on)
    assert len(on) >= 25
    assert by_lang["python"] >= 12 and by_lang["javascript"] >= 9 and by_lang["go"] >= 7, by_lang
    assert len({r.id for r in BUILTIN}) == len(BUILTIN)
    assert any(r.instruction and not r.query for r in BUILTIN)
    assert all(r.title and len(r.title) <= 80 for r in QUERY_RULES)
    ruleset = build_ruleset(BUILTIN, enable=["*"])
    ruleset.validate()
    # Every JavaScript rule also compiles for TypeScript and TSX.
    assert ruleset.skipped == {}


def test_builtin_rules_dir_holds_the_packs() -> None:
    names = {p.name for p in builtin_rules_dir().glob("*.yml")}
    assert {"python.yml", "javascript.yml", "go.yml"} <= names


def test_example_checker_catches_broken_rules() -> None:
    never = rule(
        query='((call function: (identifier) @f) @match (#eq? @f "nope"))',
        examples={"positive": ["eval(x)\n"]},
    )
    assert check_examples(never) == ["t-eval: positive example 1 does not match (python)"]
    always = rule(query="(call) @match", examples={"positive": ["f()\n"], "negative": ["g()\n"]})
    assert check_examples(always) == ["t-eval: negative example 1 matches at line 1 (python)"]
    broken = rule(query="(no_such_node) @match", examples={"positive": ["f()\n"]})
    assert "does not compile" in check_examples(broken)[0]
    unparsable = rule(examples={"positive": ["eval(x\n"]})
    assert check_examples(unparsable) == ["t-eval: positive example 1 parses cleanly in none of ['python']"]
    assert check_examples(rule()) == ["t-eval: no positive examples"]


# --------------------------------------------------------------------------- engine


def test_only_added_code_triggers() -> None:
    source = "x = eval(a)\ny = eval(b)\nz = 1\n"
    file = file_diff("app.py", [(" ", "x = eval(a)"), ("+", "y = eval(b)"), (" ", "z = 1")])
    found = RuleSet(rules=[rule()]).run(file, source)
    assert [(c.line, c.end_line) for c in found] == [(2, None)]
    cand = found[0]
    assert cand.source == "rule:t-eval" and cand.rule_id == "t-eval"
    assert (cand.severity, cand.category, cand.side, cand.confidence) == ("high", "security", "RIGHT", 0.9)
    assert cand.title == "Do not eval" and cand.body == "Do not eval. It runs arbitrary code."
    assert cand.quoted_code == "y = eval(b)" and cand.path == "app.py"
    assert file.accepts(cand.line, cand.side)

    nothing_added = file_diff("app.py", [(" ", "x = eval(a)"), (" ", "y = eval(b)"), (" ", "z = 1")])
    assert RuleSet(rules=[rule()]).run(nothing_added, source) == []


def test_multiline_match_anchors_on_its_added_lines() -> None:
    source = "x = eval(\n    a +\n    b\n)\nw = 2\n"
    # The call starts on a context line; only the argument lines are added.
    file = file_diff(
        "app.py",
        [(" ", "x = eval("), ("+", "    a +"), ("+", "    b"), (" ", ")"), (" ", "w = 2")],
    )
    [cand] = RuleSet(rules=[rule()]).run(file, source)
    assert (cand.line, cand.end_line, cand.quoted_code) == (2, 3, "    a +")
    assert file.accepts_range(cand.line, cand.end_line)


def test_pre_parsed_tree_gives_the_same_candidates() -> None:
    source = "def f(a=[]):\n    return eval(a)\n"
    file = all_added("m.py", source)
    ruleset = build_ruleset(BUILTIN)
    tree = parser("python").parse(source.encode())
    with_tree = ruleset.run(file, source, tree=tree)
    assert {c.rule_id for c in with_tree} == {"py-mutable-default-arg", "py-eval-exec"}
    titles = {c.title for c in with_tree}
    assert titles == {"Mutable default argument", "`eval`/`exec` runs arbitrary code"}
    assert [c.id for c in with_tree] == [c.id for c in ruleset.run(file, source)]


def test_unknown_language_and_binary_files_yield_nothing() -> None:
    ruleset = build_ruleset(BUILTIN)
    assert ruleset.run(all_added("notes.txt", "eval(x)\n"), "eval(x)\n") == []
    binary = all_added("a.py", "eval(x)\n")
    binary.is_binary = True
    assert ruleset.run(binary, "eval(x)\n") == []


def test_path_globs_limit_a_rule() -> None:
    ruleset = RuleSet(rules=[rule(paths=["src/**", "!**/test_*.py"])])
    src = "eval(x)\n"
    assert len(ruleset.run(all_added("src/pkg/app.py", src), src)) == 1
    assert ruleset.run(all_added("src/pkg/test_app.py", src), src) == []
    assert ruleset.run(all_added("tools/app.py", src), src) == []
    only_excludes = RuleSet(rules=[rule(paths=["!tests/**"])])
    assert len(only_excludes.run(all_added("app.py", src), src)) == 1
    assert only_excludes.run(all_added("tests/app.py", src), src) == []


def test_javascript_rules_cover_typescript_and_skip_grammars_that_reject_the_query() -> None:
    ruleset = build_ruleset(BUILTIN)
    src = "function f(x) {\n  debugger;\n  return x;\n}\n"
    for path in ("a.js", "a.ts", "a.tsx"):
        assert [c.rule_id for c in ruleset.run(all_added(path, src), src)] == ["js-debugger"], path
    ts_only = rule(id="t-annot", languages=["javascript"], query="(type_annotation) @match")
    rs = RuleSet(rules=[ts_only])
    ts_src = "let a: number = 1;\n"
    assert len(rs.run(all_added("a.ts", ts_src), ts_src)) == 1
    assert rs.run(all_added("a.js", "let a = 1;\n"), "let a = 1;\n") == []
    assert "does not compile for javascript" in rs.skipped[("t-annot", "javascript")]
    rs.validate()  # compiles for typescript/tsx, so it is usable


def test_disable_enable_and_severity_overrides() -> None:
    ruleset = build_ruleset(
        BUILTIN,
        disable=["py-eval-exec", "js-*", "no-such-rule"],
        enable=["py-eq-none", "js-eval"],
        severity={"py-bare-except": "critical", "also-missing": "low"},
    )
    ids = {r.id for r in ruleset.rules}
    assert "py-eval-exec" not in ids and "js-debugger" not in ids
    assert "js-eval" in ids  # an exact enable beats a wildcard disable
    assert "py-eq-none" in ids and "py-print-leftover" not in ids  # opt-in rules need enable
    assert ruleset.rule("py-bare-except").severity == "critical"
    assert next(r for r in BUILTIN if r.id == "py-bare-except").severity == "medium"  # not mutated
    assert any("'no-such-rule'" in w for w in ruleset.warnings)
    assert any("rules.severity: 'also-missing'" in w for w in ruleset.warnings)

    src = "try:\n    x = eval(a)\nexcept:\n    pass\n"
    found = ruleset.run(all_added("a.py", src), src)
    assert [(c.rule_id, c.severity) for c in found] == [("py-bare-except", "critical")]

    with pytest.raises(RuleError, match="rules.severity.py-bare-except"):
        build_ruleset(BUILTIN, severity={"py-bare-except": "urgent"})


def test_custom_rules_from_config() -> None:
    custom = parse_rules(
        [
            {
                "id": "no-print-secrets",
                "languages": ["python"],
                "severity": "high",
                "category": "security",
                "message": "Do not print the token.",
                "query": "((call function: (identifier) @f arguments: (argument_list (identifier) @a)) @match"
                ' (#eq? @f "print") (#match? @a "token"))',
                "instruction": "Flag logging of tokens.",
            },
            {
                "id": "py-eval-exec",
                "languages": ["python"],
                "severity": "low",
                "category": "security",
                "message": "We allow eval here but want to know.",
                "query": '((call function: (identifier) @f) @match (#eq? @f "eval"))',
            },
        ],
        source=".github/reviewbot.yml:rules.custom",
    )
    ruleset = build_ruleset(BUILTIN, custom=custom)
    src = "print(api_token)\nprint(name)\nvalue = eval(x)\n"
    found = {c.rule_id: c for c in ruleset.run(all_added("svc/a.py", src), src)}
    assert found["no-print-secrets"].line == 1
    assert (found["py-eval-exec"].severity, found["py-eval-exec"].body) == (
        "low",
        "We allow eval here but want to know.",
    )
    assert sum(r.id == "py-eval-exec" for r in ruleset.rules) == 1
    assert any("replaces the built-in" in w for w in ruleset.warnings)
    assert "Flag logging of tokens." in ruleset.instructions_for("svc/a.py", "python")


def test_a_query_that_does_not_compile_names_the_rule() -> None:
    bad = rule(id="broken-rule", query="(call (no_such_node)) @match")
    with pytest.raises(RuleQueryError, match=r"rule 'broken-rule': query does not compile for python"):
        build_ruleset(BUILTIN, custom=[bad])
    no_anchor = rule(id="no-anchor", query="(call) @call")
    with pytest.raises(RuleError, match=r"rules.custom: rule 'no-anchor': query must capture @match"):
        build_ruleset([], custom=[no_anchor])
    bad_regex = rule(id="bad-regex", query='((identifier) @match (#match? @match "(unclosed"))')
    with pytest.raises(RuleQueryError, match="bad-regex"):
        build_ruleset([], custom=[bad_regex])


def test_pack_errors_name_the_file_and_rule(tmp_path: Path) -> None:
    pack = tmp_path / "team.yml"
    pack.write_text(
        "pack: team\nrules:\n"
        "  - id: ok-rule\n    languages: [python]\n    severity: low\n    category: style\n"
        "    message: fine\n    instruction: be nice\n"
        "  - id: bad-rule\n    languages: [python]\n    severity: urgent\n    category: style\n"
        "    message: x\n    instruction: y\n"
    )
    with pytest.raises(RuleError, match=r"team\.yml: rule 'bad-rule': .*severity must be one of"):
        load_pack(pack)

    pack.write_text(
        "pack: team\nrules:\n  - id: typo-rule\n    languages: [python]\n    severity: low\n"
        "    category: style\n    message: x\n    querry: '(call) @match'\n"
    )
    with pytest.raises(RuleError, match=r"team\.yml: rule 'typo-rule': querry: Extra inputs"):
        load_pack(pack)

    pack.write_text(
        "pack: team\nrules:\n  - id: no-anchor\n    languages: [python]\n    severity: low\n"
        "    category: style\n    message: x\n    query: '(call) @c'\n"
    )
    with pytest.raises(RuleError, match=r"team\.yml: rule 'no-anchor': query must capture @match"):
        load_pack(pack)

    pack.write_text("pack: team\nrules:\n  - id: dup\n    languages: [cobol]\n")
    with pytest.raises(RuleError, match=r"team\.yml: rule 'dup'"):
        load_pack(pack)
    pack.write_text("rules: [\n")
    with pytest.raises(RuleError, match=r"team\.yml: invalid YAML"):
        load_pack(pack)
    with pytest.raises(RuleError, match="cannot read"):
        load_pack(tmp_path / "missing.yml")


def test_instructions_for_filters_by_language_and_path() -> None:
    ruleset = build_ruleset(BUILTIN)
    py = ruleset.instructions_for("app/models.py", "python")
    go = ruleset.instructions_for("cmd/main.go", None)  # language from the path
    other = ruleset.instructions_for("README.md", None)
    assert any("Python" in text for text in py) and not any("In Go" in text for text in py)
    assert any("In Go" in text for text in go)
    assert any("credentials" in text for text in other) and not any("Python" in t for t in other)
    scoped = RuleSet(rules=[rule(instruction="Check migrations.", query=None, paths=["db/**"])])
    assert scoped.instructions_for("db/m1.py", "python") == ["Check migrations."]
    assert scoped.instructions_for("app/m1.py", "python") == []


def test_demo_change_is_caught_by_builtin_rules(fixtures_dir: Path) -> None:
    ruleset = build_ruleset(BUILTIN)
    demo = fixtures_dir / "demo"
    found: set[str] = set()
    quoted: dict[str, str] = {}
    for after in sorted((demo / "after").iterdir()):
        before_text = (demo / "before" / after.name).read_text()
        after_text = after.read_text()
        file = diff_files(after.name, before_text, after_text)
        for cand in ruleset.run(file, after_text):
            assert cand.line in file.added_line_numbers()
            assert cand.end_line is None or file.accepts_range(cand.line, cand.end_line)
            found.add(cand.rule_id or "")
            quoted[cand.rule_id or ""] = (cand.quoted_code or "").strip()
    assert {
        "py-mutable-default-arg",
        "py-eval-exec",
        "py-subprocess-shell",
        "py-yaml-unsafe-load",
        "py-bare-except",
        "py-requests-no-timeout",
        "js-debugger",
        "js-eval",
        "go-defer-in-loop",
        "go-discarded-error",
    } <= found
    assert quoted["py-bare-except"] == "except:"
    assert quoted["py-mutable-default-arg"] == "def add_item(item, items=[]):"
    assert quoted["go-defer-in-loop"] == "defer f.Close()"
    assert quoted["go-discarded-error"] == "data, _ := io.ReadAll(f)"


def test_inline_suppression_comments() -> None:
    ruleset = RuleSet(rules=[rule()])
    cases = {
        "x = eval(a)  # reviewbot: ignore\n": 0,
        "x = eval(a)  # reviewbot: ignore[t-eval, other]\n": 0,
        "x = eval(a)  # reviewbot: ignore[other]\n": 1,
        "x = eval(a)  # nosec\n": 0,
        "x = eval(a)  # noqa: S307\n": 0,
        "x = eval(a)  # noqa: E501\n": 1,
        "# reviewbot: ignore-next-line\nx = eval(a)\n": 0,
        "# reviewbot: ignore-next-line\ny = 1\nx = eval(a)\n": 1,
    }
    for src, expected in cases.items():
        assert len(ruleset.run(all_added("a.py", src), src)) == expected, src


def test_ruleset_from_repo_config() -> None:
    from reviewbot.core.config_schema import RulesConfig

    settings = RulesConfig.model_validate(
        {
            "disable": ["py-*"],
            "enable": ["py-eval-exec"],
            "severity": {"py-eval-exec": "critical"},
            "custom": [
                {
                    "id": "no-todo-go",
                    "languages": ["go"],
                    "severity": "nit",
                    "category": "maintainability",
                    "message": "TODO without an issue link.",
                    "query": '((comment) @match (#match? @match "TODO") (#not-match? @match "TODO\\\\(#"))',
                }
            ],
        }
    )
    ruleset = ruleset_from_config(settings)
    ids = {r.id for r in ruleset.rules}
    assert "py-eval-exec" in ids and "py-bare-except" not in ids and "go-defer-in-loop" in ids
    src = "try:\n    eval(x)\nexcept:\n    pass\n"
    assert [(c.rule_id, c.severity) for c in ruleset.run(all_added("a.py", src), src)] == [
        ("py-eval-exec", "critical")
    ]
    go = "package p\n\n// TODO fix\n// TODO(#12) later\nfunc f() {}\n"
    assert [c.line for c in ruleset.run(all_added("p.go", go), go)] == [3]


def test_line_numbers_follow_newlines_only() -> None:
    # A form feed is a line break for str.splitlines() but not for tree-sitter or diffs.
    src = "x = 1\x0c\r\ny = eval(a)\r\n"
    [cand] = RuleSet(rules=[rule()]).run(all_added("a.py", src), src)
    assert (cand.line, cand.quoted_code) == (2, "y = eval(a)")


@pytest.mark.shared
def test_real_prs_matches_around_each_hunk_equal_one_range_over_all_added_lines(shared_data: Path) -> None:
    """run() queries only the rows of each hunk's added lines; every match that overlaps an added
    line comes out as from one range spanning them all, in the same order."""
    from reviewbot.review.diff import parse_diff

    ruleset = build_ruleset(load_builtin_rules())
    compared = 0
    for pr in sorted(p for p in (shared_data / "real-prs").iterdir() if (p / "diff.patch").is_file()):
        for file in parse_diff((pr / "diff.patch").read_text(encoding="utf-8")):
            after = pr / "after" / file.path
            added = sorted(file.added_line_numbers())
            if file.language is None or not added or not after.is_file():
                continue
            ts = parser(file.language)
            if ts is None or ruleset.compiled(file.language).query is None:
                continue
            tree = ts.parse(after.read_bytes())
            spans = [(min(n) - 1, max(n)) for n in (h.added_line_numbers() for h in file.hunks) if n]

            def on_added(found: list, added: list[int] = added) -> list:
                return [m for m in found if any(m.start_line <= n <= m.end_line for n in added)]

            one = ruleset.matches(file.language, tree, rows=(added[0] - 1, added[-1]))
            per_hunk = ruleset.matches(file.language, tree, row_ranges=spans)
            assert on_added(per_hunk) == on_added(one), (pr.name, file.path)
            compared += len(on_added(one))
    assert compared > 0
