"""Retrain a repo's acceptance model from its labels; keep every version; never ship a worse one.

A retrain is due after `min_new_labels` new training labels (a few: three dismissals can change a
decision), or once a day when any arrived, the first model included. The candidate is judged on
labels newer than everything the active model saw (a time split): it is fitted on the labels the
active model was trained on, and both are scored on the new ones, so the active model is never
judged on its own training rows (which made every retrain after the first look worse). With no
active model the newest labels (`holdout_fraction`, at least `min_holdout`) are held back and the
prior is the baseline. If the candidate's log loss on the held-back labels is worse than the
baseline's, it is stored with its metrics but not activated: the previous version stays (is
restored as) the active one. Otherwise it is refitted on all labels and activated. Log loss, not
AUC, decides, because it is defined even when the held-back labels are all of one kind; AUC is
recorded next to it, with the decision, both scores and the rows used.

The org layer: a repo's model is the prior, an org layer fitted on the labels of the other repos
of its org (same installation, same owner) and its own repo layer (`acceptance.train`). Before a
repo has a model of its own, the model in force (and the baseline of its first candidate) is the
org model: the prior plus the org layer of its org's other repos. After every retrain the org
model is refitted on all the org's labels and stored under the scope `org:<owner>`: a new repo
of the org is reviewed with it from its first pull request.

Model parameters are stored as JSON (`AcceptanceModel.to_json`), never pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reviewbot.app import records
from reviewbot.app.records import OrgTenant, Tenant
from reviewbot.app.store import Store
from reviewbot.core.domain import Candidate
from reviewbot.core.feedback import resolve_outcome, without_suggestion
from reviewbot.filter.acceptance import AcceptanceModel, HistoryRow, auc, org_of, train
from reviewbot.filter.signals import restore_signals

TrainFn = Callable[[Sequence[HistoryRow], AcceptanceModel], AcceptanceModel]


@dataclass(frozen=True, slots=True)
class RetrainPolicy:
    #: New labels that trigger a retrain at once: a few can change a decision.
    min_new_labels: int = 3
    max_age: timedelta = timedelta(days=1)
    #: Held back from the first model only (later ones are judged on the labels after the active one).
    holdout_fraction: float = 0.2
    min_holdout: int = 1
    min_train: int = 2
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
    return restore_signals(
        Candidate(
            id=str(r["id"]),
            path=r["path"],
            line=r["line"],
            body=without_suggestion(r["body"]),
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
        ),
        features,
    )


def labelled_findings(store: Store, t: Tenant) -> list[LabelledFinding]:
    """The tenant's posted findings that have a training outcome, oldest outcome first.

    Explored comments are included (that is why they were posted); suppressed candidates and
    'suppressed_followup' labels are not; 'untouched' ones are, with their weak weight
    (see docs/feedback.md).
    """
    labels = records.labels_by_finding(store, t)
    out: list[LabelledFinding] = []
    if not labels:
        return out
    for r in records.posted_finding_rows(store, t):
        mine = labels.get(r["id"], [])
        outcome = resolve_outcome([lb.as_vote() for lb in mine], include_untouched=True)
        if outcome is None:
            continue
        accepted = outcome.label == "accepted"
        row = HistoryRow(candidate=_candidate(r), accepted=accepted, at=outcome.at, weight=outcome.weight)
        size = json.loads(r["features"] or "{}").get("review_size", 1)
        row.review_size = size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 1
        out.append(LabelledFinding(row=row, weight=outcome.weight, feedback_id=max(lb.id for lb in mine)))
    out.sort(key=lambda lf: (lf.row.at, lf.feedback_id))
    return out


def org_tenants(store: Store, t: Tenant) -> list[Tenant]:
    """The repos with labels of `t`'s org as its installation sees them (`t` included if it has any)."""
    org = org_of(t.repo)
    mine = (x for x in records.tenants_with_labels(store) if x.installation_id == t.installation_id)
    return [x for x in mine if org_of(x.repo) == org]


