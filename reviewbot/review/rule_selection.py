"""Which rules run for a repository: the built-in packs with its config folded in (enable /
disable / severity / custom rules), unknown rule names reported, and each rule's own examples
checked (the test that every rule fires on its positives and not on its negatives).

Pure. The rules themselves and their engine are reviewbot.review.rules.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from reviewbot.core.domain import SEVERITIES, DiffLine, FileDiff, Hunk
from reviewbot.core.globs import wildcard_match
from reviewbot.core.languages import language_for_path, parser
from reviewbot.review.rules import (
    RuleError,
    RuleSet,
    check_rule,
    concrete_languages,
    load_builtin_rules,
    source_lines,
)
from reviewbot.review.rulespec import RuleSpec


def build_ruleset(
    builtin: list[RuleSpec],
    *,
    disable: Iterable[str] = (),
    enable: Iterable[str] = (),
    severity: Mapping[str, str] | None = None,
    custom: Iterable[RuleSpec] = (),
) -> RuleSet:
    """The active rules for a repo, from the built-ins and its `rules:` config.

    A rule is on by default unless its pack marks it `enabled: false` (opt-in). `disable` and
    `enable` hold ids or `*`/`?` wildcards; an exact id beats a wildcard and, at the same
    precision, `enable` beats `disable` (as RepoConfig.rules documents). Severities are overridden
    by id; a custom rule is added, replacing a built-in with the same id. Ids that name no rule
    become warnings on the RuleSet; a custom query that compiles for none of its languages, or a
    severity that does not exist, is a RuleError.
    """
    severity = dict(severity or {})
    disable, enable, custom = list(disable), list(enable), list(custom)
    warnings: list[str] = []

    for rule_id, level in severity.items():
        if level not in SEVERITIES:
            raise RuleError(f"rules.severity.{rule_id}: {level!r} is not one of {', '.join(SEVERITIES)}")

    builtin_ids = {r.id for r in builtin}
    custom_ids: set[str] = set()
    for rule in custom:
        check_rule(rule, source="rules.custom")
        if rule.id in custom_ids:
            raise RuleError(f"rules.custom: rule {rule.id!r}: duplicate rule id")
        custom_ids.add(rule.id)
        if rule.id in builtin_ids:
            warnings.append(f"rules.custom: rule {rule.id!r} replaces the built-in rule with that id")
    for unknown in unknown_rule_names(builtin_ids | custom_ids, disable, enable, list(severity)):
        warnings.append(f"rules.{unknown.key}: {unknown.name!r} names no rule (ignored){unknown.hint}")

    replaced = {r.id: r for r in custom}
    candidates = [*(replaced.pop(r.id, r) for r in builtin), *replaced.values()]
    active: list[RuleSpec] = []
    for rule in candidates:
        if not _rule_on(rule, enable, disable):
            continue
        if rule.id in severity:
            rule = rule.model_copy(update={"severity": severity[rule.id]})
        active.append(rule)

    ruleset = RuleSet(rules=active, warnings=warnings, untrusted=frozenset(custom_ids))
    custom_active = [r for r in active if r.id in custom_ids and r.query]
    if custom_active:
        probe = RuleSet(rules=custom_active)
        probe.validate()
        ruleset.skipped.update(probe.skipped)
    return ruleset


class RulesSettings(Protocol):
    """What `ruleset_from_config` reads: RepoConfig.rules (reviewbot.core.config_schema.RulesConfig) fits."""

    @property
    def disable(self) -> Sequence[str]: ...
    @property
    def enable(self) -> Sequence[str]: ...
    @property
    def severity(self) -> Mapping[str, str]: ...
    @property
    def custom(self) -> Sequence[RuleSpec]: ...


def ruleset_from_config(settings: RulesSettings, builtin: list[RuleSpec] | None = None) -> RuleSet:
    """`build_ruleset` over the built-in packs (or `builtin`) with a repo's `rules:` settings."""
    return build_ruleset(
        load_builtin_rules() if builtin is None else builtin,
        disable=settings.disable,
        enable=settings.enable,
        severity=settings.severity,
        custom=list(settings.custom),
    )


