"""Rule packs (YAML) and the engine that turns tree-sitter query matches into candidates.

A rule is a `RuleSpec`: a tree-sitter query (a deterministic finding), an instruction (guidance for
the LLM prompt), or both. Built-in packs live in the top-level `rules/` folder, shipped inside the
package as `reviewbot/builtin_rules`. A repo tunes them through its config (disable / enable /
severity / custom), which `build_ruleset` folds into one `RuleSet`.

Only code the PR adds can trigger a query rule: a match counts when its `@match` node overlaps an
added line, so pre-existing problems in context lines are never re-reported.

A repo's custom query rules are untrusted: each runs as its own query, its `#match?` regexes on
RE2 (reviewbot.review.query_predicates), within a time budget per review; a rule that overruns it is
disabled for the rest of the review and named in `RuleSet.overrun` (the review's notes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from tree_sitter import Node, Query, QueryCursor, Tree

from reviewbot.core.domain import Candidate, FileDiff
from reviewbot.core.globs import path_selected
from reviewbot.core.languages import SUPPORTED, grammar, language_for_path, matches_language, parser
from reviewbot.core.roles import file_role
from reviewbot.review.query_predicates import PredicateError, Predicates, rewrite
from reviewbot.review.query_predicates import check as check_regexes
from reviewbot.review.rulespec import RuleSpec

#: The capture that anchors a finding; every query must define it.
MATCH_CAPTURE = "match"
#: Rules may name this instead of a language to apply everywhere (instruction-only rules mostly).
ANY_LANGUAGE = "*"
RULE_CONFIDENCE = 0.9
_TITLE_MAX = 80
#: Seconds of query time one custom rule may spend in one review before it is disabled for it.
CUSTOM_RULE_BUDGET = 2.0
#: ...and all of a repo's custom rules together (a config may hold up to 50 of them).
CUSTOM_RULES_TOTAL_BUDGET = 6.0
#: A custom rule's query runs over this many rows at a time; the budget is checked in between.
_SLICE_ROWS = 200
#: In-progress matches a custom rule's cursor may hold (tree-sitter's own cap is 4 billion).
_CUSTOM_MATCH_LIMIT = 256


class RuleError(ValueError):
    """A rule pack or rule that cannot be used; the message names the file and/or rule id."""


class RuleQueryError(RuleError):
    """A rule's tree-sitter query does not compile for any of the languages it names."""


# --------------------------------------------------------------------------- loading


def builtin_rules_dir() -> Path:
    """Where the built-in packs are: inside the installed package, or `rules/` in a checkout."""
    shipped = Path(__file__).resolve().parents[1] / "builtin_rules"
    if shipped.is_dir():
        return shipped
    # A checkout where the reviewbot/builtin_rules symlink was not materialised (e.g. Windows).
    return Path(__file__).resolve().parents[2] / "rules"


