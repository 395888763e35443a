"""Retrain a repo's acceptance model from its labels; keep every version; never ship a worse one.

A retrain is due after `min_new_labels` new training labels, or once a day when any arrived. The
newest labels (`holdout_fraction`, at least `min_holdout`) are held back: a candidate model is
fitted on the older ones and scored on them next to the active version (or the prior). If the
candidate's log loss on those recent labels is worse than the active one's, it is stored with its
metrics but not activated: the previous version stays (is restored as) the active one. Otherwise
it is refitted on all labels and activated. Log loss, not AUC, decides, because it is defined
even when the held-back labels are all of one kind; AUC is recorded next to it.

Model parameters are stored as JSON (`AcceptanceModel.to_json`), never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reviewbot.acceptance import AcceptanceModel, HistoryRow, auc, train
from reviewbot.feedback import resolve_outcome
from reviewbot.models import Candidate
from reviewbot.stats import repo_scope
from reviewbot.store import Store

#: Whether acceptance.HistoryRow carries a per-row weight (passed to the fit as sample_weight).
#: Without it, weak labels would train as full ones, so 'untouched' (weight 0.2) is left out then.
WEIGHTED_ROWS = "weight" in {f.name for f in dataclasses.fields(HistoryRow)}

TrainFn = Callable[[Sequence[HistoryRow], AcceptanceModel], AcceptanceModel]


@dataclass(frozen=True, slots=True)
class RetrainPolicy:
    min_new_labels: int = 20
    max_age: timedelta = timedelta(days=1)
    holdout_fraction: float = 0.2
    min_holdout: int = 5
    min_train: int = 10
    #: The candidate may be this much worse in log loss and still ship (noise on small holdouts).
    tolerance: float = 0.0


@dataclass(frozen=True, slots=True)
class LabelledFinding:
    """A finding's training row and the id of the newest feedback row behind it."""

    row: HistoryRow
    weight: float
    feedback_id: int


@dataclass(slots=True)
class RetrainResult:
    repo: str
    version: int | None
    activated: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)


def _candidate(r: dict[str, Any]) -> Candidate:
    features = json.loads(r["features"] or "{}")
    return Candidate(
        id=str(r["id"]),
        path=r["path"],
        line=r["line"],
        body=r["body"],
        title=r["title"] or "",
        end_line=r["end_line"],
        side=r["side"] or "RIGHT",
        severity=r["severity"],
        category=r["category"],
        confidence=features.get("confidence"),
        source=r["source"] or "llm",
        rule_id=r["rule_id"],
        symbol=r["symbol"],
        repo=r["repo"],
        pr=r["pr"],
        hunk_size=features.get("hunk_size"),
        language=features.get("language"),
        verdict=features.get("verdict"),
        verify_probability=features.get("verify_probability"),
    )


def labelled_findings(store: Store, repo: str) -> list[LabelledFinding]:
    """The repo's posted findings that have a training outcome, oldest outcome first.

    Explored comments are included (that is why they were posted); suppressed candidates and
    'suppressed_followup' labels are not; 'untouched' ones only when rows carry weights
    (see docs/feedback.md).
    """
    labels: dict[int, list[tuple[str, str, float, str]]] = defaultdict(list)
    newest: dict[int, int] = {}
    for fid, label, source, weight, at, lid in store.conn.execute(
        "SELECT finding_id, label, source, weight, at, id FROM feedback WHERE repo = ?", (repo,)
    ):
        labels[fid].append((label, source, weight, at))
        newest[fid] = max(newest.get(fid, 0), lid)
    cols = [
        "id", "path", "line", "end_line", "side", "title", "body", "severity", "category",
        "source", "rule_id", "symbol", "repo", "pr", "features",
    ]  # fmt: skip
    out: list[LabelledFinding] = []
    if not labels:
        return out
    for values in store.conn.execute(
        f"SELECT {', '.join(cols)} FROM findings WHERE repo = ? AND decision = 'post'", (repo,)
    ):
        r = dict(zip(cols, values, strict=True))
        outcome = resolve_outcome(labels.get(r["id"], []), include_untouched=WEIGHTED_ROWS)
        if outcome is None:
            continue
        extra = {"weight": outcome.weight} if WEIGHTED_ROWS else {}
        row = HistoryRow(
            candidate=_candidate(r), accepted=outcome.label == "accepted", at=outcome.at, **extra
        )
        out.append(LabelledFinding(row=row, weight=outcome.weight, feedback_id=newest[r["id"]]))
    out.sort(key=lambda lf: (lf.row.at, lf.feedback_id))
    return out


