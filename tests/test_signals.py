"""What one comment carries (reviewbot.filter.signals) and its round trip through a stored finding."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from reviewbot.core.domain import Candidate
from reviewbot.filter.acceptance import Example, load_prior
from reviewbot.filter.severity import assess
from reviewbot.filter.signals import comment_signals, persisted_signals, restore_signals

CONCRETE = Candidate(
    id="a",
    path="svc/calc.py",
    line=3,
    title="Off-by-one skips the first item",
    body="`range(1, len(items))` starts at 1, so `items[0]` is never added: the total is wrong.",
    severity="high",
    category="bug",
    confidence=0.9,
    quoted_code="for i in range(1, len(items)):",
    on_added_line=True,
    quote_verified=True,
    source="llm",
    rank=0,
)
VAGUE = Candidate(
    id="b",
    path="svc/calc.py",
    line=3,
    title="Possible issue",
    body="This might potentially cause issues; perhaps consider more checks.",
    severity="medium",
    category="maintainability",
    confidence=0.5,
    source="llm",
    rank=5,
)


def test_concrete_comment_carries_code_failure_and_quote() -> None:
    s = comment_signals(CONCRETE)
    assert s.names_code > 0.5 and s.names_failure > 0 and s.names_value == 1.0
    assert s.quotes_code == 1.0 and s.quote_verified == 1.0 and s.on_added_line == 1.0
    assert s.stated_high == 1.0 and s.stated_confidence > 0.3 and s.role == "source"
    v = comment_signals(VAGUE)
    assert v.names_code == 0 and v.quotes_code == 0 and v.quote_verified == 0 and v.on_added_line == 0


def test_file_role_and_verdict_are_features() -> None:
    assert comment_signals(replace(CONCRETE, path="tests/test_calc.py")).role == "test"
    confirmed = comment_signals(replace(CONCRETE, verdict="confirmed", verify_probability=0.9))
    refuted = comment_signals(replace(CONCRETE, verdict="refuted", verify_probability=0.1))
    assert confirmed.verified == 1.0 and refuted.verified == -1.0
    assert confirmed.verify_logit > 0 > refuted.verify_logit


def test_prior_ranks_concrete_over_vague_and_verdict_moves_the_score() -> None:
    prior = load_prior()

    def score(c: Candidate) -> float:
        return prior.score_examples([Example(c, assess(c), 1, 1, 6)])[0]

    assert score(CONCRETE) > 0.5 > score(VAGUE)
    base = score(CONCRETE)
    assert score(replace(CONCRETE, verdict="refuted", verify_probability=0.05)) < base
    assert score(replace(CONCRETE, verdict="confirmed", verify_probability=0.95)) > base
    assert score(replace(CONCRETE, quote_verified=False)) < base


def test_signals_survive_a_stored_finding() -> None:
    c = replace(CONCRETE, verdict="unsure", verify_probability=0.4)
    features = json.loads(json.dumps(persisted_signals(c, review_size=7)))
    assert features["review_size"] == 7
    back = restore_signals(Candidate(id="a", path=c.path, line=c.line, body=c.body), features)
    for name in ("on_added_line", "quote_verified", "rank", "verdict", "verify_probability", "quoted_code"):
        assert getattr(back, name) == getattr(c, name), name
    assert (
        restore_signals(Candidate(id="x", path=None, line=None, body=""), {"rank": "3", "verdict": 1}).rank
        is None
    )


def test_a_refuted_finding_is_suppressed_with_that_reason() -> None:
    from reviewbot.filter.noise import REFUTED, FilterSettings, filter_review

    cands = [
        replace(CONCRETE, id="ok", repo="o/r", pr=1, verdict="confirmed", verify_probability=0.9),
        replace(CONCRETE, id="no", repo="o/r", pr=1, line=40, verdict="refuted", verify_probability=0.1),
    ]
    decisions = filter_review(cands, model=load_prior(), settings=FilterSettings())
    outcome = [(d.decision, d.reason.startswith(REFUTED)) for d in decisions]
    assert outcome == [("post", False), ("suppress", True)]


def _code_refs_word_by_word(prose: str) -> int:
    """The definition `_code_refs` implements: every token, checked in Python (no skipping)."""
    import re

    n = 0
    for tok in re.findall(r"`[^`\n]{1,120}`|[A-Za-z_][\w.]*\(?", prose):
        if (
            tok[0] == "`"
            or tok[-1] == "("
            or "_" in tok
            or "." in tok[1:-1]
            or not (tok.islower() or tok.isupper() or tok.istitle())
        ):
            n += 1
    return n


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aZb_.(`1 é\nÉx-yQ", max_size=40))
def test_code_refs_skipping_plain_words_counts_the_same(prose: str) -> None:
    """The regex drops plain lower-case words before Python sees them; the count must not move."""
    from reviewbot.filter.signals import _code_refs

    assert _code_refs(prose, at=99) == _code_refs_word_by_word(prose)
    assert _code_refs("call getUser() and `x` in a.b, not plain words.", at=99) == 3


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="a1٣_ é-.\n9Z", max_size=30))
def test_number_pattern_is_a_digit_starting_a_word(prose: str) -> None:
    """`_NUMBER` (digit first, then the character before it) finds what `\\b\\d` finds."""
    import re

    from reviewbot.filter.signals import _NUMBER

    assert bool(_NUMBER.search(prose)) == bool(re.search(r"\b\d", prose))


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="aN1 _.(`\n-xnull out of bounds", max_size=40),
    st.sampled_from([None, "high", "nit", "weird"]),
    st.sampled_from([None, "confirmed", "refuted", "unsure"]),
    st.one_of(st.none(), st.floats(0, 1)),
    st.sampled_from([None, "src/a.py", "tests/test_a.py", "docs/x.md", "vendor/y.go"]),
    st.sampled_from([None, True, False]),
)
def test_signal_values_are_the_columns_of_comment_signals(
    body: str, severity: str | None, verdict: str | None, p: float | None, path: str | None, flag: bool | None
) -> None:
    """The featurizer's `signal_values` skips the CommentSignals object, never a value."""
    from reviewbot.filter.signals import signal_columns, signal_values

    c = Candidate(
        id="s",
        path=path,
        line=1,
        body=body,
        severity=severity,
        verdict=verdict,  # type: ignore[arg-type]
        verify_probability=p,
        confidence=p,
        on_added_line=flag,
        quote_verified=flag,
    )
    assert signal_values(c) == signal_columns(comment_signals(c))
