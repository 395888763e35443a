"""retrain.py: versions with metrics, the due rule, and rollback when a new model is worse."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from reviewbot.app import records
from reviewbot.app.records import OrgTenant, Tenant
from reviewbot.app.store import Store
from reviewbot.core.domain import Candidate
from reviewbot.core.feedback import LabelEvent
from reviewbot.filter.acceptance import AcceptanceModel, FeatureConfig, HistoryRow, train
from reviewbot.learning.retrain import (
    RetrainPolicy,
    activate,
    is_due,
    labelled_findings,
    retrain_repo,
    run_retrain_job,
)

try:  # tests/ as a package (tests/__init__.py) or as a plain directory on sys.path
    from tests.feedback_data import add_finding
except ImportError:
    from feedback_data import add_finding  # type: ignore[no-redef]

REPO = "acme/shop"
T = Tenant(1, REPO)
NOW = datetime(2026, 2, 1, tzinfo=UTC)


def active_model(store: Store) -> AcceptanceModel | None:
    params = records.active_model_params(store, T)
    return AcceptanceModel.from_json(params) if params is not None else None


def flat_prior() -> AcceptanceModel:
    """A neutral, small prior (every score 0.5): fast, and independent of the shipped one."""
    return AcceptanceModel(FeatureConfig(n_text=2**12, n_cat=2**8), [])


NOISY = "Avoid a bare `except:`; catch a specific exception class instead."
USEFUL = "SQL built with string formatting from `user_id`: injectable; use a parameterised query."


def _label(store: Store, n: int, body: str, rule: str, accepted: bool, start: int) -> None:
    for i in range(n):
        at = (NOW - timedelta(days=30) + timedelta(hours=start + i)).isoformat()
        fid = add_finding(
            store,
            repo=REPO,
            pr=1 + (start + i) // 10,
            created_at=at,
            path=f"app/m{i % 5}.py",
            category="style" if rule == "py.bare-except" else "security",
            rule_id=rule,
            score=0.5,
            line=start + i + 1,
            body=body,
        )
        label = "accepted" if accepted else "dismissed"
        records.add_label(store, T, LabelEvent(fid, label, "reaction", {"user": "u"}, 1.0, at))


def _probe(model: AcceptanceModel) -> tuple[float, float]:
    common = {"path": "app/x.py", "line": 3, "repo": REPO, "source": "rule"}
    cands = [
        Candidate(id="n", body=NOISY, rule_id="py.bare-except", category="style", **common),
        Candidate(id="u", body=USEFUL, rule_id="py.sql-injection", category="security", **common),
    ]
    noisy, useful = model.score(cands)
    return noisy, useful


@pytest.fixture()
def store() -> Store:
    s = Store.open(":memory:")
    # interleave so both kinds appear in the old and the recent labels
    for k in range(4):
        _label(s, 6, NOISY, "py.bare-except", False, start=k * 12)
        _label(s, 6, USEFUL, "py.sql-injection", True, start=k * 12 + 6)
    return s


def test_retrain_moves_scores_the_way_the_labels_say(store: Store) -> None:
    prior = flat_prior()
    assert len(labelled_findings(store, T)) == 48
    due, why = is_due(store, T, now=NOW)
    assert due, why
    result = retrain_repo(store, T, now=NOW, prior=prior)
    assert result.activated and result.version == 1, result.reason
    assert result.metrics["holdout_n"] == 9 and result.metrics["previous_version"] is None
    model = active_model(store)
    assert model is not None
    p_noisy, p_useful = _probe(prior)
    m_noisy, m_useful = _probe(model)
    assert m_noisy < p_noisy and m_useful > p_useful
    assert m_useful > m_noisy
    # nothing new since: not due; a day later with one new label: due
    assert not is_due(store, T, now=NOW)[0]
    _label(store, 1, USEFUL, "py.sql-injection", True, start=500)
    assert not is_due(store, T, now=NOW + timedelta(hours=2))[0]
    assert is_due(store, T, now=NOW + timedelta(days=1, minutes=1))[0]


def test_a_worse_model_is_stored_but_the_previous_stays_active(store: Store) -> None:
    prior = flat_prior()
    first = retrain_repo(store, T, now=NOW, prior=prior)
    assert first.activated

    def sabotaged(rows: Sequence[HistoryRow], base: AcceptanceModel) -> AcceptanceModel:
        flipped = [HistoryRow(r.candidate, not r.accepted, r.at, r.support) for r in rows]
        return train(flipped, base, repo=REPO)

    _label(store, 10, NOISY, "py.bare-except", False, start=600)
    _label(store, 10, USEFUL, "py.sql-injection", True, start=700)
    second = retrain_repo(store, T, now=NOW + timedelta(days=1), prior=prior, train_fn=sabotaged)
    assert not second.activated and second.version == 2
    assert second.metrics["decision"] == "kept_previous"
    assert second.metrics["holdout_log_loss"] > second.metrics["previous_log_loss"]
    rows = store.conn.execute(
        "SELECT version, active FROM model_versions WHERE scope = ? ORDER BY version", (f"repo:{REPO}",)
    ).fetchall()
    assert rows == [(1, 1), (2, 0)]
    # a later honest retrain wins again; a manual activate() rolls back to a chosen version
    third = retrain_repo(store, T, now=NOW + timedelta(days=2), prior=prior, policy=RetrainPolicy())
    assert third.version == 3
    activate(store, T, 1)
    assert store.conn.execute(
        "SELECT version FROM model_versions WHERE scope = ? AND active = 1", (f"repo:{REPO}",)
    ).fetchall() == [(1,)]
    with pytest.raises(ValueError):
        activate(store, T, 99)


def test_too_few_labels_is_not_an_error() -> None:
    s = Store.open(":memory:")
    _label(s, 2, USEFUL, "py.sql-injection", True, start=0)
    result = retrain_repo(s, T, now=NOW, prior=flat_prior())
    assert result.version is None and "only 2" in result.reason
    assert active_model(s) is None


def test_each_candidate_is_judged_on_labels_newer_than_the_active_model_saw(store: Store) -> None:
    """Issue #17: v2..v5 were all rejected, judged on rows v1 was trained on. Now every later
    version is scored only on labels that arrived after the active model's, and, the labels
    agreeing with what was learned, each one is activated; the rows used are recorded."""
    prior = flat_prior()
    first = retrain_repo(store, T, now=NOW, prior=prior)
    assert first.activated and first.metrics["split"] == "newest"
    seen = first.metrics["feedback_id_max"]
    for k in range(4):
        _label(store, 2, NOISY, "py.bare-except", False, start=1000 + k * 10)
        _label(store, 2, USEFUL, "py.sql-injection", True, start=1005 + k * 10)
        assert is_due(store, T, now=NOW + timedelta(days=k + 1))[0]
        result = retrain_repo(store, T, now=NOW + timedelta(days=k + 1), prior=prior)
        m = result.metrics
        assert result.activated and result.version == k + 2, result.reason
        assert m["decision"] == "activated" and m["split"] == f"after v{k + 1}"
        assert m["previous_version"] == k + 1 and m["holdout_n"] == 4
        assert min(m["holdout_feedback_ids"]) > seen >= m["train_feedback_id_max"]
        assert len(m["holdout_findings"]) == 4
        seen = m["feedback_id_max"]
    versions = records.model_versions(store, T)
    assert [v.active for v in versions] == [False, False, False, False, True]
    # the recorded decision and both scores are there for the dashboard
    recorded = {"holdout_log_loss", "previous_log_loss", "decision", "holdout_findings"}
    assert recorded <= set(versions[-1].metrics)


def test_a_rejected_candidate_widens_the_next_holdout(store: Store) -> None:
    """After a rejection the active model is still the old one: the next candidate is judged on
    every label after it, those before the rejection included."""
    prior = flat_prior()
    retrain_repo(store, T, now=NOW, prior=prior)

    def sabotaged(rows: Sequence[HistoryRow], base: AcceptanceModel) -> AcceptanceModel:
        flipped = [HistoryRow(r.candidate, not r.accepted, r.at, r.support) for r in rows]
        return train(flipped, base, repo=REPO)

    _label(store, 3, NOISY, "py.bare-except", False, start=900)
    assert not retrain_repo(store, T, now=NOW + timedelta(days=1), prior=prior, train_fn=sabotaged).activated
    _label(store, 3, USEFUL, "py.sql-injection", True, start=950)
    third = retrain_repo(store, T, now=NOW + timedelta(days=2), prior=prior)
    assert third.activated and third.metrics["split"] == "after v1" and third.metrics["holdout_n"] == 6


def test_few_new_labels_make_a_retrain_due() -> None:
    s = Store.open(":memory:")
    _label(s, 2, NOISY, "py.bare-except", False, start=0)
    assert not is_due(s, T, now=NOW - timedelta(days=30, hours=-3))[0]
    _label(s, 1, NOISY, "py.bare-except", False, start=2)
    due, why = is_due(s, T, now=NOW - timedelta(days=30, hours=-3))
    assert due and "3 new labels" in why


def test_the_daily_trigger_creates_the_first_model() -> None:
    """Issue #17: with labels and no version, `is_due` never applied the age rule."""
    s = Store.open(":memory:")
    _label(s, 2, USEFUL, "py.sql-injection", True, start=0)
    first_at = NOW - timedelta(days=30)
    assert not is_due(s, T, now=first_at + timedelta(hours=12))[0]
    due, why = is_due(s, T, now=first_at + timedelta(days=1, minutes=1))
    assert due and "no model yet" in why