def other_org_rows(store: Store, t: Tenant) -> list[HistoryRow]:
    """The training rows of the other repos of `t`'s org (the org layer of `t`'s model)."""
    return [lf.row for x in org_tenants(store, t) if x.repo != t.repo for lf in labelled_findings(store, x)]


def is_due(
    store: Store, t: Tenant, *, now: datetime, policy: RetrainPolicy = RetrainPolicy()
) -> tuple[bool, str]:
    """(due?, why): enough new labels since the last version, or any new label a day old.

    The age rule counts from the last version, or, before the first one, from the oldest label:
    the daily trigger creates the first model too."""
    versions = records.model_versions(store, t)
    last = versions[-1] if versions else None
    seen = int(last.metrics.get("feedback_id_max", 0)) if last else 0
    new = records.count_labels_after(store, t, seen)
    if new >= policy.min_new_labels:
        return True, f"{new} new labels (>= {policy.min_new_labels})"
    if new > 0:
        since = last.created_at if last else records.first_label_at(store, t, seen)
        age = now - datetime.fromisoformat(since) if since else timedelta(0)
        if age >= policy.max_age:
            what = "the last model is" if last else "there is no model yet and the oldest label is"
            return True, f"{new} new labels and {what} {age} old"
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


def _time_split(
    data: Sequence[LabelledFinding], current: records.ModelVersion | None, policy: RetrainPolicy
) -> tuple[list[LabelledFinding], list[LabelledFinding], str]:
    """(train, held back, how): the labels after everything the active model saw, or, before
    the first model, the newest `holdout_fraction` (the prior saw none of this repo's labels)."""
    if current is not None:
        seen = int(current.metrics.get("feedback_id_max", 0))
        older = [lf for lf in data if lf.feedback_id <= seen]
        return older, [lf for lf in data if lf.feedback_id > seen], f"after v{current.version}"
    n_hold = max(policy.min_holdout, int(len(data) * policy.holdout_fraction))
    if len(data) - n_hold < policy.min_train:
        return list(data), [], "newest"
    return list(data[:-n_hold]), list(data[-n_hold:]), "newest"


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def retrain_repo(
    store: Store,
    t: Tenant,
    *,
    now: datetime,
    prior: AcceptanceModel,
    policy: RetrainPolicy = RetrainPolicy(),
    train_fn: TrainFn | None = None,
) -> RetrainResult:
    """Fit, compare on the held-back recent labels, store the new version, activate it or not."""
    others = other_org_rows(store, t) if train_fn is None else []
    fit: TrainFn = train_fn or (lambda rows, base: train([*others, *rows], base, repo=t.repo))
    data = labelled_findings(store, t)
    current = next((v for v in reversed(records.model_versions(store, t)) if v.active), None)
    older, recent, split = _time_split(data, current, policy)
    if current is not None and not recent:
        return RetrainResult(t.repo, None, False, f"no labels newer than v{current.version}")
    if not recent or len(older) < policy.min_train:
        return RetrainResult(t.repo, None, False, f"only {len(data)} labelled findings")
    hold_rows = [lf.row for lf in recent]
    hold_y = [r.accepted for r in hold_rows]
    hold_w = [lf.weight for lf in recent]

    # in force before the repo's first model: the org layer of the other repos (or the prior)
    baseline = AcceptanceModel.from_json(current.params) if current else fit([], prior) if others else prior
    base_scores = _score(baseline, hold_rows)
    cand_scores = _score(fit([lf.row for lf in older], prior), hold_rows)
    new_ll, old_ll = _log_loss(cand_scores, hold_y, hold_w), _log_loss(base_scores, hold_y, hold_w)
    better = new_ll <= old_ll + policy.tolerance
    # Ship a model that saw every label, once the held-back ones have vouched for the method.
    final = fit([lf.row for lf in data], prior) if better else fit([lf.row for lf in older], prior)
    metrics: dict[str, Any] = {
        "split": split,
        "holdout_n": len(recent),
        "holdout_findings": [int(lf.row.candidate.id) for lf in recent],
        "holdout_feedback_ids": [lf.feedback_id for lf in recent],
        "train_feedback_id_max": max((lf.feedback_id for lf in older), default=0),
        "candidate_train_n": len(older),
        "holdout_log_loss": round(new_ll, 6),
        "holdout_auc": _finite(auc(cand_scores, hold_y)),
        "previous_version": current.version if current else None,
        "previous_log_loss": round(old_ll, 6),
        "previous_auc": _finite(auc(base_scores, hold_y)),
        "n_train": len(data) if better else len(older),
        "accept_rate": round(sum(lf.row.accepted for lf in data) / len(data), 6),
        "feedback_id_max": max(lf.feedback_id for lf in data),
        "decision": "activated" if better else "kept_previous",
        "org_rows": len(others),
    }
    version = records.add_model_version(
        store,
        t,
        params=final.to_json(),
        metrics=metrics,
        n_labels=metrics["n_train"],
        activate=better,
        now=now.isoformat(),
    )
    reason = (
        f"v{version} log loss {new_ll:.4f} <= {old_ll:.4f} on {len(recent)} recent labels"
        if better
        else f"v{version} log loss {new_ll:.4f} > {old_ll:.4f} on {len(recent)} recent labels: "
        f"kept {'v' + str(current.version) if current else 'the prior'}"
    )
    return RetrainResult(t.repo, version, better, reason, metrics)


