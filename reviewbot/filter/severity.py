"""Calibrated severity and category for a candidate, from its claim, its rule and its text.

An LLM labels almost everything "high"; a rule's metadata is trustworthy but coarse. The text
itself says most: a hedged remark with no concrete failure ("consider", "might", "maybe") is
worth less than it claims, a nit marker means a nit, and naming a concrete failure ("crash",
"null pointer", "SQL injection", "race") is worth more. Pure functions, no state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reviewbot.core.domain import Candidate
from reviewbot.core.globs import glob_list
from reviewbot.core.vocabulary import SEVERITIES, normalise_category, normalise_severity, severity_rank

_SUFFIXES = ("", "s", "es", "ed", "d", "ing", "ly")
#: Every word and phrase-first word of every Lexicon (each adds its own as it is built): the
#: only words a _Doc keeps, since no lexicon question can turn on any other.
_KNOWN: set[str] = set()
_FIRSTS: set[str] = set()
#: Each known word's bits: bit 2i when Lexicon i has it as a word, bit 2i+1 as a phrase's first.
_BITS: dict[str, int] = {}
_LEXICONS: list[Lexicon] = []


class Lexicon:
    """Words and phrases that signal one thing, matched on a pre-tokenised text.

    Set lookups instead of big regex alternations: the filter assesses every history row when it
    trains (100,000 rows in seconds), and a regex alternation costs per character per term.
    A term ending in '*' also matches the word with a common suffix (crash* -> crashes, crashed).
    """

    def __init__(self, *terms: str) -> None:
        words: set[str] = set()
        phrases: dict[str, list[str]] = {}
        for term in terms:
            stem = term.rstrip("*")
            forms = [stem + suf for suf in _SUFFIXES] if term.endswith("*") else [stem]
            for form in forms:
                if " " in form:
                    phrases.setdefault(form.split(" ", 1)[0], []).append(f" {form} ")
                else:
                    words.add(form)
        self.words = frozenset(words)
        self.phrases = phrases
        self.firsts = frozenset(phrases)  # a phrase can occur only where its first word does
        _KNOWN.update(self.words, self.firsts)
        _FIRSTS.update(self.firsts)
        #: this lexicon's bit in a _Doc's `answers` (and, shifted once, its phrase-first bit)
        self.bit = 1 << (2 * len(_LEXICONS))
        for word in self.words:
            _BITS[word] = _BITS.get(word, 0) | self.bit
        for first in self.firsts:
            _BITS[first] = _BITS.get(first, 0) | self.bit << 1
        _LEXICONS.append(self)

    def matches(self, doc: _Doc) -> list[str]:
        """The distinct terms of this lexicon that occur in `doc`."""
        found = list(self.words & doc.words)
        if not self.firsts.isdisjoint(doc.words):
            for first in self.firsts & doc.words:
                found.extend(p for p in self.phrases[first] if p in doc.joined)
        return found

    def __call__(self, doc: _Doc) -> bool:
        # isdisjoint stops at the first common word and builds no set (most texts miss most lexicons)
        if not self.words.isdisjoint(doc.words):
            return True
        if self.firsts.isdisjoint(doc.words):
            return False
        return any(p in doc.joined for first in self.firsts & doc.words for p in self.phrases[first])


_TOKEN = re.compile(r"[a-z0-9_+^*]+(?:'[a-z]+)?")


class _Doc:
    """A text as its lower-case words that some lexicon knows (a set) and, when a phrase can
    occur, all its words space-joined for phrase lookups.

    Why only known words: every lexicon question is an intersection with a lexicon's words or
    phrase-first words, so a word no lexicon has cannot change an answer, and the set of a
    history row's known words is a few entries where all its words were dozens.
    """

    __slots__ = ("words", "joined", "lower", "answers")

    def __init__(self, text: str) -> None:
        self.lower = text.lower()
        toks = _TOKEN.findall(self.lower.replace("-", " "))
        self.words = words = _KNOWN.intersection(toks)
        hits = 0
        for word in words:
            hits |= _BITS[word]
        # a phrase is looked up only where its first word occurs (Lexicon), so no join otherwise
        self.joined = ""
        #: every lexicon's answer at once: bit `lexicon.bit` set when `lexicon(self)` is true
        self.answers = hits & _WORD_BITS
        if hits & _FIRST_BITS:
            self.joined = " " + " ".join(toks) + " "
            for lexicon in _LEXICONS:
                if hits & (lexicon.bit << 1) and not hits & lexicon.bit and lexicon(self):
                    self.answers |= lexicon.bit


_HEDGES = Lexicon(
    "consider",
    "considering",
    "might",
    "maybe",
    "perhaps",
    "possibly",
    "could potentially",
    "may want",
    "you may",
    "it would be nice",
    "it might be nice",
    "it would be better",
    "it would be good",
    "i think",
    "i wonder",
    "not sure",
    "seems",
    "appears to",
    "probably",
    "optional",
    "optionally",
    "if possible",
    "worth considering",
    "worth checking",
    "would be cleaner",
    "for clarity",
    "for consistency",
    "for readability",
)
_NIT_START = re.compile(r"^\s*(nit|nitpick|minor|optional|style)\s*[:!-]")
_NIT = Lexicon("nit", "nitpick", "nits")

# Concrete failure words, each with the category it implies and the floor it lifts severity to.
_CONCRETE: tuple[tuple[Lexicon, str, str], ...] = (
    (
        Lexicon(
            "sql injection",
            "injection",
            "injections",
            "xss",
            "cross site",
            "csrf",
            "ssrf",
            "rce",
            "remote code",
            "path traversal",
            "directory traversal",
            "privilege escalation",
            "auth bypass",
            "authentication bypass",
            "authorization bypass",
            "bypass the auth",
            "bypasses the auth",
            "bypass auth",
            "bypass permission",
            "bypasses permission",
            "bypass the permission",
            "bypasses the permission",
            "bypass the check",
            "bypasses the check",
            "leak secret*",
            "leaks secret*",
            "leak credential*",
            "leaks credential*",
            "leak token*",
            "leaks token*",
            "leak password*",
            "leaks password*",
            "hard coded secret",
            "hardcoded secret",
            "hard coded password",
            "hardcoded password",
            "hardcoded credential*",
            "hard coded credential*",
            "hardcoded key",
            "hardcoded token",
            "insecure",
            "unsanitized",
            "unescaped",
            "deserialization",
            "deserialisation",
            "open redirect",
            "timing attack",
        ),
        "security",
        "high",
    ),
    (
        Lexicon(
            "crash*",
            "panic*",
            "segfault",
            "null pointer",
            "nullpointer",
            "nullpointerexception",
            "npe",
            "null dereference",
            "nil pointer",
            "nil dereference",
            "nil map",
            "undefined is not",
            "nonetype",
            "none type",
            "attributeerror",
            "keyerror",
            "indexerror",
            "typeerror",
            "out of bounds",
            "index out of range",
            "overflow",
            "underflow",
            "use after free",
            "double free",
            "race condition",
            "data race",
            "race",
            "races",
            "deadlock*",
            "infinite loop",
            "data loss",
            "corrupt",
            "corrupts",
            "corrupted",
            "corruption",
            "memory leak",
            "resource leak",
            "leak",
            "leaks",
            "never closed",
            "never released",
            "never freed",
            "unhandled exception",
            "throw",
            "throws",
            "raise",
            "raises",
            "exception",
        ),
        "bug",
        "high",
    ),
    (
        Lexicon(
            "incorrect",
            "incorrectly",
            "wrong",
            "off by one",
            "always return*",
            "always true",
            "always false",
            "never return*",
            "never called",
            "never executed",
            "never reached",
            "inverted",
            "mismatch",
            "inconsistent with",
            "break",
            "breaks",
            "broken",
            "regression",
            "will fail",
            "fail to",
            "fails to",
            "does not work",
            "does not handle",
            "does not check",
            "does not return",
            "doesn't work",
            "doesn't handle",
            "doesn't check",
            "missing check",
            "missing validation",
            "missing return",
            "missing await",
            "not awaited",
            "ignored",
            "silently",
            "lost",
            "stale",
            "duplicate entries",
            "duplicated entries",
            "duplicate rows",
            "duplicate records",
            "return null",
            "returns null",
            "return none",
            "returns none",
            "return nil",
            "returns nil",
            "return undefined",
            "returns undefined",
        ),
        "correctness",
        "medium",
    ),
    (
        Lexicon(
            "quadratic",
            "n+1",
            "slow",
            "slower",
            "slowly",
            "performance",
            "inefficient",
            "inefficiency",
            "inefficiently",
            "allocat*",
            "allocation",
            "allocations",
            "unbounded",
            "blocking call",
            "expensive",
            "redundant query",
            "redundant queries",
            "redundant call*",
            "redundant request*",
            "full scan",
            "full table scan",
            "cache miss",
        ),
        "performance",
        "medium",
    ),
)
_QUADRATIC = ("o(n^2)", "o(n**2)", "o(n2)", "o(n²)")  # all start "o(n": one look first

_STYLE = Lexicon(
    "typo",
    "typos",
    "spelling",
    "misspell*",
    "misspelled",
    "misspelt",
    "whitespace",
    "trailing space",
    "indentation",
    "indent",
    "formatting",
    "format",
    "naming",
    "rename",
    "renamed",
    "variable name",
    "camelcase",
    "camel case",
    "snake case",
    "snakecase",
    "semicolon",
    "semicolons",
    "blank line",
    "empty line",
    "line length",
    "import order",
    "unused import",
    "lint",
    "pep8",
    "pep 8",
    "style",
    "consistency",
    "consistent",
    "cosmetic",
    "copyright",
    "capitalize",
    "capitalise",
    "capitalization",
    "capitalisation",
    "capitalized",
    "punctuation",
    "wording",
)
_DOCS = Lexicon(
    "docstring",
    "documentation",
    "document",
    "javadoc",
    "jsdoc",
    "comment",
    "comments",
    "readme",
    "changelog",
    "doc",
)
_TESTS = Lexicon(
    "test",
    "tests",
    "unit test",
    "test case",
    "coverage",
    "assert",
    "asserts",
    "assertion",
    "assertions",
    "mock",
    "mocks",
    "mocked",
    "fixture",
)
_MAINT = Lexicon(
    "refactor*",
    "refactoring",
    "duplicat*",
    "duplicate",
    "duplication",
    "readability",
    "readable",
    "simplify",
    "simplified",
    "simplification",
    "extract",
    "helper",
    "complex",
    "complexity",
    "magic number",
    "dead code",
    "unused",
    "deprecated",
    "hardcoded",
    "hard coded",
    "maintainability",
    "maintainable",
    "cleanup",
    "clean up",
    "reuse",
)


_WORD_BITS = sum(lexicon.bit for lexicon in _LEXICONS)
_HEDGE_KEYS = _HEDGES.words | _HEDGES.firsts
_FIRST_BITS = _WORD_BITS << 1

_CATEGORY_DEFAULT = {
    "security": "high",
    "bug": "high",
    "correctness": "medium",
    "performance": "medium",
    "maintainability": "low",
    "tests": "low",
    "docs": "low",
    "style": "nit",
}


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the text and metadata say about a candidate; the features later stages reuse."""

    severity: str
    category: str
    hedge: float
    concrete: bool
    nit: bool
    style_only: bool


