"""Every rule id the README and docs name exists (a renamed rule must not leave the docs behind:
`py-print` and `py-eval` once sat in docs/configuration.md, matching nothing)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from reviewbot.review.rules import load_builtin_rules

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _named_ids(text: str, prefixes: set[str]) -> set[str]:
    alternatives = "|".join(sorted(prefixes))
    pattern = re.compile(r"(?<![\w./-])((?:" + alternatives + r")-[a-z0-9*][a-z0-9_.*-]*)")
    return {m.group(1).rstrip(".-") for m in pattern.finditer(text)}


def test_every_rule_id_in_the_docs_exists() -> None:
    builtin = {r.id for r in load_builtin_rules()}
    prefixes = {rule_id.split("-", 1)[0] for rule_id in builtin}
    problems = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        custom = set(re.findall(r"-\s+id:\s*([a-z0-9][a-z0-9_.-]*)", text))  # examples of custom rules
        for name in sorted(_named_ids(text, prefixes)):
            if name in builtin or name in custom:
                continue
            if "*" in name and fnmatch.filter(sorted(builtin), name):
                continue
            problems.append(f"{doc.relative_to(ROOT)}: {name!r} names no rule")
    assert problems == []


def test_the_check_finds_a_missing_rule() -> None:
    assert _named_ids('rules:\n  disable: [py-print, "js-*"]\n  severity: {py-eval: high}', {"py", "js"}) == {
        "py-print",
        "js-*",
        "py-eval",
    }
