"""Calibrated severity and category for a candidate, from its claim, its rule and its text.

An LLM labels almost everything "high"; a rule's metadata is trustworthy but coarse. The text
itself says most: a hedged remark with no concrete failure ("consider", "might", "maybe") is
worth less than it claims, a nit marker means a nit, and naming a concrete failure ("crash",
"null pointer", "SQL injection", "race") is worth more. Pure functions, no state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from reviewbot.models import CATEGORIES, SEVERITIES, Candidate, severity_rank

#: Free-form severities seen from LLMs, linters and review tools -> our scale.
SEVERITY_ALIASES: dict[str, str] = {
    "blocker": "critical",
    "critical": "critical",
    "fatal": "critical",
    "urgent": "critical",
    "high": "high",
    "major": "high",
    "error": "high",
    "severe": "high",
    "important": "high",
    "medium": "medium",
    "moderate": "medium",
    "warning": "medium",
    "warn": "medium",
    "normal": "medium",
    "low": "low",
    "minor": "low",
    "info": "low",
    "information": "low",
    "note": "low",
    "suggestion": "low",
    "hint": "nit",
    "nit": "nit",
    "nitpick": "nit",
    "trivial": "nit",
    "style": "nit",
}

CATEGORY_ALIASES: dict[str, str] = {
    "bug": "bug",
    "defect": "bug",
    "code defect": "bug",
    "error": "bug",
    "security": "security",
    "security vulnerability": "security",
    "vulnerability": "security",
    "performance": "performance",
    "perf": "performance",
    "correctness": "correctness",
    "logic": "correctness",
    "maintainability": "maintainability",
    "maintainability and readability": "maintainability",
    "readability": "maintainability",
    "design": "maintainability",
    "refactor": "maintainability",
    "style": "style",
    "formatting": "style",
    "naming": "style",
    "docs": "docs",
    "documentation": "docs",
    "doc": "docs",
    "tests": "tests",
    "test": "tests",
    "testing": "tests",
}

_HEDGES = re.compile(
    r"\b(consider(?:ing)?|might|maybe|perhaps|possibly|could potentially|may want|you may|"
    r"might want|it (?:would|might) be (?:nice|better|good)|i think|i wonder|not sure|seems|"
    r"appears to|probably|optional(?:ly)?|if possible|worth (?:considering|checking)|"
    r"would be cleaner|for clarity|for consistency|for readability)\b",
    re.IGNORECASE,
)
_NIT = re.compile(r"(^\s*(nit|nitpick|minor|optional|style)\s*[:!-])|\bnit(pick)?\b", re.IGNORECASE)

# Concrete failure words, each with the category it implies and the floor it lifts severity to.
_CONCRETE: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(
            r"\b(sql injection|injection|xss|cross[- ]site|csrf|ssrf|rce|remote code|path traversal|"
            r"directory traversal|privilege escalation|auth(?:entication|orization)? bypass|"
            r"bypass(?:es)? (?:the )?(?:auth|permission|check)|leaks? (?:secrets?|credentials?|tokens?|"
            r"passwords?)|hard-?coded (?:secret|password|credential|key|token)|insecure|unsanitized|"
            r"unescaped|deseriali[sz]ation|open redirect|timing attack)\b",
            re.IGNORECASE,
        ),
        "security",
        "high",
    ),
    (
        re.compile(
            r"\b(crash(?:es|ed)?|panics?|segfault|null pointer|nullpointer|npe|null dereference|"
            r"nil (?:pointer|dereference|map)|undefined is not|none ?type|attributeerror|keyerror|"
            r"indexerror|typeerror|out of bounds|index out of range|overflow|underflow|use after free|"
            r"double free|race condition|data race|race|deadlock|infinite loop|data loss|"
            r"corrupt(?:s|ed|ion)?|memory leak|resource leak|leaks?|never (?:closed|released|freed)|"
            r"unhandled exception|throws?|raises?|exception)\b",
            re.IGNORECASE,
        ),
        "bug",
        "high",
    ),
    (
        re.compile(
            r"\b(incorrect(?:ly)?|wrong|off[- ]by[- ]one|always (?:returns?|true|false)|never (?:returns?|"
            r"called|executed|reached)|inverted|mismatch|inconsistent with|breaks?|broken|regression|"
            r"will fail|fails? to|does not (?:work|handle|check|return)|doesn't (?:work|handle|check)|"
            r"missing (?:check|validation|return|await)|not awaited|ignored|silently|lost|stale|"
            r"duplicate(?:d)? (?:entries|rows|records)|returns? (?:null|none|nil|undefined))\b",
            re.IGNORECASE,
        ),
        "correctness",
        "medium",
    ),
    (
        re.compile(
            r"\b(o\(n\^?2\)|o\(n\*\*2\)|quadratic|n\+1|n \+ 1 quer|slow(?:er|ly)?|performance|"
            r"inefficien\w*|allocat\w*|unbounded|blocking call|expensive|redundant (?:query|call|request)s?|"
            r"full (?:table )?scan|cache miss)\b",
            re.IGNORECASE,
        ),
        "performance",
        "medium",
    ),
)

_STYLE = re.compile(
    r"\b(typo|spelling|misspell\w*|whitespace|trailing space|indentation|indent|formatting|format|"
    r"naming|rename|renamed|variable name|camel ?case|snake ?case|semicolon|blank line|empty line|"
    r"line length|import order|unused import|lint|pep ?8|style|consistency|consistent|cosmetic|"
    r"copyright|capitali[sz]\w*|punctuation|wording)\b",
    re.IGNORECASE,
)
_DOCS = re.compile(
    r"\b(docstring|documentation|document|javadoc|jsdoc|comment|comments|readme|changelog|doc)\b",
    re.IGNORECASE,
)
_TESTS = re.compile(
    r"\b(tests?|unit test|test case|coverage|assert(?:ion)?s?|mock(?:s|ed)?|fixture)\b", re.IGNORECASE
)
_MAINT = re.compile(
    r"\b(refactor\w*|duplicat\w*|readab\w*|simplif\w*|extract|helper|complex\w*|magic number|"
    r"dead code|unused|deprecated|hard-?coded|maintainab\w*|cleanup|clean up|reuse)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the text and metadata say about a candidate; the features later stages reuse."""

    severity: str
    category: str
    hedge: float
    concrete: bool
    nit: bool
    style_only: bool


