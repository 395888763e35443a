"""The noise filter: severity -> dedup -> acceptance -> select, one Decision per candidate.

Pure: the acceptance model and settings are passed in, and the same input gives the same output.
Candidates with the same (repo, pr) are one review: they are clustered together and share the
per-PR budget. Every candidate comes back, in input order, posted or with why it was not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reviewbot.acceptance import DEFAULT_THRESHOLD, AcceptanceModel, Example, HistoryRow, with_support
from reviewbot.dedup import DedupSettings, FingerprintIndex, cluster_candidates, fingerprint
from reviewbot.models import Candidate, Decision
from reviewbot.select import SEVERITY_WEIGHT, Choice, resolve_threshold, select
from reviewbot.severity import Assessment, assess, meets_minimum, normalise_severity


@dataclass(frozen=True, slots=True)
class FilterSettings:
    """What a repo configures about the filter; built once at the edge from its RepoConfig."""

    min_severity: str = "nit"
    min_severity_by_path: dict[str, str] = field(default_factory=dict)
    max_comments: int | None = 10
    min_acceptance: float | None = None
    target_precision: float | None = None
    exploration_rate: float = 0.0
    seed: int = 0
    default_threshold: float = DEFAULT_THRESHOLD
    dedup: DedupSettings = field(default_factory=DedupSettings)

    @classmethod
    def from_config(cls, cfg: Any) -> FilterSettings:
        """Read the filter's attributes off a RepoConfig (or any object carrying them)."""
        defaults = cls()

        def get(name: str, default: Any) -> Any:
            value = getattr(cfg, name, None)
            return default if value is None else value

        min_severity = normalise_severity(str(get("min_severity", defaults.min_severity)))
        by_path = dict(get("min_severity_by_path", {}) or {})
        max_comments = getattr(cfg, "max_comments", defaults.max_comments)
        return cls(
            min_severity=min_severity or defaults.min_severity,
            min_severity_by_path={str(k): str(v) for k, v in by_path.items()},
            max_comments=None if max_comments is None else int(max_comments),
            min_acceptance=_opt_float(getattr(cfg, "min_acceptance", None)),
            target_precision=_opt_float(getattr(cfg, "target_precision", None)),
            exploration_rate=float(get("exploration_rate", 0.0)),
            seed=int(get("exploration_seed", 0)),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _priority(candidate: Candidate, assessment: Assessment) -> tuple[float, float]:
    """Who represents a cluster: severity x confidence, then a rule over an LLM."""
    conf = candidate.confidence if candidate.confidence is not None else 0.5
    is_rule = 1.0 if (candidate.rule_id or candidate.source.startswith("rule")) else 0.0
    return (SEVERITY_WEIGHT.get(assessment.severity, 1.0) * conf, is_rule)


def filter_review(
    candidates: list[Candidate],
    *,
    model: AcceptanceModel,
    settings: FilterSettings,
    dismissed_fingerprints: Iterable[str] = (),
    posted_fingerprints: Iterable[str] = (),
) -> list[Decision]:
    """One Decision per candidate, in input order; groups by (repo, pr) as separate reviews."""
    dismissed = FingerprintIndex(list(dismissed_fingerprints))
    posted = FingerprintIndex(list(posted_fingerprints))
    assessments = [assess(c) for c in candidates]
    fps = [fingerprint(c) for c in candidates]
    groups: dict[tuple[str | None, int | None], list[int]] = {}
    for i, c in enumerate(candidates):
        groups.setdefault((c.repo, c.pr), []).append(i)

    decisions: list[Decision | None] = [None] * len(candidates)
    # Score every candidate in one batch (with its cluster support) after clustering all groups.
    support = [1] * len(candidates)
    sources = [1] * len(candidates)
    cluster_of: dict[int, list[int]] = {}
    for members in groups.values():
        sub = [candidates[i] for i in members]
        n_sources = len({c.source or "unknown" for c in sub})
        for i in members:
            sources[i] = n_sources
        clusters, _ = cluster_candidates(
            sub,
            priority=lambda k, m=members: _priority(candidates[m[k]], assessments[m[k]]),
            settings=settings.dedup,
        )
        for cl in clusters:
            global_members = [members[k] for k in cl.members]
            for i in global_members:
                support[i] = cl.support
                cluster_of[i] = global_members
    scores = model.score_examples(
        [Example(c, a, s, n) for c, a, s, n in zip(candidates, assessments, support, sources, strict=True)]
    )
    threshold, _origin = resolve_threshold(
        min_acceptance=settings.min_acceptance,
        target_precision=settings.target_precision,
        history_thresholds=model.thresholds,
        default=settings.default_threshold,
    )

    def decide(i: int, verdict: str, reason: str, cluster: str, explore: bool = False) -> None:
        decisions[i] = Decision(
            candidate=candidates[i],
            decision=verdict,
            reason=reason,
            score=round(scores[i], 6),  # type: ignore[arg-type]
            severity=assessments[i].severity,
            category=assessments[i].category,
            cluster=cluster,
            fingerprint=fps[i],
            explore=explore,
        )

    for (_repo, pr), members in groups.items():
        choices: list[Choice] = []
        cluster_name: dict[int, str] = {}
        handled: set[int] = set()
        for i in members:
            if i in handled:
                continue
            group = cluster_of[i]
            handled.update(group)
            name = candidates[group[0]].id
            for j in group:
                cluster_name[j] = name
            already = next((j for j in group if fps[j] in posted), None)
            eligible: list[int] = []
            for j in group:
                passes, minimum = meets_minimum(
                    assessments[j].severity,
                    candidates[j].path,
                    settings.min_severity,
                    settings.min_severity_by_path,
                )
                if already is not None:
                    reason = (
                        "already posted"
                        if j == already or fps[j] in posted
                        else (f"duplicate of {candidates[already].id} (already posted)")
                    )
                    decide(j, "suppress", reason, name)
                elif fps[j] in dismissed and candidates[j].path is not None:
                    decide(j, "suppress", "dismissed before", name)
                elif not passes:
                    decide(j, "suppress", f"below min_severity ({minimum})", name)
                elif candidates[j].verdict == "refuted":  # set by reviewbot.verify
                    why = candidates[j].verify_reason or "no reason given"
                    decide(j, "suppress", f"refuted by verification: {why}", name)
                else:
                    eligible.append(j)
            if not eligible:
                continue
            # The representative: the member engineers are most likely to act on (they share the
            # cluster's support, so this compares their own wording and source), then severity
            # x confidence, then a rule over an LLM, then cluster order.
            rep = max(
                eligible,
                key=lambda j: (
                    round(scores[j], 6),
                    _priority(candidates[j], assessments[j]),
                    -group.index(j),
                ),
            )
            for j in eligible:
                if j != rep:
                    decide(j, "suppress", f"duplicate of {candidates[rep].id}", name)
            choices.append(
                Choice(index=rep, score=scores[rep], severity=assessments[rep].severity, fingerprint=fps[rep])
            )
        verdicts = select(
            choices,
            threshold=threshold,
            # the budget is per pull request; candidates with no PR are not one review's comments
            max_comments=settings.max_comments if pr is not None else None,
            exploration_rate=settings.exploration_rate,
            seed=settings.seed,
        )
        for idx, verdict in verdicts.items():
            decide(idx, verdict.decision, verdict.reason, cluster_name[idx], verdict.explore)

    out = [d for d in decisions if d is not None]
    assert len(out) == len(candidates)
    return out


def decisions_as_rows(decisions: Sequence[Decision]) -> list[dict[str, Any]]:
    """The `reviewbot filter` output shape for a list of decisions."""
    return [
        {
            "id": d.candidate.id,
            "decision": d.decision,
            "score": d.score,
            "reason": d.reason,
            "severity": d.severity,
            "category": d.category,
            "cluster": d.cluster,
        }
        for d in decisions
    ]


def prepare_history(rows: Sequence[HistoryRow], dedup: DedupSettings = DedupSettings()) -> list[HistoryRow]:
    """History rows with the cluster support they had in their own review (same repo and pr).

    Training must see `support` computed exactly as the filter computes it at review time.
    """
    groups: dict[tuple[str | None, int | None], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r.candidate.repo, r.candidate.pr), []).append(i)
    support = [1] * len(rows)
    sources = [1] * len(rows)
    cluster_ids = [""] * len(rows)
    found = [r.assessment or assess(r.candidate) for r in rows]  # kept on the rows for training
    for (_repo, pr), members in groups.items():
        if pr is None:
            continue  # rows without a PR were not one review; each stands alone
        sub = [rows[i].candidate for i in members]
        n_sources = len({c.source or "unknown" for c in sub})
        for i in members:
            sources[i] = n_sources
        assessments = [found[i] for i in members]
        clusters, _ = cluster_candidates(
            sub, priority=lambda k, a=assessments, s=sub: _priority(s[k], a[k]), settings=dedup
        )
        for cl in clusters:
            for k in cl.members:
                support[members[k]] = cl.support
                cluster_ids[members[k]] = cl.id
    return with_support(rows, support, sources, cluster_ids, found)
