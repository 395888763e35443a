"""The one vocabulary of severities and categories, and the words that map onto it.

The prompt parser (an LLM's reply), `reviewbot filter` (findings from other tools) and the
severity stage all read a free-form severity or category through this module, so one word means
one thing wherever it comes from. Two choices where the earlier tables disagreed:

- "severe" is `high`: `critical` is kept for words that say the change must not ship (blocker,
  fatal, urgent, P0); "severe" grades a problem without saying that.
- "logic" is `bug`: a logic error makes the code do the wrong thing, a defect; `correctness`
  gathers the robustness family (error handling, concurrency, reliability).

Pure data and two functions; no I/O.
"""

from __future__ import annotations

import re

#: Ordered most to least severe; index = rank (0 is worst).
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "nit")
CATEGORIES: tuple[str, ...] = (
    "bug",
    "security",
    "performance",
    "correctness",
    "maintainability",
    "style",
    "docs",
    "tests",
)

#: Free-form severities seen from LLMs, linters and review tools -> our scale.
SEVERITY_WORDS: dict[str, str] = {
    "blocker": "critical",
    "fatal": "critical",
    "urgent": "critical",
    "severe": "high",
    "major": "high",
    "error": "high",
    "important": "high",
    "moderate": "medium",
    "warning": "medium",
    "warn": "medium",
    "normal": "medium",
    "minor": "low",
    "info": "low",
    "information": "low",
    "informational": "low",
    "note": "low",
    "suggestion": "low",
    "hint": "nit",
    "nitpick": "nit",
    "trivial": "nit",
    "optional": "nit",
    "style": "nit",
}

#: Free-form categories (keys lower case, '_' and '-' read as spaces) -> ours.
CATEGORY_WORDS: dict[str, str] = {
    "logic": "bug",
    "defect": "bug",
    "code defect": "bug",
    "error": "bug",
    "crash": "bug",
    "bugs": "bug",
    "vulnerability": "security",
    "security vulnerability": "security",
    "safety": "security",
    "injection": "security",
    "perf": "performance",
    "efficiency": "performance",
    "error handling": "correctness",
    "concurrency": "correctness",
    "reliability": "correctness",
    "robustness": "correctness",
    "readability": "maintainability",
    "maintainability and readability": "maintainability",
    "design": "maintainability",
    "complexity": "maintainability",
    "refactor": "maintainability",
    "best practice": "maintainability",
    "formatting": "style",
    "naming": "style",
    "typo": "style",
    "lint": "style",
    "documentation": "docs",
    "doc": "docs",
    "comments": "docs",
    "test": "tests",
    "testing": "tests",
    "test coverage": "tests",
}

_PRIORITY = re.compile(r"p[0-4]")


def normalise_severity(value: object) -> str | None:
    """A free-form severity ('Major', 'warning', 'P1'...) on our scale, or None when unknown."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower()
    if key in SEVERITIES:
        return key
    if _PRIORITY.fullmatch(key):
        return SEVERITIES[int(key[1])]
    return SEVERITY_WORDS.get(key)


def normalise_category(value: object) -> str | None:
    """A free-form category ('Code Defect', 'error-handling'...) as ours, or None when unknown."""
    if not isinstance(value, str):
        return None
    key = " ".join(value.strip().lower().replace("_", " ").replace("-", " ").split())
    if key in CATEGORIES:
        return key
    return CATEGORY_WORDS.get(key)


def severity_rank(severity: str) -> int:
    """0 for critical ... 4 for nit; unknown severities rank as 'low'."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        return SEVERITIES.index("low")


def at_least(severity: str, minimum: str) -> bool:
    """True when `severity` is as severe as `minimum` or more."""
    return severity_rank(severity) <= severity_rank(minimum)
