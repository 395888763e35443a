"""exploration.py: a review run's decisions land in `findings`, explored ones flagged and counted apart."""

from __future__ import annotations

import pytest

from reviewbot.exploration import FindingRecordError, record_review_findings
from reviewbot.feedback import LabelEvent
from reviewbot.feedback_poll import record_label
from reviewbot.models import Candidate, Decision
from reviewbot.stats import dismissed_fingerprints, repo_stats
from reviewbot.store import Store

REPO = "acme/shop"
NOW = "2026-03-02T09:00:00+00:00"


def D(fp: str, decision: str, score: float, *, explore: bool = False, rule: str | None = None) -> Decision:
    c = Candidate(id=fp, path="app/a.py", line=3, body=f"finding {fp}", repo=REPO, pr=1, rule_id=rule,
                  confidence=0.7, hunk_size=12, language="python")  # fmt: skip
    return Decision(c, decision, "why", score, "medium", "bug", f"cl-{fp}", fp, explore)  # type: ignore[arg-type]


def test_decisions_recorded_with_explore_flag_and_comment_ids() -> None:
    store = Store.open(":memory:")
    store.conn.execute(
        "INSERT INTO reviews (repo, pr, head_sha, created_at) VALUES (?, 1, 'abc', ?)", (REPO, NOW)
    )
    decisions = [
        D("p1", "post", 0.9),
        D("p2", "post", 0.8, rule="py.bare-except"),
        D("x1", "post", 0.45, explore=True),
        D("x2", "post", 0.44, explore=True),
        D("s1", "suppress", 0.2),
        D("r1", "post", 0.7),  # GitHub rejected it: no comment id
    ]
    ids = record_review_findings(
        store, review_id=1, repo=REPO, pr=1, decisions=decisions, installation_id=7, now=NOW,
        comment_ids={"p1": 101, "p2": 102, "x1": 103, "x2": 104},
    )  # fmt: skip
    rows = {
        fp: (dec, exp, cid, reason)
        for fp, dec, exp, cid, reason in store.conn.execute(
            "SELECT fingerprint, decision, explore, github_comment_id, reason FROM findings"
        )
    }
    assert rows["p1"] == ("post", 0, 101, "why")
    assert rows["x1"] == ("post", 1, 103, "why")
    assert rows["s1"] == ("suppress", 0, None, "why")
    assert rows["r1"][:3] == ("suppress", 0, None) and "rejected by GitHub" in rows["r1"][3]
    features = store.conn.execute("SELECT features FROM findings WHERE fingerprint = 'p1'").fetchone()[0]
    assert '"confidence": 0.7' in features and '"hunk_size": 12' in features

    def label(fp: str, lab: str, weight: float = 1.0, source: str = "reaction") -> None:
        record_label(store, REPO, LabelEvent(ids[fp], lab, source, {"user": "u"}, weight, NOW))  # type: ignore[arg-type]

    label("p1", "accepted")
    label("p2", "dismissed")
    label("x1", "accepted")
    label("x2", "dismissed")
    s = repo_stats(store, REPO)
    assert (s.regular.posted, s.regular.accepted, s.regular.dismissed) == (2, 1, 1)
    assert (s.explore.posted, s.explore.accepted, s.explore.dismissed) == (2, 1, 1)
    assert (s.posted, s.suppressed) == (4, 2)

    # clear dismissals feed the filter's "do not raise again" list; silence does not
    label("p1", "weak_dismissed", 0.2, "untouched")
    assert dismissed_fingerprints(store, REPO) == ["p2", "x2"]


def test_an_explored_suppression_is_refused() -> None:
    store = Store.open(":memory:")
    store.conn.execute(
        "INSERT INTO reviews (repo, pr, head_sha, created_at) VALUES (?, 1, 'a', ?)", (REPO, NOW)
    )
    with pytest.raises(FindingRecordError):
        record_review_findings(
            store, review_id=1, repo=REPO, pr=1, decisions=[D("s", "suppress", 0.1, explore=True)],
            comment_ids={}, now=NOW,
        )  # fmt: skip
    assert store.conn.execute("SELECT COUNT(*) FROM findings").fetchone()[0] == 0
