"""docs/rules.md, generated from the built-in rule packs (rules/*.yml) and measured precision.

Why generated: a hand-written list drifts from the packs; tests/test_rules_doc.py fails when
docs/rules.md is not what this module renders. Regenerate with `python -m reviewbot.review.rules_doc`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from reviewbot.core.roles import ROLES
from reviewbot.filter.acceptance import RULE_PRIOR, RULE_PRIOR_STRENGTH, measured_rule_precision
from reviewbot.review.rulespec import RuleSpec, default_roles

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _roles(rule: RuleSpec) -> str:
    on = list(rule.roles) if rule.roles is not None else list(default_roles(rule.category))
    off = [r for r in ROLES if r not in on]
    origin = "opted in" if rule.roles is not None else "default"
    return f"{', '.join(on)} ({origin}; off in {', '.join(off) or 'none'})"


def _precision(rule: RuleSpec, measured: Mapping[str, tuple[float, float]]) -> str:
    good, judged = measured.get(rule.id, (0.0, 0.0))
    prior = RULE_PRIOR.get(rule.severity, RULE_PRIOR["low"])
    score = (RULE_PRIOR_STRENGTH * prior + good) / (RULE_PRIOR_STRENGTH + judged)
    if not judged:
        return f"not measured; starts at {score:.2f}"
    return f"{good:g} of {judged:g} judged true; starts at {score:.2f}"


def render(rules: Sequence[RuleSpec], measured: Mapping[str, tuple[float, float]]) -> str:
    """The whole docs/rules.md text."""
    lines = [
        "# Built-in rules",
        "",
        "Generated from `rules/*.yml` by `python -m reviewbot.review.rules_doc` "
        "(tests/test_rules_doc.py checks",
        "it is current). Turn a rule off with `rules.disable`, an opt-in one on with `rules.enable`, change",
        "its severity with `rules.severity` (docs/configuration.md).",
        "",
        "**File roles.** Each file has a role from its path and its language's conventions (source, test,",
        "example, fixture, generated, vendored, docs: `reviewbot/core/roles.py`). "
        "Security, bug, correctness and",
        "performance rules run in source and docs only unless the rule lists its `roles`; other rules run",
        "everywhere except generated and vendored code.",
        "",
        "**Score.** A rule finding's acceptance score is its precision: the severity's starting value",
        f"(worth {RULE_PRIOR_STRENGTH:g} findings) updated by its judged findings on real repositories",
        "(`bench/rules_real_repos.py`, `reviewbot/data/rule_precision.json`) and then by the repository's",
        "own feedback on the rule.",
        "",
    ]
    query = [r for r in rules if r.query]
    lines += [
        "| id | languages | severity | category | on by default | roles | measured precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in query:
        lines.append(
            f"| [`{r.id}`](#{r.id}) | {', '.join(r.languages)} | {r.severity} | {r.category} | "
            f"{'yes' if r.enabled else 'no (opt-in)'} | {_roles(r)} | {_precision(r, measured)} |"
        )
    for r in query:
        lines += ["", f"## {r.id}", "", _cell(r.message), ""]
        if r.paths:
            lines += [f"Paths: {', '.join(f'`{p}`' for p in r.paths)}.", ""]
        if r.examples.positive:
            lang = r.languages[0]
            lines += ["Fires on:", "", f"```{lang}", r.examples.positive[0].rstrip("\n"), "```"]
    instructions = [r for r in rules if r.instruction and not r.query]
    if instructions:
        lines += ["", "## LLM instructions", "", "Guidance added to the LLM prompt (no query of their own):"]
        lines.append("")
        lines += [
            f"- `{r.id}` ({', '.join(r.languages)}, {r.severity} {r.category}"
            f"{'' if r.enabled else ', opt-in'}): {_cell(r.instruction or '')}"
            for r in instructions
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] = ()) -> int:
    from reviewbot.review.rules import load_builtin_rules

    text = render(load_builtin_rules(), measured_rule_precision())
    target = Path(argv[0]) if argv else DOC
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