def hedging_score(text: str | _Doc) -> float:
    """0..1: how much the text hedges (distinct hedge phrases, saturating at three)."""
    doc = text if isinstance(text, _Doc) else _Doc(text)
    return min(len(_HEDGES.matches(doc)), 3) / 3.0


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
    doc = _Doc(text)
    claimed = normalise_severity(candidate.severity)
    claimed_category = normalise_category(candidate.category)
    answers = doc.answers
    # no hedge word and no hedge phrase's first word: no hedge phrase can match
    hedge = hedging_score(doc) if not doc.words.isdisjoint(_HEDGE_KEYS) else 0.0
    nit = bool(answers & _NIT.bit) or bool(_NIT_START.match(doc.lower))

    concrete_category: str | None = None
    floor: str | None = None
    for lexicon, category, level in _CONCRETE:
        if answers & lexicon.bit or (
            category == "performance" and "o(n" in doc.lower and any(q in doc.lower for q in _QUADRATIC)
        ):
            concrete_category = concrete_category or category
            floor = level if floor is None else _worse(floor, level)
    concrete = concrete_category in ("security", "bug") or (concrete_category is not None and hedge < 0.34)
    style_hit = bool(answers & _STYLE.bit)
    style_only = style_hit and concrete_category is None

    if claimed_category is not None:
        category = claimed_category
    elif concrete_category is not None:
        category = concrete_category
    elif style_only:
        category = "style"
    elif answers & _TESTS.bit:
        category = "tests"
    elif answers & _DOCS.bit:
        category = "docs"
    elif answers & _MAINT.bit:
        category = "maintainability"
    else:
        category = "maintainability"

    is_rule = candidate.source.startswith("rule") or candidate.rule_id is not None
    default_for_category = _CATEGORY_DEFAULT[category]
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


def meets_minimum(
    severity: str, path: str | None, min_severity: str, min_severity_by_path: dict[str, str]
) -> tuple[bool, str]:
    """Whether `severity` passes the minimum for `path`; the last matching glob wins.

    Returns (passes, the minimum that applied), so the caller can say which rule suppressed it.
    """
    minimum = minimum_for(path, min_severity, min_severity_by_path)
    return severity_rank(severity) <= severity_rank(minimum), minimum


def minimum_for(path: str | None, min_severity: str, min_severity_by_path: dict[str, str]) -> str:
    """The minimum severity for `path`: the last matching `min_severity_by_path` glob wins."""
    if path is None:
        return min_severity
    last = glob_list(tuple(min_severity_by_path)).last(path)  # the config's glob dialect
    return min_severity if last is None else normalise_severity(min_severity_by_path[last]) or min_severity
