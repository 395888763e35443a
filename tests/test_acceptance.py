"""The acceptance model: JSON round trip, safe loading, shrinkage towards the prior, learning."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from reviewbot.core.domain import Candidate
from reviewbot.filter.acceptance import (
    AcceptanceModel,
    HistoryRow,
    ModelBank,
    ModelFormatError,
    TrainSettings,
    auc,
    load_prior,
    train,
)

TYPO = "Typo in the comment: 'recieve' should be 'receive'."
BUG = "process_order returns before committing the transaction, so the order is lost on error."


def cand(i: int, body: str, repo: str = "acme/shop", pr: int = 1) -> Candidate:
    return Candidate(id=f"c{i}", path="shop/orders.py", line=i, body=body, source="llm", repo=repo, pr=pr)


def history(n: int, repo: str = "acme/shop") -> list[HistoryRow]:
    """Typos are always dismissed and transaction bugs always accepted in this repo."""
    rows = []
    for i in range(n):
        body = TYPO if i % 2 else BUG
        rows.append(HistoryRow(cand(i, f"{body} ({i})", repo, pr=i // 4), accepted=not i % 2, at=f"{i:05d}"))
    return rows


def test_prior_loads_and_scores_in_unit_interval() -> None:
    prior = load_prior()
    scores = prior.score([cand(1, TYPO), cand(2, BUG)], [1, 3])
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len(prior.layers) == 1


def test_json_round_trip_gives_identical_scores() -> None:
    model = train(history(60), load_prior())
    again = AcceptanceModel.from_json(model.to_json())
    probe = [cand(1, TYPO), cand(2, BUG), cand(3, "Consider a helper here.")]
    assert again.score(probe) == model.score(probe)
    assert again.thresholds == model.thresholds
    assert json.loads(model.to_json())["format"] == "reviewbot-acceptance"


@pytest.mark.parametrize(
    "text",
    [
        "not json at all",
        json.dumps({"format": "something-else"}),
        json.dumps({"format": "reviewbot-acceptance", "version": 99}),
        # a pickle payload is just bytes to us: never unpickled, rejected as not-JSON
        "\x80\x04\x95cos\nsystem\n",
        json.dumps(
            {
                "format": "reviewbot-acceptance",
                "version": 1,
                "features": {"n_text": 16, "n_cat": 4, "ngram_max": 1, "n_numeric": 22},
                "layers": [{"name": "x", "intercept": 0, "indices": [10**9], "coefficients": [1.0]}],
            }
        ),
        json.dumps(
            {
                "format": "reviewbot-acceptance",
                "version": 1,
                "features": {"n_text": 16, "n_cat": 4, "ngram_max": 1, "n_numeric": 22},
                "layers": [{"name": "x", "intercept": 0, "indices": [1], "coefficients": ["os.system"]}],
            }
        ),
    ],
)
def test_loading_rejects_anything_but_our_json(text: str) -> None:
    with pytest.raises(ModelFormatError):
        AcceptanceModel.from_json(text)


def test_few_labels_stay_near_the_prior_many_labels_learn_the_repo() -> None:
    prior = load_prior()
    probe = [cand(1, TYPO + " again"), cand(2, BUG + " again")]
    p_typo, p_bug = prior.score(probe)
    few = train(history(2), prior)
    f_typo, f_bug = few.score(probe)
    assert abs(f_typo - p_typo) < 0.15 and abs(f_bug - p_bug) < 0.15
    many = train(history(200), prior)
    m_typo, m_bug = many.score(probe)
    assert m_bug - m_typo > (p_bug - p_typo) + 0.2
    assert m_typo < p_typo


def test_target_precision_threshold_comes_from_held_out_history() -> None:
    model = train(history(200), load_prior())
    assert model.thresholds
    assert all(0.0 < t < 1.0 and 0.0 <= p <= 1.0 and n > 0 for t, p, n in model.thresholds)


def test_model_bank_shares_org_layer_and_separates_repos() -> None:
    rows = history(80, "acme/shop") + history(80, "acme/api")
    bank = ModelBank(rows, load_prior(), TrainSettings())
    shop = bank.for_repo("acme/shop")
    assert [layer.name for layer in shop.layers] == ["prior", "org:acme", "repo:acme/shop"]
    assert [layer.name for layer in bank.for_repo("other/x").layers] == ["prior"]
    with pytest.raises(ValueError):
        train(rows, load_prior())


def test_auc() -> None:
    assert auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auc([0.5, 0.5], [0, 1]) == 0.5
    assert math.isnan(auc([0.5], [1]))


def rule_cand(i: int, rule_id: str, severity: str, repo: str = "acme/shop", pr: int = 1) -> Candidate:
    return Candidate(
        id=f"r{i}",
        path="shop/orders.py",
        line=i,
        body=f"Rule {rule_id} fired.",
        title=rule_id,
        source=f"rule:{rule_id}",
        rule_id=rule_id,
        severity=severity,
        category="bug",
        repo=repo,
        pr=pr,
    )


def test_query_rules_start_from_their_severity_prior() -> None:
    """A fresh repo posts a high-severity built-in rule finding and holds back a nit one."""
    prior = load_prior()
    high, nit = prior.score([rule_cand(1, "py-eval-exec", "high"), rule_cand(2, "js-console-log", "nit")])
    assert high > 0.5 > nit


def test_a_rule_this_repo_keeps_dismissing_falls_below_the_threshold() -> None:
    rows = [
        HistoryRow(rule_cand(i, "py-eval-exec", "high", pr=i), accepted=False, at=f"{i:03d}")
        for i in range(12)
    ]
    rows += [
        HistoryRow(rule_cand(100 + i, "py-bare-except", "high", pr=i), accepted=True, at=f"{i:03d}")
        for i in range(12)
    ]
    model = train(rows, load_prior())
    dismissed, accepted = model.score(
        [rule_cand(1, "py-eval-exec", "high"), rule_cand(2, "py-bare-except", "high")]
    )
    assert dismissed < 0.5 < accepted
    assert model.rule_counts["py-eval-exec"] == (0.0, 12.0)
    again = AcceptanceModel.from_json(model.to_json())
    assert again.rule_counts == model.rule_counts


def test_weak_labels_count_for_less() -> None:
    strong = [
        HistoryRow(rule_cand(i, "py-eval-exec", "high", pr=i), accepted=False, at=f"{i:03d}")
        for i in range(5)
    ]
    weak = [
        HistoryRow(rule_cand(i, "py-eval-exec", "high", pr=i), accepted=False, at=f"{i:03d}", weight=0.2)
        for i in range(5)
    ]
    probe = [rule_cand(1, "py-eval-exec", "high")]
    assert train(strong, load_prior()).score(probe)[0] < train(weak, load_prior()).score(probe)[0]


def test_weak_labels_keep_their_weight_through_the_cluster_support_pass() -> None:
    """`reviewbot filter` runs prepare_history before training; a weak label must stay weak."""
    from reviewbot.filter.noise import prepare_history

    weak = [
        HistoryRow(rule_cand(i, "py-eval-exec", "high", pr=i), accepted=False, at=f"{i:03d}", weight=0.2)
        for i in range(5)
    ]
    prepared = prepare_history(weak)
    assert [r.weight for r in prepared] == [0.2] * 5
    probe = [rule_cand(1, "py-eval-exec", "high")]
    assert train(prepared, load_prior()).score(probe) == train(weak, load_prior()).score(probe)


def test_rule_counts_that_cannot_be_are_rejected() -> None:
    data = json.loads(load_prior().to_json())
    data["rule_counts"] = {"py-eval-exec": [5, 2]}
    with pytest.raises(ModelFormatError):
        AcceptanceModel.from_json(json.dumps(data))


def _numeric(c: Candidate, review_size: int) -> dict[str, float]:
    from reviewbot.filter.acceptance import NUMERIC, Example
    from reviewbot.filter.severity import assess

    values = load_prior().featurizer().numeric(Example(c, assess(c), review_size=review_size))
    return dict(zip(NUMERIC, values, strict=True))


def test_a_comment_with_no_known_order_is_not_read_as_the_first_of_its_review() -> None:
    """Issue #10: public human comments (no rank) had the position columns of a first remark, and
    their review size those of one reviewer's long review: the prior learned both backwards."""
    unordered = _numeric(cand(1, BUG), review_size=12)
    first = _numeric(replace(cand(1, BUG), rank=0), review_size=12)
    later = _numeric(replace(cand(1, BUG), rank=5), review_size=12)
    assert (unordered["rank_known"], unordered["rank_first"], unordered["log_review_size"]) == (0.0, 0.0, 0.0)
    assert (first["rank_known"], first["rank_first"]) == (1.0, 1.0)
    assert first["log_review_size"] > 0
    assert (later["rank_known"], later["rank_first"]) == (1.0, 0.0)
    assert later["log_rank"] > first["log_rank"] == 0.0


