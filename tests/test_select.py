"""Selection: thresholds, the per-PR budget, expected-value order, exploration, reasons."""

from __future__ import annotations

from reviewbot.core.domain import Candidate
from reviewbot.filter.acceptance import load_prior
from reviewbot.filter.noise import FilterSettings, filter_review
from reviewbot.filter.select import Choice, explore_draw, resolve_threshold, select


def ch(i: int, score: float, severity: str = "medium") -> Choice:
    return Choice(index=i, score=score, severity=severity, fingerprint=f"fp{i}")


def test_threshold_sources() -> None:
    table = [(0.8, 0.9, 10), (0.6, 0.7, 20), (0.4, 0.5, 40), (0.3, 0.95, 2)]
    assert resolve_threshold(min_acceptance=0.42, target_precision=None, history_thresholds=table)[0] == 0.42
    assert resolve_threshold(min_acceptance=None, target_precision=0.7, history_thresholds=table)[0] == 0.6
    # 0.3 reached 0.95 but on too few rows to trust; 0.99 was never reached -> default
    assert (
        resolve_threshold(min_acceptance=None, target_precision=0.99, history_thresholds=table, default=0.55)[
            0
        ]
        == 0.55
    )
    assert resolve_threshold(min_acceptance=None, target_precision=None, default=0.5)[0] == 0.5


def test_below_threshold_gets_reason_with_threshold() -> None:
    verdicts = select([ch(0, 0.9), ch(1, 0.2)], threshold=0.42, max_comments=10)
    assert verdicts[0].decision == "post"
    assert verdicts[1].decision == "suppress"
    assert verdicts[1].reason == "below acceptance threshold 0.42"


def test_budget_keeps_the_highest_expected_value() -> None:
    choices = [ch(0, 0.6, "low"), ch(1, 0.5, "critical"), ch(2, 0.9, "medium"), ch(3, 0.55, "nit")]
    verdicts = select(choices, threshold=0.5, max_comments=2)
    assert {i for i, v in verdicts.items() if v.decision == "post"} == {1, 2}
    assert verdicts[0].reason == "over budget (max_comments=2)"
    assert verdicts[3].reason == "over budget (max_comments=2)"


def test_exploration_is_deterministic_and_off_by_default() -> None:
    low = [ch(i, 0.1) for i in range(200)]
    assert all(v.decision == "suppress" for v in select(low, threshold=0.5, max_comments=None).values())
    a = select(low, threshold=0.5, max_comments=None, exploration_rate=0.1, seed=3)
    b = select(low, threshold=0.5, max_comments=None, exploration_rate=0.1, seed=3)
    assert a == b
    explored = [i for i, v in a.items() if v.explore]
    assert 5 <= len(explored) <= 40
    assert all(a[i].decision == "post" for i in explored)
    assert explore_draw("x", 1) == explore_draw("x", 1) != explore_draw("x", 2)


def cand(id: str, body: str, **kw: object) -> Candidate:
    base: dict[str, object] = {
        "path": "shop/cart.py",
        "line": 10,
        "repo": "acme/shop",
        "pr": 1,
        "source": "llm",
    }
    base.update(kw)
    return Candidate(id=id, body=body, **base)  # type: ignore[arg-type]


SQL = "load_cart interpolates user_id into the SQL string, which allows SQL injection."


def test_filter_review_reasons_and_order() -> None:
    cands = [
        cand("dup2", "SQL injection: load_cart puts user_id straight into the SQL string.", source="llm:2"),
        cand("sql", SQL, source="llm:1", severity="critical", confidence=0.9),
        cand("nit", "nit: trailing whitespace", line=50),
        cand("posted", "total() crashes on an empty cart because it divides by len(items).", line=90),
        cand("dismissed", "Consider renaming helper to something clearer.", line=120),
    ]
    from reviewbot.filter.dedup import fingerprint

    posted_fp = fingerprint(cand("old", cands[3].body, line=70))  # same claim, lines shifted
    dismissed_fp = fingerprint(cands[4])
    settings = FilterSettings(min_severity="low", min_acceptance=0.0, max_comments=10)
    out = filter_review(
        cands,
        model=load_prior(),
        settings=settings,
        dismissed_fingerprints=[dismissed_fp],
        posted_fingerprints=[posted_fp],
    )
    assert [d.candidate.id for d in out] == [c.id for c in cands]
    by = {d.candidate.id: d for d in out}
    posted_sql = [i for i in ("sql", "dup2") if by[i].decision == "post"]
    assert len(posted_sql) == 1
    other = "dup2" if posted_sql == ["sql"] else "sql"
    assert by[other].reason == f"duplicate of {posted_sql[0]}"
    assert by["sql"].cluster == by["dup2"].cluster
    assert by["nit"].reason == "below min_severity (low)"
    assert by["posted"].reason == "already posted"
    assert by["dismissed"].reason == "dismissed before"
    assert all(0.0 <= d.score <= 1.0 for d in out)
    assert by[posted_sql[0]].category == "security"


def test_settings_from_config_reads_attributes() -> None:
    class Cfg:
        min_severity = "medium"
        min_severity_by_path = {"docs/**": "high"}
        max_comments = 3
        min_acceptance = None
        target_precision = 0.7
        exploration_rate = 0.05
        passes = 2

    s = FilterSettings.from_config(Cfg())
    assert (s.min_severity, s.max_comments, s.target_precision, s.exploration_rate) == (
        "medium",
        3,
        0.7,
        0.05,
    )
    assert s.min_severity_by_path == {"docs/**": "high"}
    assert FilterSettings.from_config(object()) == FilterSettings()


def test_budget_is_per_pull_request_and_reviews_stay_apart() -> None:
    bodies = [
        "load_cart interpolates user_id into the SQL string, which allows SQL injection.",
        "total() crashes on an empty cart because it divides by len(items).",
        "The retry loop in sync_orders never sleeps, so a down upstream gets hammered.",
        "Typo in the docstring of apply_coupon: 'recieve' should be 'receive'.",
    ]
    cands = [cand(f"p{i}", b, line=10 + 50 * i, source=f"llm:{i}") for i, b in enumerate(bodies)]
    cands += [cand(f"q{i}", b, pr=2, line=10 + 50 * i, source=f"llm:{i}") for i, b in enumerate(bodies)]
    cands += [cand(f"n{i}", b, pr=None, line=10 + 50 * i, source=f"llm:{i}") for i, b in enumerate(bodies)]
    settings = FilterSettings(min_severity="nit", min_acceptance=0.0, max_comments=2)
    out = filter_review(cands, model=load_prior(), settings=settings)
    posted = [d.candidate.id for d in out if d.decision == "post"]
    assert sum(p.startswith("p") for p in posted) == 2
    assert sum(p.startswith("q") for p in posted) == 2
    assert sum(p.startswith("n") for p in posted) == 4  # no PR: no per-PR budget
    assert len({d.cluster for d in out}) == 12