def normalise_severity(value: str | None) -> str | None:
    """Map a free-form severity ('Major', 'warning', 'P1'...) onto SEVERITIES, or None."""
    if not value:
        return None
    key = value.strip().lower()
    if key in SEVERITIES:
        return key
    if key in SEVERITY_ALIASES:
        return SEVERITY_ALIASES[key]
    if re.fullmatch(r"p[0-4]", key):
        return SEVERITIES[int(key[1])]
    return None


def normalise_category(value: str | None) -> str | None:
    """Map a free-form category onto CATEGORIES, or None when it says nothing we know."""
    if not value:
        return None
    key = value.strip().lower().replace("_", " ").replace("-", " ")
    if key in CATEGORIES:
        return key
    return CATEGORY_ALIASES.get(key)


def hedging_score(text: str) -> float:
    """0..1: how much the text hedges (count of hedge phrases, saturating at three)."""
    return min(len(_HEDGES.findall(text)), 3) / 3.0


def _shift(severity: str, steps: int) -> str:
    """Move `steps` towards less severe (positive) or more severe (negative), clamped."""
    rank = min(max(severity_rank(severity) + steps, 0), len(SEVERITIES) - 1)
    return SEVERITIES[rank]


def _worse(a: str, b: str) -> str:
    return a if severity_rank(a) <= severity_rank(b) else b


def assess(candidate: Candidate) -> Assessment:
    """Calibrated severity and category for one candidate.

    A rule's own severity is kept (rules are written by people who know their cost) except that
    a nit marker still wins; an LLM's claim is only a starting point that the text moves.
    """
    text = f"{candidate.title}\n{candidate.body}"
    claimed = normalise_severity(candidate.severity)
    claimed_category = normalise_category(candidate.category)
    hedge = hedging_score(text)
    nit = bool(_NIT.search(text))

    concrete_category: str | None = None
    floor: str | None = None
    for pattern, category, level in _CONCRETE:
        if pattern.search(text):
            concrete_category = concrete_category or category
            floor = level if floor is None else _worse(floor, level)
    concrete = concrete_category in ("security", "bug") or (concrete_category is not None and hedge < 0.34)
    style_hit = bool(_STYLE.search(text))
    style_only = style_hit and concrete_category is None

    if claimed_category is not None:
        category = claimed_category
    elif concrete_category is not None:
        category = concrete_category
    elif style_only:
        category = "style"
    elif _TESTS.search(text):
        category = "tests"
    elif _DOCS.search(text):
        category = "docs"
    elif _MAINT.search(text):
        category = "maintainability"
    else:
        category = "maintainability"

    is_rule = candidate.source.startswith("rule") or candidate.rule_id is not None
    default_for_category = {
        "security": "high",
        "bug": "high",
        "correctness": "medium",
        "performance": "medium",
        "maintainability": "low",
        "tests": "low",
        "docs": "low",
        "style": "nit",
    }[category]
    severity = claimed or default_for_category

    if nit:
        return Assessment(
            "nit", category if category != "maintainability" else "style", hedge, False, True, style_only
        )
    if is_rule and claimed is not None:
        return Assessment(severity, category, hedge, concrete, nit, style_only)
    if style_only and category in ("style", "docs"):
        # Style-only remarks are nits and doc-only remarks are low, whatever the claim said.
        severity = "nit" if category == "style" else "low"
    if concrete and floor is not None:
        # Naming the failure lifts a remark to the floor its failure kind implies.
        severity = _worse(severity, floor)
        if category == "security":
            severity = _worse(severity, "high")
    elif hedge > 0:
        # Hedged with no concrete failure: demote one step, two when it hedges repeatedly.
        severity = _shift(severity, 2 if hedge >= 0.66 else 1)
    return Assessment(severity, category, hedge, concrete, nit, style_only)


def classify(candidate: Candidate) -> tuple[str, str]:
    """(severity, category) for one candidate: the short form of `assess`."""
    found = assess(candidate)
    return found.severity, found.category


def meets_minimum(
    severity: str, path: str | None, min_severity: str, min_severity_by_path: dict[str, str]
) -> tuple[bool, str]:
    """Whether `severity` passes the minimum for `path`; the last matching glob wins.

    Returns (passes, the minimum that applied), so the caller can say which rule suppressed it.
    """
    minimum = min_severity
    if path is not None:
        for pattern, level in min_severity_by_path.items():
            if fnmatchcase(path, pattern):
                minimum = normalise_severity(level) or minimum
    return severity_rank(severity) <= severity_rank(minimum), minimum