def _versions(store: Store, repo: str) -> list[dict[str, Any]]:
    cols = ["id", "version", "params", "metrics", "n_labels", "active", "created_at"]
    return [
        dict(zip(cols, v, strict=True))
        for v in store.conn.execute(
            f"SELECT {', '.join(cols)} FROM model_versions WHERE scope = ? ORDER BY version",
            (repo_scope(repo),),
        )
    ]


def active_model(store: Store, repo: str) -> AcceptanceModel | None:
    """The repo's active model, or None (use the prior / org model)."""
    row = store.conn.execute(
        "SELECT params FROM model_versions WHERE scope = ? AND active = 1 ORDER BY version DESC LIMIT 1",
        (repo_scope(repo),),
    ).fetchone()
    return AcceptanceModel.from_json(row[0]) if row else None


def is_due(
    store: Store, repo: str, *, now: datetime, policy: RetrainPolicy = RetrainPolicy()
) -> tuple[bool, str]:
    """(due?, why): enough new labels since the last version, or a day old with any new label."""
    versions = _versions(store, repo)
    last = versions[-1] if versions else None
    seen = int(json.loads(last["metrics"]).get("feedback_id_max", 0)) if last else 0
    new = store.conn.execute(
        "SELECT COUNT(*) FROM feedback WHERE repo = ? AND id > ? AND source != 'suppressed_followup'",
        (repo, seen),
    ).fetchone()[0]
    if new >= policy.min_new_labels:
        return True, f"{new} new labels (>= {policy.min_new_labels})"
    if last and new > 0:
        age = now - datetime.fromisoformat(last["created_at"])
        if age >= policy.max_age:
            return True, f"{new} new labels and the last model is {age} old"
    return False, f"{new} new labels"


def _log_loss(scores: Sequence[float], labels: Sequence[bool], weights: Sequence[float]) -> float:
    total = sum(weights)
    eps = 1e-6
    ll = sum(
        -w * (math.log(max(p, eps)) if y else math.log(max(1 - p, eps)))
        for p, y, w in zip(scores, labels, weights, strict=True)
    )
    return ll / total if total else float("nan")


