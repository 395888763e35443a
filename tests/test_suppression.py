"""Learned suppression (reviewbot.filter.suppression): the table of kinds a repo's feedback holds back."""

from __future__ import annotations

from reviewbot.core.domain import Candidate
from reviewbot.filter.acceptance import load_prior
from reviewbot.filter.noise import FilterSettings, filter_review
from reviewbot.filter.suppression import (
    Kind,
    KindLabel,
    Learned,
    SuppressionPolicy,
    kind_labels,
    kind_of,
    learn,
)

RULE = kind_of(rule_id="py-bare-except", source="rule:py-bare-except", category="bug", title="Bare except")
NIT = kind_of(rule_id=None, source="llm", category="docs", title="Missing docstring")

REPLY_NO = ("dismissed", "reply", 1.0)
THUMBS_UP = ("accepted", "reaction", 1.0)
UNTOUCHED = ("weak_dismissed", "untouched", 0.2)
RESOLVED = ("weak_dismissed", "thread", 0.5)


def history(*events: tuple[Kind, int, tuple[str, str, float]]) -> list[KindLabel]:
    """One labelled finding per event (kind, pr, label), a day apart, in that order."""
    return kind_labels(
        (i, pr, kind, [(label, source, weight, f"2026-11-{i + 1:02d}T10:00:00+00:00")])
        for i, (kind, pr, (label, source, weight)) in enumerate(events)
    )


def test_a_rule_is_its_id_and_an_llm_finding_its_category_and_title_words() -> None:
    assert RULE.key == "rule:py-bare-except" and RULE.name == "rule py-bare-except"
    reworded = kind_of(rule_id=None, source="llm", category="docs", title="Docstring missing!")
    assert reworded.key == NIT.key == "llm:docs:docstr miss"
    # the same title in another category, and a rule id on an LLM finding, are other kinds
    assert kind_of(rule_id=None, source="llm", category="style", title="Missing docstring").key != NIT.key
    assert kind_of(rule_id="x", source="llm", category="docs", title="Missing docstring").key == NIT.key
    untitled = kind_of(
        rule_id=None, source="llm", category="bug", title="", body="Divides by zero when empty"
    )
    assert untitled.key == "llm:bug:divid empty zero"


def test_three_explicit_dismissals_suppress_two_do_not() -> None:
    assert learn(history((RULE, 1, REPLY_NO), (RULE, 2, REPLY_NO))) == {}
    found = learn(history((RULE, 1, REPLY_NO), (RULE, 2, REPLY_NO), (RULE, 3, REPLY_NO)))
    s = found[RULE.key]
    assert (s.rule, s.dismissed, s.ignored, s.prs) == ("dismissed", 3, 0, 3)
    assert (s.first_at[:10], s.since[:10], s.finding_ids) == ("2026-11-01", "2026-11-03", (0, 1, 2))
    assert s.reason == "suppressed: rule py-bare-except dismissed 3 times since 2026-11-01, never accepted"


def test_an_acceptance_lifts_it_and_the_count_starts_again() -> None:
    three = [(NIT, pr, REPLY_NO) for pr in (1, 2, 3)]
    assert learn(history(*three, (NIT, 4, THUMBS_UP))) == {}
    assert learn(history(*three, (NIT, 4, THUMBS_UP), (NIT, 5, REPLY_NO), (NIT, 6, REPLY_NO))) == {}
    again = learn(history(*three, (NIT, 4, THUMBS_UP), *[(NIT, pr, REPLY_NO) for pr in (5, 6, 7)]))
    s = again[NIT.key]
    assert s.dismissed == 3 and s.last_accepted_at is not None and s.first_at[:10] == "2026-11-05"
    assert s.reason.endswith("dismissed 3 times since 2026-11-05, last accepted 2026-11-04")


def test_a_kind_only_ever_ignored_on_four_prs_is_suppressed_three_or_one_pr_are_not() -> None:
    assert learn(history(*[(NIT, pr, UNTOUCHED) for pr in (1, 2, 3)])) == {}
    assert learn(history(*[(NIT, 1, UNTOUCHED) for _ in range(6)])) == {}  # one PR, six places
    s = learn(
        history(*[(NIT, pr, w) for pr, w in ((1, UNTOUCHED), (2, RESOLVED), (3, UNTOUCHED), (4, REPLY_NO))])
    )[NIT.key]
    assert (s.rule, s.prs, s.dismissed, s.ignored) == ("ignored", 4, 1, 3)
    assert "turned down on 4 PRs since 2026-11-01 (1 dismissed, 3 ignored)" in s.reason


def test_kinds_are_counted_apart_and_the_policy_is_a_parameter() -> None:
    mixed = history((RULE, 1, REPLY_NO), (NIT, 1, REPLY_NO), (RULE, 2, REPLY_NO), (NIT, 2, THUMBS_UP))
    assert learn(mixed) == {}
    assert set(learn(mixed, SuppressionPolicy(dismissals=2))) == {RULE.key}


def test_the_filter_holds_back_a_suppressed_kind_with_its_reason_and_posts_the_rest() -> None:
    learned = Learned(learn(history(*[(NIT, pr, REPLY_NO) for pr in (1, 2, 3)])))
    nit = Candidate(
        id="llm:1",
        path="app/new.py",
        line=3,
        title="Missing docstring",
        category="docs",
        body="Add a docstring to `load_orders` saying what it returns.",
        severity="low",
        confidence=0.9,
    )
    bug = Candidate(
        id="llm:2",
        path="app/new.py",
        line=9,
        title="Division by zero",
        category="bug",
        body="`total / len(xs)` divides by zero when `xs` is empty.",
        severity="high",
        confidence=0.9,
    )
    settings = FilterSettings(min_acceptance=0.0)
    decisions = filter_review([nit, bug], model=load_prior(), settings=settings, learned=learned)
    assert [d.decision for d in decisions] == ["suppress", "post"]
    assert decisions[0].reason.startswith('suppressed: docs "Missing docstring" dismissed 3 times since')
    assert decisions[0].score > 0  # still scored: the funnel shows what it would have been
    plain = filter_review([nit, bug], model=load_prior(), settings=settings)
    assert [d.decision for d in plain] == ["post", "post"]
