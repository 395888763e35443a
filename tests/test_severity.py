"""Severity and category calibration: hedged, nit, style-only and concrete remarks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reviewbot.core.domain import Candidate, severity_rank
from reviewbot.filter.severity import assess, hedging_score, meets_minimum, normalise_severity


def cand(body: str, **kw: object) -> Candidate:
    return Candidate(id="c", path="app.py", line=1, body=body, **kw)  # type: ignore[arg-type]


def classify(candidate: Candidate) -> tuple[str, str]:
    found = assess(candidate)
    return found.severity, found.category


def test_hedged_vague_remark_is_demoted_below_its_claim() -> None:
    sev, _ = classify(cand("Maybe consider splitting this function, it might be cleaner.", severity="high"))
    assert severity_rank(sev) > severity_rank("high")


def test_concrete_failure_is_promoted_over_a_low_claim() -> None:
    sev, cat = classify(
        cand("This dereferences a null pointer and crashes when user is None.", severity="low")
    )
    assert sev == "high"
    assert cat == "bug"


def test_hedged_but_concrete_is_not_demoted() -> None:
    sev, cat = classify(cand("This might cause a race condition between the two writers.", severity="high"))
    assert sev == "high"
    assert cat == "bug"


def test_security_words_give_security_at_least_high() -> None:
    sev, cat = classify(cand("The id is concatenated into the SQL string: SQL injection."))
    assert cat == "security"
    assert severity_rank(sev) <= severity_rank("high")


def test_nit_marker_wins_over_claim() -> None:
    assert classify(cand("nit: extra blank line", severity="critical"))[0] == "nit"


def test_style_only_remark_is_style_nit() -> None:
    sev, cat = classify(cand("Typo in variable name: 'recieve' should be 'receive'.", severity="medium"))
    assert (sev, cat) == ("nit", "style")


def test_rule_severity_is_trusted() -> None:
    found = assess(cand("Consider using a constant here", severity="medium", source="rule:x", rule_id="x"))
    assert found.severity == "medium"


def test_aliases_and_hedging_score() -> None:
    assert normalise_severity("Major") == "high"
    assert normalise_severity("warning") == "medium"
    assert normalise_severity("P0") == "critical"
    assert normalise_severity("whatever") is None
    assert hedging_score("This returns the wrong total.") == 0.0
    assert hedging_score("Maybe consider, perhaps") == 1.0


def test_min_severity_by_path_last_match_wins() -> None:
    by_path = {"tests/**": "high", "tests/critical/**": "low"}
    assert meets_minimum("medium", "tests/a/test_x.py", "low", by_path) == (False, "high")
    assert meets_minimum("medium", "tests/critical/x.py", "low", by_path) == (True, "low")
    assert meets_minimum("nit", "src/x.py", "low", by_path) == (False, "low")
    assert meets_minimum("nit", None, "nit", by_path) == (True, "nit")


_LEXICON_WORDS = [
    "sql",
    "injection",
    "crash",
    "crashes",
    "null",
    "pointer",
    "o(n^2)",
    "O(N²)",
    "might",
    "maybe",
    "nit:",
    "nit",
    "would",
    "be",
    "cleaner",
    "it",
    "would",
    "be",
    "nice",
    "i",
    "think",
    "hard-coded",
    "secret",
    "race",
    "condition",
    "off",
    "by",
    "one",
    "never",
    "closed",
    "typo",
    "unit",
    "test",
    "doc",
    "refactor",
    "leak",
    "the",
    "a",
    "x_y",
    "don't",
    "it's",
]


def _every_lexicon() -> list[object]:
    from reviewbot.filter import severity

    return [v for v in vars(severity).values() if isinstance(v, severity.Lexicon)] + [
        lex for lex, _, _ in severity._CONCRETE
    ]


def _plain_doc(text: str) -> object:
    """The definition _Doc narrows: every word of the text, and always the joined string."""
    import types

    from reviewbot.filter.severity import _TOKEN

    toks = _TOKEN.findall(text.lower().replace("-", " "))
    return types.SimpleNamespace(words=set(toks), joined=" " + " ".join(toks) + " ", lower=text.lower())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_LEXICON_WORDS + ["-", "'", " ", ".", "é", "\n"]), max_size=25))
def test_doc_keeping_only_lexicon_words_answers_every_lexicon_the_same(parts: list[str]) -> None:
    """A _Doc keeps only words some Lexicon knows, and joins only when a phrase can occur: every
    lexicon's answer (also as the doc's `answers` bit that assess reads, and its distinct matches)
    must be what the whole text's words give."""
    from reviewbot.filter.severity import _Doc

    text = " ".join(parts)
    fast, plain = _Doc(text), _plain_doc(text)
    for lexicon in _every_lexicon():
        assert lexicon(fast) == lexicon(plain)  # type: ignore[operator]
        assert bool(fast.answers & lexicon.bit) == lexicon(plain)  # type: ignore[attr-defined, operator]
        assert sorted(lexicon.matches(fast)) == sorted(lexicon.matches(plain))  # type: ignore[attr-defined]
    from reviewbot.filter.severity import _HEDGES

    assert assess(cand(text)).hedge == min(len(_HEDGES.matches(plain)), 3) / 3.0  # type: ignore[arg-type]


def test_a_hedge_phrase_alone_still_hedges() -> None:
    """assess skips the hedge count only when no hedge word nor hedge phrase's first word occurs."""
    assert assess(cand("I think this works.")).hedge == 1 / 3
    assert assess(cand("It would be nice to add a test; for clarity too.")).hedge == 2 / 3
    assert assess(cand("This returns the wrong total.")).hedge == 0.0
