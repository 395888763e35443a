"""The config a review runs with: the merged RepoConfig and the RuleSet built from its `rules:`.

The App, `reviewbot review` and `reviewbot config check` load a repository's config only through
`load_review_config`, so every config the App refuses (invalid YAML or keys, a custom rule without
`@match`, a query that compiles for none of its languages) is refused by `config check` too, with
the same `file:line: key: message` lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reviewbot.core.config import (
    CONFIG_PATH,
    ORG_CONFIG_FILENAME,
    ConfigError,
    ConfigIssue,
    key_lines,
    load_config,
)
from reviewbot.core.config_schema import RepoConfig
from reviewbot.review.rule_selection import ruleset_from_config, unknown_rule_names
from reviewbot.review.rules import RuleError, RuleSet, load_builtin_rules
from reviewbot.review.rulespec import RuleSpec

_RULE_ID = re.compile(r"rule '([^']+)'")


@dataclass(frozen=True, slots=True)
class ReviewConfig:
    """A repository's merged config and its active rules."""

    config: RepoConfig
    rules: RuleSet


@dataclass(frozen=True, slots=True)
class _Layers:
    """The raw texts, to point a message at the line that set a key (the repo file wins)."""

    repo_text: str | None
    org_text: str | None
    filename: str
    org_filename: str

    def locate(self, *path: str | int) -> tuple[str, int]:
        """(file, line) of the deepest prefix of `path` set in the repo file, else the org file."""
        for text, name in ((self.repo_text, self.filename), (self.org_text, self.org_filename)):
            if not text:
                continue
            lines = key_lines(text, name)
            for n in range(len(path), 0, -1):
                if path[:n] in lines:
                    return name, lines[path[:n]]
        return self.filename, 1


def load_review_config(
    repo_text: str | None,
    org_text: str | None = None,
    *,
    filename: str = CONFIG_PATH,
    org_filename: str = ORG_CONFIG_FILENAME,
    builtin: list[RuleSpec] | None = None,
) -> ReviewConfig:
    """Merge and validate the config, then build its rule set. Raises ConfigError for every
    reason a review would refuse it."""
    config = load_config(repo_text, org_text, filename=filename, org_filename=org_filename)
    layers = _Layers(repo_text, org_text, filename, org_filename)
    try:
        rules = ruleset_from_config(config.rules, builtin)
    except RuleError as exc:
        raise ConfigError([_rule_issue(str(exc), config, layers)]) from None
    return ReviewConfig(config, rules)


def unknown_rule_issues(
    config: RepoConfig,
    repo_text: str | None,
    org_text: str | None = None,
    *,
    filename: str = CONFIG_PATH,
    org_filename: str = ORG_CONFIG_FILENAME,
    builtin: list[RuleSpec] | None = None,
) -> list[ConfigIssue]:
    """Ids in rules.disable / enable / severity that name no rule, with a did-you-mean. A review
    ignores them (with a note); `config check` treats them as errors, since each is a typo or a
    rule that was renamed."""
    layers = _Layers(repo_text, org_text, filename, org_filename)
    known = {r.id for r in (load_builtin_rules() if builtin is None else builtin)}
    known |= {r.id for r in config.rules.custom}
    issues = []
    for u in unknown_rule_names(
        known, config.rules.disable, config.rules.enable, list(config.rules.severity)
    ):
        sub: str | int = u.name if u.key == "severity" else u.index
        file, line = layers.locate("rules", u.key, sub)
        key = f"rules.{u.key}.{u.name}" if u.key == "severity" else f"rules.{u.key}[{u.index}]"
        issues.append(ConfigIssue(file, line, key, f"{u.name!r} names no rule{u.hint}"))
    return issues


def _rule_issue(message: str, config: RepoConfig, layers: _Layers) -> ConfigIssue:
    found = _RULE_ID.search(message)
    rule_id = found.group(1) if found else None
    for index, rule in enumerate(config.rules.custom):
        if rule.id == rule_id:
            file, line = layers.locate("rules", "custom", index)
            return ConfigIssue(file, line, f"rules.custom[{index}]", message.removeprefix("rules.custom: "))
    file, line = layers.locate("rules")
    return ConfigIssue(file, line, "rules", message.removeprefix("rules."))