def _label_in(store: Store, t: Tenant, n: int, body: str, rule: str, accepted: bool, start: int) -> None:
    for i in range(n):
        at = (NOW - timedelta(days=10) + timedelta(hours=start + i)).isoformat()
        fid = add_finding(
            store,
            repo=t.repo,
            pr=1 + i // 2,
            created_at=at,
            path=f"lib/m{i}.py",
            rule_id=rule,
            category="style" if rule == "py.bare-except" else "security",
            score=0.5,
            line=i + 1,
            body=body,
            installation_id=t.installation_id,
        )
        label = "accepted" if accepted else "dismissed"
        records.add_label(store, t, LabelEvent(fid, label, "reaction", {"user": "u"}, 1.0, at))


def test_the_org_layer_is_learned_from_the_other_repos_and_stored_for_new_ones(store: Store) -> None:
    """acme/shop's 48 labels are the org layer of acme/api (same installation) and of the org
    model a new acme repo starts from; another installation's acme repo is not part of it."""
    prior = flat_prior()
    api, foreign = Tenant(1, "acme/api"), Tenant(2, "acme/elsewhere")
    for k in range(2):
        _label_in(store, api, 2, NOISY, "py.bare-except", False, start=k * 4)
        _label_in(store, api, 2, USEFUL, "py.sql-injection", True, start=k * 4 + 2)
    _label_in(store, foreign, 4, USEFUL, "py.sql-injection", True, start=0)
    result = run_retrain_job(store, api, now=NOW, prior=prior, force=True)
    assert result.version is not None and result.metrics["org_rows"] == 48
    # the first candidate of acme/api was judged against the org layer of acme/shop, not the prior
    baseline_ll = result.metrics["previous_log_loss"]
    assert baseline_ll < 0.69, baseline_ll  # log loss of the flat prior (every score 0.5) is ln 2
    org = records.active_model_version(store, OrgTenant(1, "acme"))
    assert org is not None and org.metrics["repos"] == ["acme/api", "acme/shop"] and org.n_labels == 56
    p_noisy, p_useful = _probe(prior)
    o_noisy, o_useful = _probe(AcceptanceModel.from_json(org.params))
    assert o_noisy < p_noisy - 0.1 and o_useful > p_useful + 0.1
    assert records.active_model_version(store, OrgTenant(2, "acme")) is None  # nothing retrained there