def load_pack(path: str | Path) -> list[RuleSpec]:
    """Load one pack file `{pack: name, rules: [...]}`; errors name the file and the rule id."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(f"{path}: cannot read rule pack: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: invalid YAML: {exc}") from exc
    return parse_pack(data, source=str(path))


def parse_pack(data: Any, *, source: str) -> list[RuleSpec]:
    """Validate an already-parsed pack; `source` names it in errors (a path or a config key)."""
    if not isinstance(data, dict) or "rules" not in data:
        raise RuleError(f"{source}: a rule pack is a mapping with 'pack' and 'rules' keys")
    unknown = sorted(set(data) - {"pack", "rules"})
    if unknown:
        raise RuleError(f"{source}: unknown pack key(s): {', '.join(unknown)}")
    raw_rules = data["rules"]
    if not isinstance(raw_rules, list):
        raise RuleError(f"{source}: 'rules' must be a list")
    return parse_rules(raw_rules, source=source)


def parse_rules(raw_rules: Iterable[Any], *, source: str) -> list[RuleSpec]:
    """Validate a list of rule mappings (a pack's or a config's custom rules)."""
    rules: list[RuleSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules):
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        label = f"rule {rule_id!r}" if rule_id else f"rule #{index + 1}"
        try:
            rule = RuleSpec.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'rule'}: {err['msg']}" for err in exc.errors()
            )
            raise RuleError(f"{source}: {label}: {problems}") from None
        if rule.id in seen:
            raise RuleError(f"{source}: {label}: duplicate rule id")
        seen.add(rule.id)
        check_rule(rule, source=source)
        rules.append(rule)
    return rules


def check_rule(rule: RuleSpec, *, source: str) -> None:
    """What RuleSpec alone cannot check: known languages and a query that captures @match."""
    label = f"rule {rule.id!r}"
    if rule.query is not None and MATCH_CAPTURE not in _capture_names(rule.query):
        raise RuleError(f"{source}: {label}: query must capture @{MATCH_CAPTURE} (the node it anchors on)")
    for lang in rule.languages:
        if lang != ANY_LANGUAGE and lang not in SUPPORTED:
            raise RuleError(
                f"{source}: {label}: unknown language {lang!r} (known: {', '.join(SUPPORTED)}, '*')"
            )
    if rule.query is not None and ANY_LANGUAGE in rule.languages:
        raise RuleError(f"{source}: {label}: a query rule must name its languages, not '*'")


def _capture_names(query: str) -> set[str]:
    return set(re.findall(r"@([A-Za-z_][\w.-]*)", query))


def load_builtin_rules() -> list[RuleSpec]:
    """Every rule of every built-in pack, in file order; rule ids are unique across packs."""
    return list(_load_builtin_cached())


@cache
def _load_builtin_cached() -> tuple[RuleSpec, ...]:
    directory = builtin_rules_dir()
    files = sorted(directory.glob("*.yml"))
    if not files:
        raise RuleError(f"{directory}: no built-in rule packs found (is the package installed fully?)")
    rules: list[RuleSpec] = []
    origin: dict[str, Path] = {}
    for file in files:
        for rule in load_pack(file):
            if rule.id in origin:
                raise RuleError(f"{file}: rule {rule.id!r}: id already defined in {origin[rule.id].name}")
            origin[rule.id] = file
            rules.append(rule)
    return tuple(rules)


# --------------------------------------------------------------------------- matching
# Path globs: reviewbot.core.globs.path_selected (the one dialect).


#: Inline markers that silence rules on a line: ours (optionally naming rule ids) and the common
#: security-linter ones (an author who wrote `# nosec` has already reviewed the line).
#: Every alternative fails or succeeds at a start within its own whitespace run or literal, so a
#: search is linear. `noqa: ... S123` is checked apart (_NOQA, then _BANDIT_CODE after the first
#: `noqa:`): as `noqa:[^\n]*\bS\d{3}` every `noqa:` rescanned the rest of the line, and a line of
#: 10,000 of them cost 13 s.
_SUPPRESS_SAME_LINE = re.compile(
    r"reviewbot[:-]\s*+ignore(?!-next-line)(?:\[(?P<ids>[^\]]*+)\])?"
    r"|\bnosec\b|//\s*+nolint\b|eslint-disable-line"
)
_NOQA = re.compile(r"\bnoqa:")
_BANDIT_CODE = re.compile(r"\bS\d{3}")
_SUPPRESS_NEXT_LINE = re.compile(
    r"reviewbot[:-]\s*+ignore-next-line(?:\[(?P<ids>[^\]]*+)\])?|eslint-disable-next-line"
)


def suppressed(rule_id: str, lines: list[str], start_line: int, end_line: int) -> bool:
    """Whether an inline comment silences `rule_id` on lines start..end (1-based, inclusive).

    `reviewbot: ignore` (or `reviewbot: ignore[id, ...]`) on a line of the match, or
    `reviewbot: ignore-next-line` on the line before it; also `nosec`, `noqa: S...`, `nolint` and
    eslint's disable-line comments.
    """

    def hit(pattern: re.Pattern[str], text: str) -> bool:
        found = pattern.search(text)
        noqa = _NOQA.search(text) if pattern is _SUPPRESS_SAME_LINE else None
        if (
            noqa is not None
            and (found is None or noqa.start() < found.start())
            and _BANDIT_CODE.search(text, noqa.end()) is not None
        ):
            return True  # the leftmost marker is a `noqa: ... S123`
        if found is None:
            return False
        ids = found.groupdict().get("ids")
        return ids is None or rule_id in {part.strip() for part in ids.split(",")}

    for number in range(start_line, end_line + 1):
        if 0 < number <= len(lines) and hit(_SUPPRESS_SAME_LINE, lines[number - 1]):
            return True
    return 1 < start_line <= len(lines) + 1 and hit(_SUPPRESS_NEXT_LINE, lines[start_line - 2])


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One query match: the rule and the new-file line span of its @match node (1-based)."""

    rule: RuleSpec
    start_line: int
    end_line: int


