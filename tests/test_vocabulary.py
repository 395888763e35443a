"""One vocabulary: a severity or category word means the same from the LLM and from `reviewbot filter`.

Before vocabulary.py, prompt.py and severity.py each had a synonym table and they disagreed; the
words below are the ones where they did (or where one table knew the word and the other did not).
"""

from __future__ import annotations

import pytest

from reviewbot.core.domain import Candidate
from reviewbot.core.vocabulary import (
    CATEGORIES,
    CATEGORY_WORDS,
    SEVERITIES,
    SEVERITY_WORDS,
    normalise_category,
    normalise_severity,
)
from reviewbot.filter.severity import assess
from reviewbot.review.reply_parse import validate_finding

# word -> what it means now (prompt said / severity said before)
SEVERITY_DISAGREED = {
    "severe": "high",  # critical / high
    "urgent": "critical",  # unknown (finding dropped) / critical
    "P1": "high",  # unknown / high
    "note": "low",  # unknown / low
    "hint": "nit",  # unknown / nit
    "style": "nit",  # unknown / nit
    "informational": "low",  # low / unknown
    "optional": "nit",  # nit / unknown
}
CATEGORY_DISAGREED = {
    "logic": "bug",  # bug / correctness
    "Code Defect": "bug",  # unknown / bug
    "security_vulnerability": "security",  # unknown / security
    "crash": "bug",  # bug / unknown
    "error-handling": "correctness",  # correctness / unknown
    "best practice": "maintainability",  # maintainability / unknown
    "typo": "style",  # style / unknown
    "test coverage": "tests",  # tests / unknown
}


def llm_reads(severity: str = "medium", category: str = "bug") -> tuple[str, str]:
    """What the prompt parser makes of an LLM finding's words."""
    found, problems = validate_finding(
        {"path": "a.py", "line": 3, "severity": severity, "category": category, "body": "x is None here."}
    )
    assert found is not None, problems
    return found["severity"], found["category"]


def filter_reads(severity: str = "medium", category: str = "bug") -> tuple[str, str]:
    """What the filter's severity stage makes of an imported finding's words (a rule's claim is
    kept as claimed, so the calibration does not move it)."""
    found = assess(
        Candidate(
            id="c",
            path="a.py",
            line=3,
            body="x is None here.",
            severity=severity,
            category=category,
            source="rule:x",
            rule_id="x",
        )
    )
    return found.severity, found.category


@pytest.mark.parametrize("word", sorted(SEVERITY_DISAGREED))
def test_a_severity_word_means_one_thing_everywhere(word: str) -> None:
    expected = SEVERITY_DISAGREED[word]
    assert normalise_severity(word) == expected
    assert llm_reads(severity=word)[0] == expected
    assert filter_reads(severity=word)[0] == expected


@pytest.mark.parametrize("word", sorted(CATEGORY_DISAGREED))
def test_a_category_word_means_one_thing_everywhere(word: str) -> None:
    expected = CATEGORY_DISAGREED[word]
    assert normalise_category(word) == expected
    assert llm_reads(category=word)[1] == expected
    assert filter_reads(category=word)[1] == expected


def test_every_word_maps_onto_the_scale_and_unknown_words_are_none() -> None:
    assert set(SEVERITY_WORDS.values()) <= set(SEVERITIES)
    assert set(CATEGORY_WORDS.values()) <= set(CATEGORIES)
    assert all(normalise_severity(s.upper()) == s for s in SEVERITIES)
    assert all(normalise_category(f" {c.title()} ") == c for c in CATEGORIES)
    assert [normalise_severity(f"p{i}") for i in range(5)] == list(SEVERITIES)
    for unknown in ("whatever", "", None, 3, "p5"):
        assert normalise_severity(unknown) is None
        assert normalise_category(unknown) is None
    found, problems = validate_finding({"path": "a.py", "line": 3, "severity": "whatever", "body": "b"})
    assert found is None and "unknown severity" in problems[0]