def refresh_org_model(store: Store, t: Tenant, *, now: datetime, prior: AcceptanceModel) -> int | None:
    """Refit `t`'s org model on every labelled finding of the org's repos and store it as the
    active `org:<owner>` version; its number, or None when the org has no labels yet."""
    repos = org_tenants(store, t)
    rows = [lf.row for x in repos for lf in labelled_findings(store, x)]
    if not rows:
        return None
    org = org_of(t.repo)
    # train() for a repo with no rows of its own returns the prior plus the org layer: the org model
    model = train(rows, prior, repo=f"{org}/")
    metrics = {"repos": [x.repo for x in repos], "n_train": len(rows), "trigger": t.repo}
    return records.add_model_version(
        store,
        OrgTenant(t.installation_id, org),
        params=model.to_json(),
        metrics=metrics,
        n_labels=len(rows),
        activate=True,
        now=now.isoformat(),
    )


def activate(store: Store, t: Tenant, version: int) -> None:
    """Make `version` the active model of the repo (a manual rollback)."""
    if not records.activate_model_version(store, t, version):
        raise ValueError(f"{t.repo} has no model version {version}")


def run_retrain_job(
    store: Store,
    t: Tenant,
    *,
    now: datetime,
    prior: AcceptanceModel,
    policy: RetrainPolicy = RetrainPolicy(),
    force: bool = False,
) -> RetrainResult:
    """The worker's 'retrain' job: retrain when due (or forced), otherwise say why not."""
    due, why = is_due(store, t, now=now, policy=policy)
    if not (due or force):
        return RetrainResult(t.repo, None, False, f"not due: {why}")
    result = retrain_repo(store, t, now=now, prior=prior, policy=policy)
    if result.version is not None:  # new labels were used: the org's new repos start from them too
        refresh_org_model(store, t, now=now, prior=prior)
    return result


def retrain_handler(
    store: Store,
    *,
    prior: Callable[[], AcceptanceModel],
    now: Callable[[], datetime],
    policy: RetrainPolicy = RetrainPolicy(),
) -> Callable[[Any], Awaitable[None]]:
    """The worker handler for job kind 'retrain' (job.installation_id, job.repo; payload
    {'force': true} skips the due check). It runs on the worker's loop, not in a thread: the
    store's one connection must not see two transactions at once. A fit takes seconds, well
    inside a job lease."""

    async def retrain(job: Any) -> None:
        force = bool((job.payload or {}).get("force"))
        t = Tenant(int(job.installation_id), str(job.repo))
        run_retrain_job(store, t, now=now(), prior=prior(), policy=policy, force=force)

    return retrain