def _score(model: AcceptanceModel, rows: Sequence[HistoryRow]) -> list[float]:
    return model.score([r.candidate for r in rows], [r.support for r in rows])


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def retrain_repo(
    store: Store,
    repo: str,
    *,
    now: datetime,
    prior: AcceptanceModel,
    policy: RetrainPolicy = RetrainPolicy(),
    train_fn: TrainFn | None = None,
) -> RetrainResult:
    """Fit, compare on the held-back recent labels, store the new version, activate it or not."""
    fit: TrainFn = train_fn or (lambda rows, base: train(rows, base, repo=repo))
    data = labelled_findings(store, repo)
    n_hold = max(policy.min_holdout, int(len(data) * policy.holdout_fraction))
    if len(data) - n_hold < policy.min_train:
        return RetrainResult(repo, None, False, f"only {len(data)} labelled findings")
    older, recent = data[:-n_hold], data[-n_hold:]
    hold_rows = [lf.row for lf in recent]
    hold_y = [r.accepted for r in hold_rows]
    hold_w = [lf.weight for lf in recent]

    versions = _versions(store, repo)
    current = next((v for v in reversed(versions) if v["active"]), None)
    baseline = AcceptanceModel.from_json(current["params"]) if current else prior
    base_scores = _score(baseline, hold_rows)
    cand_scores = _score(fit([lf.row for lf in older], prior), hold_rows)
    new_ll, old_ll = _log_loss(cand_scores, hold_y, hold_w), _log_loss(base_scores, hold_y, hold_w)
    better = new_ll <= old_ll + policy.tolerance
    # Ship a model that saw every label, once the held-back ones have vouched for the method.
    final = fit([lf.row for lf in data], prior) if better else fit([lf.row for lf in older], prior)
    version = (versions[-1]["version"] + 1) if versions else 1
    metrics: dict[str, Any] = {
        "holdout_n": len(recent),
        "holdout_log_loss": round(new_ll, 6),
        "holdout_auc": _finite(auc(cand_scores, hold_y)),
        "previous_version": current["version"] if current else None,
        "previous_log_loss": round(old_ll, 6),
        "previous_auc": _finite(auc(base_scores, hold_y)),
        "n_train": len(data) if better else len(older),
        "accept_rate": round(sum(lf.row.accepted for lf in data) / len(data), 6),
        "feedback_id_max": max(lf.feedback_id for lf in data),
        "decision": "activated" if better else "kept_previous",
    }
    with store.transaction():
        if better:
            store.conn.execute("UPDATE model_versions SET active = 0 WHERE scope = ?", (repo_scope(repo),))
        store.conn.execute(
            "INSERT INTO model_versions (scope, version, params, metrics, n_labels, active, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                repo_scope(repo),
                version,
                final.to_json(),
                json.dumps(metrics),
                metrics["n_train"],
                int(better),
                now.isoformat(),
            ),
        )
    reason = (
        f"v{version} log loss {new_ll:.4f} <= {old_ll:.4f} on {len(recent)} recent labels"
        if better
        else f"v{version} log loss {new_ll:.4f} > {old_ll:.4f} on {len(recent)} recent labels: "
        f"kept {'v' + str(current['version']) if current else 'the prior'}"
    )
    return RetrainResult(repo, version, better, reason, metrics)


def activate(store: Store, repo: str, version: int) -> None:
    """Make `version` the active model of the repo (a manual rollback)."""
    with store.transaction():
        hit = store.conn.execute(
            "SELECT 1 FROM model_versions WHERE scope = ? AND version = ?", (repo_scope(repo), version)
        ).fetchone()
        if hit is None:
            raise ValueError(f"{repo} has no model version {version}")
        store.conn.execute("UPDATE model_versions SET active = 0 WHERE scope = ?", (repo_scope(repo),))
        store.conn.execute(
            "UPDATE model_versions SET active = 1 WHERE scope = ? AND version = ?",
            (repo_scope(repo), version),
        )


def run_retrain_job(
    store: Store,
    repo: str,
    *,
    now: datetime,
    prior: AcceptanceModel,
    policy: RetrainPolicy = RetrainPolicy(),
    force: bool = False,
) -> RetrainResult:
    """The worker's 'retrain' job: retrain when due (or forced), otherwise say why not."""
    due, why = is_due(store, repo, now=now, policy=policy)
    if not (due or force):
        return RetrainResult(repo, None, False, f"not due: {why}")
    return retrain_repo(store, repo, now=now, prior=prior, policy=policy)


def retrain_handler(
    store: Store,
    *,
    prior: Callable[[], AcceptanceModel],
    now: Callable[[], datetime],
    policy: RetrainPolicy = RetrainPolicy(),
) -> Callable[[Any], Awaitable[None]]:
    """The worker handler for job kind 'retrain' (job.repo; payload {'force': true} skips the due
    check). It runs on the worker's loop, not in a thread: the store's one connection must not see
    two transactions at once. A fit takes seconds, well inside a job lease."""

    async def retrain(job: Any) -> None:
        force = bool((job.payload or {}).get("force"))
        run_retrain_job(store, str(job.repo), now=now(), prior=prior(), policy=policy, force=force)

    return retrain
