"""records.py: the one owner of the review, finding, feedback and model tables, tenant by tenant."""

from __future__ import annotations

from reviewbot.app import records
from reviewbot.app.records import NewFinding, Tenant
from reviewbot.app.store import Store
from reviewbot.core.domain import Candidate, Decision
from reviewbot.core.feedback import LabelEvent
from reviewbot.learning.stats import repo_stats

REPO = "acme/shop"
A = Tenant(7, REPO)
B = Tenant(8, REPO)  # another installation, a repository of the same name (transferred, re-created)
NOW = "2026-03-02T09:00:00+00:00"


def D(fp: str, decision: str, score: float, *, explore: bool = False, rule: str | None = None) -> Decision:
    c = Candidate(
        id=fp,
        path="app/a.py",
        line=3,
        body=f"finding {fp}",
        repo=REPO,
        pr=1,
        rule_id=rule,
        confidence=0.7,
        hunk_size=12,
        language="python",
    )
    return Decision(c, decision, "why", score, "medium", "bug", f"cl-{fp}", fp, explore)  # type: ignore[arg-type]


def review_with(
    store: Store, t: Tenant, decisions: list[Decision], comment_ids: dict[str, int]
) -> dict[str, int]:
    review_id = records.claim_review(store, t, 1, "abc", "base", NOW)
    rows = [NewFinding.from_decision(d, pr=1, comment_id=comment_ids.get(d.fingerprint)) for d in decisions]
    ids = records.add_findings(store, t, review_id, rows, NOW)
    return {d.fingerprint: i for d, i in zip(decisions, ids, strict=True)}


def label(store: Store, t: Tenant, fid: int, lab: str, weight: float = 1.0, source: str = "reaction") -> bool:
    return records.add_label(store, t, LabelEvent(fid, lab, source, {"user": "u"}, weight, NOW))  # type: ignore[arg-type]


def test_decisions_recorded_with_explore_flag_comment_ids_and_features(store: Store) -> None:
    decisions = [
        D("p1", "post", 0.9),
        D("p2", "post", 0.8, rule="py.bare-except"),
        D("x1", "post", 0.45, explore=True),
        D("x2", "post", 0.44, explore=True),
        D("s1", "suppress", 0.2, explore=True),  # a suppressed candidate was not explored
    ]
    ids = review_with(store, A, decisions, {"p1": 101, "p2": 102, "x1": 103, "x2": 104, "s1": 105})
    rows = {
        fp: (dec, exp, cid, reason, iid)
        for fp, dec, exp, cid, reason, iid in store.conn.execute(
            "SELECT fingerprint, decision, explore, github_comment_id, reason, installation_id FROM findings"
        )
    }
    assert rows["p1"] == ("post", 0, 101, "why", 7)
    assert rows["x1"] == ("post", 1, 103, "why", 7)
    assert rows["s1"] == ("suppress", 0, None, "why", 7)
    features = store.conn.execute("SELECT features FROM findings WHERE fingerprint = 'p1'").fetchone()[0]
    assert '"confidence": 0.7' in features and '"hunk_size": 12' in features

    for fp, lab in (("p1", "accepted"), ("p2", "dismissed"), ("x1", "accepted"), ("x2", "dismissed")):
        assert label(store, A, ids[fp], lab)
    s = repo_stats(store, A)
    assert (s.regular.posted, s.regular.accepted, s.regular.dismissed) == (2, 1, 1)
    assert (s.explore.posted, s.explore.accepted, s.explore.dismissed) == (2, 1, 1)
    assert (s.posted, s.suppressed) == (4, 1)
    assert records.posted_fingerprints(store, A, 1) == {"p1", "p2", "x1", "x2"}
    assert records.finding_by_comment(store, A, 103) is not None
    assert records.finding_by_comment(store, B, 103) is None


def test_one_dismissal_policy_only_a_clear_no_silences_a_finding(store: Store) -> None:
    """A thumbs-down or a dismissing reply silences a finding; a thread resolved with its lines
    unchanged (0.5) or silence at close (0.2) does not: they only train the model."""
    ids = review_with(store, A, [D(fp, "post", 0.8) for fp in ("down", "reply", "thread", "quiet")], {})
    label(store, A, ids["down"], "dismissed")
    label(store, A, ids["reply"], "dismissed", source="reply")
    label(store, A, ids["thread"], "weak_dismissed", 0.5, source="thread")
    label(store, A, ids["quiet"], "weak_dismissed", 0.2, source="untouched")
    assert records.dismissed_fingerprints(store, A) == {"down", "reply"}
    # the most direct signal decides (feedback.resolve_outcome): a thumbs-up does not undo a
    # dismissing reply, an accepting reply undoes a thumbs-down
    records.add_label(store, A, LabelEvent(ids["reply"], "accepted", "reaction", {"user": "v"}, 1.0, NOW))
    records.add_label(store, A, LabelEvent(ids["down"], "accepted", "reply", {"user": "w"}, 1.0, NOW))
    assert records.dismissed_fingerprints(store, A) == {"reply"}