def test_the_shipped_prior_ranks_a_reviewers_first_remark_above_its_later_ones() -> None:
    prior = load_prior()
    ranked = [replace(cand(k, BUG), rank=k) for k in range(6)]
    scores = prior.score(ranked)
    assert scores[0] > scores[1] > scores[5]


def test_a_model_saved_before_the_rank_columns_were_appended_still_reads() -> None:
    """Repo models in a store from before the upgrade keep working until their next retrain."""
    from reviewbot.filter.acceptance import NUMERIC

    model = train(history(60), load_prior())
    old = json.loads(model.to_json())
    last = model.config.n_text + model.config.n_cat + len(NUMERIC) - 2  # the first appended column
    old["features"]["n_numeric"] = len(NUMERIC) - 2
    for layer in old["layers"]:
        kept = [(i, w) for i, w in zip(layer["indices"], layer["coefficients"], strict=True) if i < last]
        layer["indices"], layer["coefficients"] = [i for i, _ in kept], [w for _, w in kept]
    again = AcceptanceModel.from_json(json.dumps(old))
    probe = [cand(1, TYPO), cand(2, BUG)]  # no rank: the appended columns are 0 for them anyway
    assert again.score(probe) == pytest.approx(model.score(probe))
    old["features"]["n_numeric"] = len(NUMERIC) - 5
    with pytest.raises(ModelFormatError):
        AcceptanceModel.from_json(json.dumps(old))
