"""docs/rules.md is what reviewbot.review.rules_doc renders from the shipped packs."""

from __future__ import annotations

from reviewbot.filter.acceptance import measured_rule_precision
from reviewbot.review.rules import load_builtin_rules
from reviewbot.review.rules_doc import DOC, render


def test_rules_doc_is_current() -> None:
    expected = render(load_builtin_rules(), measured_rule_precision())
    assert DOC.read_text(encoding="utf-8") == expected, "run: python -m reviewbot.review.rules_doc"


def test_rules_doc_lists_every_query_rule_with_its_roles_and_precision() -> None:
    rules = load_builtin_rules()
    text = render(rules, {"py-eval-exec": (3.0, 4.0)})
    for r in rules:
        if r.query:
            assert f"## {r.id}\n" in text
    row = next(line for line in text.splitlines() if line.startswith("| [`py-eval-exec`]"))
    assert "3 of 4 judged true" in row and "off in test" in row