def test_tenants_never_see_each_others_rows(store: Store) -> None:
    ids = review_with(store, A, [D("p1", "post", 0.9)], {"p1": 101})
    # B cannot label A's finding, even naming its id; A's labels and models are not B's
    assert not label(store, B, ids["p1"], "dismissed")
    assert label(store, A, ids["p1"], "dismissed")
    assert records.dismissed_fingerprints(store, B) == set()
    assert records.labels_by_finding(store, B) == {}
    assert records.remove_labels(store, B, ids["p1"], "reaction") == 0
    version = records.add_model_version(store, A, params="{}", metrics={}, n_labels=3, activate=True, now=NOW)
    assert version == 1
    assert records.active_model_params(store, A) == "{}"
    assert records.active_model_params(store, B) is None
    assert records.model_versions(store, B) == []
    assert not records.activate_model_version(store, B, 1)
    assert records.posted_fingerprints(store, B, 1) == set()
    assert repo_stats(store, B).candidates == 0
    # a model written before records.py (no installation id) is nobody's
    store.conn.execute(
        "INSERT INTO model_versions (scope, version, params, active, created_at) VALUES (?, 9, '{}', 1, ?)",
        (f"repo:{REPO}", NOW),
    )
    assert records.active_model_params(store, B) is None


def test_model_versions_one_active_per_tenant_and_rollback(store: Store) -> None:
    for n in (1, 2, 3):
        records.add_model_version(
            store, A, params=f'{{"v": {n}}}', metrics={"n": n}, n_labels=n, activate=n != 3, now=NOW
        )
    versions = records.model_versions(store, A)
    assert [(v.version, v.active, v.metrics) for v in versions] == [
        (1, False, {"n": 1}),
        (2, True, {"n": 2}),
        (3, False, {"n": 3}),
    ]
    assert records.activate_model_version(store, A, 1)
    assert [v.active for v in records.model_versions(store, A)] == [True, False, False]
    assert records.active_model_params(store, A) == '{"v": 1}'
    assert not records.activate_model_version(store, A, 99)


def test_review_rows_claim_finish_and_recover(store: Store) -> None:
    review_id = records.claim_review(store, A, 5, "head1", "base", NOW)
    assert records.claim_review(store, A, 5, "head1", "base", NOW) == review_id
    assert records.review_state(store, A, 5, "head1") == (review_id, "pending")
    assert records.review_state(store, B, 5, "head1") is None
    records.finish_review(
        store,
        A,
        review_id,
        github_review_id=77,
        check_run_id=None,
        funnel={"posted": 1},
        usage={},
        findings=[NewFinding.from_decision(D("p", "post", 0.9), pr=5, comment_id=501)],
        now=NOW,
    )
    assert records.review_state(store, A, 5, "head1") == (review_id, "posted")
    assert records.last_posted_head(store, A, 5, other_than="head2") == "head1"
    assert records.last_posted_head(store, B, 5, other_than="head2") is None
    # recovered after a crash: only comments not stored yet are added, the check run kept
    again = [
        NewFinding(
            pr=5,
            path="a.py",
            line=3,
            side="RIGHT",
            body="x",
            decision="post",
            reason="r",
            fingerprint="p",
            comment_id=501,
        ),
        NewFinding(
            pr=5,
            path="a.py",
            line=9,
            side="RIGHT",
            body="y",
            decision="post",
            reason="r",
            fingerprint="q",
            comment_id=502,
        ),
    ]
    records.record_recovered_review(
        store, A, review_id, github_review_id=77, check_run_id=9, comments=again, now=NOW
    )
    assert records.review_check_run(store, A, review_id) == 9
    assert sorted(f.comment_id or 0 for f in records.pr_findings(store, A, 5)) == [501, 502]


def test_the_migration_gives_old_models_their_installation(store: Store) -> None:
    """Model versions written before records.py (no installation id) belong to the installation
    of their repository once migrated; one whose repository is not installed stays nobody's."""
    store.conn.execute("INSERT INTO installations (id, account, created_at) VALUES (7, 'acme', ?)", (NOW,))
    store.conn.execute(
        "INSERT INTO repositories (id, installation_id, full_name, added_at) VALUES (1, 7, ?, ?)", (REPO, NOW)
    )
    for scope in (f"repo:{REPO}", "repo:gone/away"):
        store.conn.execute(
            "INSERT INTO model_versions (scope, version, params, active, created_at) "
            "VALUES (?, 1, '{}', 1, ?)",
            (scope, NOW),
        )
    from reviewbot.app.store import MIGRATIONS, _split_sql

    # the rows above are as retrain wrote them before migration 5; apply its statements to them
    backfill = next(ddl for version, _, ddl in MIGRATIONS if version == 5)
    for statement in _split_sql(backfill):
        store.conn.execute(statement)
    assert records.active_model_params(store, A) == "{}"
    assert records.active_model_params(store, Tenant(7, "gone/away")) is None


def test_remove_labels_matches_provenance_values_as_json(store: Store) -> None:
    """A reaction removed on GitHub removes its label: matched by provenance key and JSON value
    (a number stays a number), on either database."""
    ids = review_with(store, A, [D("p1", "post", 0.9)], {"p1": 101})
    for user, reaction in (("u1", 11), ("u2", 12)):
        ev = LabelEvent(ids["p1"], "accepted", "reaction", {"user": user, "reaction_id": reaction}, 1.0, NOW)  # type: ignore[arg-type]
        assert records.add_label(store, A, ev)
    assert records.remove_labels(store, A, ids["p1"], "reaction", reaction_id="11") == 0  # text is not 11
    assert records.remove_labels(store, A, ids["p1"], "reaction", user="u1", reaction_id=11) == 1
    assert records.remove_labels(store, A, ids["p1"], "reaction", user="u1") == 0
    assert records.remove_labels(store, A, ids["p1"], "reaction", reaction_id=12) == 1