def _id_match(pattern: str, rule_id: str) -> bool:
    if pattern == rule_id:
        return True
    if "*" not in pattern and "?" not in pattern:
        return False
    return wildcard_match(pattern, rule_id)


def rule_switched_on(rule_id: str, enable: Sequence[str], disable: Sequence[str], *, default: bool) -> bool:
    """The repo's `rules.enable` / `rules.disable` on one rule id: exact ids beat globs, and at the
    same precision `enable` beats `disable`; `default` when neither names it."""
    if rule_id in enable:
        return True
    if rule_id in disable:
        return False
    if any(_id_match(p, rule_id) for p in enable):
        return True
    if any(_id_match(p, rule_id) for p in disable):
        return False
    return default


def _rule_on(rule: RuleSpec, enable: list[str], disable: list[str]) -> bool:
    return rule_switched_on(rule.id, enable, disable, default=rule.enabled)


@dataclass(frozen=True, slots=True)
class UnknownRuleName:
    """An id (or wildcard) in rules.disable / enable / severity that names no rule."""

    key: str  # "disable", "enable" or "severity"
    index: int  # position in the list (disable, enable) or in the mapping (severity)
    name: str
    hint: str  # "; did you mean 'x'?" or ""


def unknown_rule_names(
    known: set[str], disable: Sequence[str], enable: Sequence[str], severity: Sequence[str]
) -> list[UnknownRuleName]:
    """Every name in the three settings that matches none of the `known` rule ids, with a
    did-you-mean: one list shared by the review's notes and `reviewbot config check`."""
    out = []
    for key, names in (("disable", disable), ("enable", enable), ("severity", severity)):
        for index, name in enumerate(names):
            if not any(_id_match(name, rule_id) for rule_id in known):
                out.append(UnknownRuleName(key, index, name, _did_you_mean(name, known)))
    return out


def _did_you_mean(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------- examples


def all_added(path: str, source: str, language: str | None = None) -> FileDiff:
    """A FileDiff that adds every line of `source` (a new file), for running rule examples."""
    lines = source_lines(source)
    hunk = Hunk(
        old_start=0,
        old_len=0,
        new_start=1,
        new_len=len(lines),
        lines=[DiffLine(kind="added", text=t, old_no=None, new_no=i) for i, t in enumerate(lines, start=1)],
    )
    return FileDiff(
        path=path, old_path=None, status="added", hunks=[hunk], language=language or language_for_path(path)
    )


def check_examples(rule: RuleSpec) -> list[str]:
    """Problems with a query rule's examples: a positive that does not fire, a negative that does.

    Each example runs on every grammar the rule covers where it parses cleanly; a positive must
    run on at least one grammar. Path globs are ignored (examples are about the query).
    """
    if not rule.query:
        return []
    ruleset = RuleSet(rules=[rule])
    problems: list[str] = []
    langs = concrete_languages(rule)
    for lang in langs:
        ruleset.compiled(lang)
    compiled_langs = [lang for lang in langs if (rule.id, lang) not in ruleset.skipped]
    if not compiled_langs:
        return [f"{rule.id}: {ruleset.skipped[(rule.id, langs[0])]}" if langs else f"{rule.id}: no languages"]
    if not rule.examples.positive:
        problems.append(f"{rule.id}: no positive examples")
    for kind, examples in (("positive", rule.examples.positive), ("negative", rule.examples.negative)):
        for number, example in enumerate(examples, start=1):
            ran = 0
            for lang in compiled_langs:
                ts_parser = parser(lang)
                if ts_parser is None:
                    continue
                tree = ts_parser.parse(example.encode("utf-8"))
                if tree.root_node.has_error:
                    continue
                ran += 1
                hits = ruleset.matches(lang, tree)
                if kind == "positive" and not hits:
                    problems.append(f"{rule.id}: positive example {number} does not match ({lang})")
                if kind == "negative" and hits:
                    problems.append(
                        f"{rule.id}: negative example {number} matches at line {hits[0].start_line} ({lang})"
                    )
            if not ran:
                problems.append(
                    f"{rule.id}: {kind} example {number} parses cleanly in none of {compiled_langs}"
                )
    return problems