@dataclass(slots=True)
class _Compiled:
    """All trusted query rules for one grammar folded into one Query, so a file is walked once;
    each untrusted (custom) rule in a Query of its own, so its time is its own."""

    query: Query | None
    #: pattern index -> rule, for every pattern of the combined query
    rule_of_pattern: list[RuleSpec]
    own: list[tuple[RuleSpec, Query]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.query is None and not self.own


def _query(language: str, text: str) -> Query:
    """Compile `text` for `language`, memoised: compiling costs ~1-10 ms a rule and grammar, and
    the same packs are compiled for every review (a Query is immutable; cursors are per run)."""
    query, error = _compiled_or_error(language, text)
    if query is None:
        raise error if error is not None else RuleError(f"cannot compile a query for {language}")
    return query


@lru_cache(maxsize=512)
def _compiled_or_error(language: str, text: str) -> tuple[Query | None, Exception | None]:
    """The memo behind `_query`; failures are remembered too (a JavaScript rule that does not
    compile for the TypeScript grammar would otherwise be compiled again on every review)."""
    lang = grammar(language)
    if lang is None:
        return None, RuleError(f"no grammar installed for {language}")
    rewritten, regexes = rewrite(text)  # #match? runs on RE2 (linear), not on Python's re
    try:
        check_regexes(regexes)
        return Query(lang, rewritten), None
    except PredicateError as exc:
        return None, exc
    except Exception as exc:  # QueryError
        return None, exc


def source_lines(source: str) -> list[str]:
    """Lines as tree-sitter and diffs count them: split on '\\n' only (not on form feeds etc.)."""
    lines = [line.removesuffix("\r") for line in source.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _node_lines(node: Node) -> tuple[int, int]:
    start = node.start_point.row + 1
    end_row = node.end_point.row
    if node.end_point.column == 0 and end_row > node.start_point.row:
        end_row -= 1  # a node ending at column 0 ends on the previous line
    return start, end_row + 1


def _rule_applies(rule: RuleSpec, path: str | None, role: str | None) -> bool:
    """The rule's `paths` select the file and it runs in the file's role (no path known: it does)."""
    if path is None:
        return True
    if rule.paths and not path_selected(path, rule.paths):
        return False
    return role is None or rule.runs_in(role)


def _add_matches(
    rule: RuleSpec,
    nodes: Sequence[Node],
    out: list[RuleMatch],
    seen: set[tuple[int, tuple[tuple[int, int], ...]]] | None = None,
    pattern: int = 0,
) -> None:
    """One match's @match nodes as RuleMatches. With `seen`, a match met again (the same pattern
    over the same nodes, in a later row range or slice) is added once."""
    if seen is not None:
        key = (pattern, tuple((node.start_byte, node.end_byte) for node in nodes))
        if key in seen:
            return
        seen.add(key)
    for node in nodes:
        start, end = _node_lines(node)
        out.append(RuleMatch(rule=rule, start_line=start, end_line=end))


def concrete_languages(rule: RuleSpec) -> list[str]:
    """The grammars a rule's query may run on: each named language plus its family."""
    out: list[str] = []
    for lang in SUPPORTED:
        if any(matches_language(lang, wanted) for wanted in rule.languages):
            out.append(lang)
    return out


def _short_title(message: str) -> str:
    """The message's first clause (up to '.', ';' or ':'), cut to a headline's length."""
    first = message.strip().split("\n", 1)[0]
    clause = re.split(r"(?<=[.;:!?])\s", first, maxsplit=1)[0].rstrip(".;:")
    if len(clause) <= _TITLE_MAX:
        return clause
    return clause[: _TITLE_MAX - 1].rsplit(" ", 1)[0] + "…"


def rule_title(rule: RuleSpec) -> str:
    """The headline of a rule's findings: its `title`, or the short form of its message."""
    return rule.title or _short_title(rule.message)


@dataclass(slots=True)
class RuleSet:
    """The active rules for one repo, with their queries compiled lazily once per grammar."""

    rules: list[RuleSpec]
    warnings: list[str] = field(default_factory=list)
    #: (rule id, language) -> why the rule's query does not run on that grammar
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    #: ids of the repo's own rules: each runs alone, under `budget` seconds per review
    untrusted: frozenset[str] = frozenset()
    budget: float = CUSTOM_RULE_BUDGET
    total_budget: float = CUSTOM_RULES_TOTAL_BUDGET
    #: rule id -> why it was disabled during this review (it overran its budget)
    overrun: dict[str, str] = field(default_factory=dict)
    _spent: dict[str, float] = field(default_factory=dict, repr=False)
    _compiled: dict[str, _Compiled] = field(default_factory=dict, repr=False)

    @property
    def query_rules(self) -> list[RuleSpec]:
        return [r for r in self.rules if r.query]

    def rule(self, rule_id: str) -> RuleSpec | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    # -- compilation

    def compiled(self, language: str) -> _Compiled:
        """The combined query for `language` (compiled on first use, then cached)."""
        found = self._compiled.get(language)
        if found is None:
            found = self._compile(language)
            self._compiled[language] = found
        return found

    def _compile(self, language: str) -> _Compiled:
        lang = grammar(language)
        parts: list[str] = []
        owners: list[RuleSpec] = []
        own: list[tuple[RuleSpec, Query]] = []
        for rule in self.query_rules:
            if language not in concrete_languages(rule):
                continue
            if lang is None:
                self.skipped[(rule.id, language)] = f"no grammar installed for {language}"
                continue
            try:
                single = _query(language, rule.query or "")
            except Exception as exc:  # QueryError, or a bad regex in a #match? predicate
                self.skipped[(rule.id, language)] = f"query does not compile for {language}: {exc}"
                continue
            if rule.id in self.untrusted:
                own.append((rule, single))
                continue
            parts.append(rule.query or "")
            owners.extend([rule] * single.pattern_count)
        if not parts or lang is None:
            return _Compiled(query=None, rule_of_pattern=[], own=own)
        query = _query(language, "\n".join(parts))
        if query.pattern_count != len(owners):  # pragma: no cover - tree-sitter invariant
            raise RuleError(
                f"{language}: combined query has {query.pattern_count} patterns, expected {len(owners)}"
            )
        return _Compiled(query=query, rule_of_pattern=owners, own=own)

    def validate(self) -> None:
        """Compile every query rule for every grammar it covers; raise if one compiles for none."""
        for language in SUPPORTED:
            self.compiled(language)
        for rule in self.query_rules:
            langs = concrete_languages(rule)
            failures = [self.skipped[(rule.id, lang)] for lang in langs if (rule.id, lang) in self.skipped]
            if langs and len(failures) == len(langs):
                raise RuleQueryError(f"rule {rule.id!r}: {failures[0]}")

    # -- running

    def matches(
        self,
        language: str,
        tree: Tree,
        *,
        rows: tuple[int, int] | None = None,
        path: str | None = None,
        row_ranges: Sequence[tuple[int, int]] | None = None,
    ) -> list[RuleMatch]:
        """Every @match of the rules for `language` in `tree`, optionally only within `rows`.

        `rows` is a 0-based half-open row range; matches intersecting it are returned. When `path`
        is given, rules whose path globs exclude it, or that do not run in its role (test,
        example, fixture... see reviewbot.core.roles), are skipped. `row_ranges` (sorted, disjoint,
        instead of `rows`): the matches intersecting any of them, each once, in the order one range
        spanning them all would give for the matches that share a start line (a match spanning
        two ranges is first met in the earlier one).
        """
        compiled = self.compiled(language)
        out = self._trusted_matches(compiled, tree, rows=rows, path=path, row_ranges=row_ranges)
        for rule, query in compiled.own:
            if rule.id not in self.overrun:
                out.extend(self._own_matches(rule, query, tree, rows=rows, path=path, row_ranges=row_ranges))
        return out

    def _trusted_matches(
        self,
        compiled: _Compiled,
        tree: Tree,
        *,
        rows: tuple[int, int] | None,
        path: str | None,
        row_ranges: Sequence[tuple[int, int]] | None,
    ) -> list[RuleMatch]:
        if compiled.query is None:
            return []
        role = file_role(path) if path is not None else None
        cursor = QueryCursor(compiled.query)
        predicate = Predicates()
        if row_ranges is None:
            if rows is not None:
                cursor.set_point_range((rows[0], 0), (rows[1], 0))
            batches = [cursor.matches(tree.root_node, predicate=predicate)]  # type: ignore[call-arg]
        else:
            batches = []
            for first, stop in row_ranges:
                cursor.set_point_range((first, 0), (stop, 0))
                batches.append(cursor.matches(tree.root_node, predicate=predicate))  # type: ignore[call-arg]
        out: list[RuleMatch] = []
        seen: set[tuple[int, tuple[tuple[int, int], ...]]] | None = (
            set() if row_ranges is not None and len(row_ranges) > 1 else None  # ranges can meet a match twice
        )
        for pattern_index, captures in (match for batch in batches for match in batch):
            rule = compiled.rule_of_pattern[pattern_index]
            if _rule_applies(rule, path, role):
                _add_matches(rule, captures.get(MATCH_CAPTURE, []), out, seen, pattern_index)
        return out

    def _own_matches(
        self,
        rule: RuleSpec,
        query: Query,
        tree: Tree,
        *,
        rows: tuple[int, int] | None,
        path: str | None,
        row_ranges: Sequence[tuple[int, int]] | None,
    ) -> list[RuleMatch]:
        """One untrusted rule's matches, a slice of rows at a time, within what is left of its budget."""
        if not _rule_applies(rule, path, file_role(path) if path is not None else None):
            return []
        if row_ranges is None:
            row_ranges = [rows if rows is not None else (0, tree.root_node.end_point.row + 1)]
        started = time.monotonic()
        own_left = self.budget - self._spent.get(rule.id, 0.0)
        total_left = self.total_budget - sum(self._spent.values())
        predicate = Predicates(deadline=started + min(own_left, total_left))
        cursor = QueryCursor(query, match_limit=_CUSTOM_MATCH_LIMIT)
        out: list[RuleMatch] = []
        seen: set[tuple[int, tuple[tuple[int, int], ...]]] = set()  # slices can meet a match twice
        try:
            for first, stop in row_ranges:
                for lo in range(first, max(stop, first + 1), _SLICE_ROWS):
                    if predicate.deadline is not None and time.monotonic() > predicate.deadline:
                        predicate.overran = True
                    if predicate.overran:
                        return []
                    cursor.set_point_range((lo, 0), (min(lo + _SLICE_ROWS, stop), 0))
                    for _index, captures in cursor.matches(tree.root_node, predicate=predicate):  # type: ignore[call-arg]
                        _add_matches(rule, captures.get(MATCH_CAPTURE, []), out, seen)
            if predicate.overran:
                return []
            return out
        finally:
            self._spent[rule.id] = self._spent.get(rule.id, 0.0) + time.monotonic() - started
            if predicate.overran or self._spent[rule.id] > self.budget:
                which = (
                    f"its {self.budget:g} s budget"
                    if own_left <= total_left
                    else f"the {self.total_budget:g} s budget of all custom rules"
                )
                self.overrun.setdefault(
                    rule.id,
                    f"custom rule {rule.id!r} overran {which} for this review: disabled for the rest "
                    "of it (simplify its query or its #match? regex)",
                )

    def run(self, file: FileDiff, new_source: str, *, tree: Tree | None = None) -> list[Candidate]:
        """Candidates from the query rules for the code this file's diff adds."""
        language = file.language or language_for_path(file.path)
        added = sorted(file.added_line_numbers())
        if language is None or not added or file.is_binary:
            return []
        if self.compiled(language).empty:
            return []
        if tree is None:
            ts_parser = parser(language)
            if ts_parser is None:
                return []
            tree = ts_parser.parse(new_source.encode("utf-8"))
        hunk_of: dict[int, int] = {}
        spans: list[tuple[int, int]] = []  # per hunk, the rows from its first to its last added line
        for index, hunk in enumerate(file.hunks):
            numbers = hunk.added_line_numbers()
            for number in numbers:
                hunk_of[number] = index
            if numbers:
                spans.append((min(numbers) - 1, max(numbers)))
        ranges: list[tuple[int, int]] = []
        for first, stop in sorted(spans):
            if ranges and first <= ranges[-1][1]:
                ranges[-1] = (ranges[-1][0], max(ranges[-1][1], stop))
            else:
                ranges.append((first, stop))
        # Only the rows around added lines: a file's hunks are often far apart, and the query over
        # everything between them would cost a fifth of the parse. Same matches as one range from
        # the first to the last added line, less the ones that overlap no added line anyway.
        found = self.matches(language, tree, path=file.path, row_ranges=ranges)
        if not found:
            return []
        lines = source_lines(new_source)  # only when something matched: most files match nothing
        candidates: list[Candidate] = []
        seen: set[tuple[str, int]] = set()
        for match in sorted(found, key=lambda m: (m.start_line, m.rule.id)):
            overlap = [n for n in added if match.start_line <= n <= match.end_line]
            if not overlap:
                continue
            line = overlap[0]
            same_hunk = [n for n in overlap if hunk_of.get(n) == hunk_of.get(line)]
            end_line = same_hunk[-1] if same_hunk[-1] > line else None
            key = (match.rule.id, line)
            if key in seen or suppressed(match.rule.id, lines, match.start_line, match.end_line):
                continue
            seen.add(key)
            rule = match.rule
            candidates.append(
                Candidate(
                    id=f"rule:{rule.id}:{file.path}:{line}",
                    path=file.path,
                    line=line,
                    end_line=end_line,
                    side="RIGHT",
                    body=rule.message.strip(),
                    title=rule_title(rule),
                    severity=rule.severity,
                    category=rule.category,
                    confidence=RULE_CONFIDENCE,
                    quoted_code=lines[line - 1] if 0 < line <= len(lines) else None,
                    source=f"rule:{rule.id}",
                    rule_id=rule.id,
                    language=language,
                    on_added_line=True,
                    quote_verified=True,
                )
            )
        return candidates

    def instructions_for(self, path: str, language: str | None) -> list[str]:
        """Instruction texts of the rules that apply to this file, for the LLM prompt."""
        language = language or language_for_path(path)
        out: list[str] = []
        for rule in self.rules:
            if not rule.instruction:
                continue
            applies = ANY_LANGUAGE in rule.languages or any(
                matches_language(language, wanted) for wanted in rule.languages
            )
            if applies and (not rule.paths or path_selected(path, rule.paths)):
                out.append(rule.instruction.strip())
        return out
