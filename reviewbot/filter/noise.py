"""The noise filter: severity -> dedup -> acceptance -> select, one Decision per candidate.

Pure: the acceptance model and settings are passed in, and the same input gives the same output.
Candidates with the same (repo, pr) are one review: they are clustered together and share the
per-PR budget. Every candidate comes back, in input order, posted or with why it was not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from reviewbot.core.domain import Candidate, Decision
from reviewbot.core.vocabulary import normalise_severity
from reviewbot.filter.acceptance import DEFAULT_THRESHOLD, AcceptanceModel, Example, HistoryRow, with_support
from reviewbot.filter.dedup import (
    DedupSettings,
    FingerprintIndex,
    claim_tokens,
    cluster_candidates,
    fingerprints,
)
from reviewbot.filter.select import SEVERITY_WEIGHT, Choice, resolve_threshold, select
from reviewbot.filter.severity import Assessment, assess, meets_minimum
from reviewbot.filter.suppression import NOTHING, Learned

#: The reason a candidate the verification step refuted is suppressed with.
REFUTED = "refuted by verification"


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
    #: with enough history, post what is this many times as likely as the repo's average finding
    #: (0.8 chosen on the per-source history-CV of bench/filter_eval.py: F1 0.246 vs 0.210 at 1.0)
    rate_lift: float | None = 0.8

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


def review_sizes(candidates: Sequence[Candidate]) -> list[int]:
    """For each candidate of one review, how many remarks its reviewer made alongside it: the
    findings of the reply that listed it when known (rank and size then describe one ordered
    reply, as a tool's whole review does in the data the prior learned from), else how many
    candidates its own source raised in the review."""
    counts: dict[str, int] = {}
    for c in candidates:
        counts[c.source or "unknown"] = counts.get(c.source or "unknown", 0) + 1
    return [c.reply_size if c.reply_size else counts[c.source or "unknown"] for c in candidates]


def _member_priority(
    candidates: Sequence[Candidate], assessments: Sequence[Assessment], members: Sequence[int]
) -> Callable[[int], tuple[float, float]]:
    """`_priority` of a group's k-th member (members index into candidates and assessments)."""
    return lambda k: _priority(candidates[members[k]], assessments[members[k]])


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
    one_review: bool = False,
    learned: Learned = NOTHING,
) -> list[Decision]:
    """One Decision per candidate, in input order; groups by (repo, pr) as separate reviews.

    `one_review`: the candidates are one review even without a PR number (`reviewbot review`
    on a local range), so max_comments applies to them as it does to a pull request.
    `learned`: the kinds this repo's feedback holds back (reviewbot.filter.suppression)."""
    dismissed = FingerprintIndex(list(dismissed_fingerprints))
    posted = FingerprintIndex(list(posted_fingerprints))
    assessments = [assess(c) for c in candidates]
    claims = [claim_tokens(c) for c in candidates]  # tokenised once: clustering and fingerprints
    fps = fingerprints(candidates, claims=claims)
    groups: dict[tuple[str | None, int | None], list[int]] = {}
    for i, c in enumerate(candidates):
        groups.setdefault((c.repo, c.pr), []).append(i)

    decisions: list[Decision | None] = [None] * len(candidates)
    # Score every candidate in one batch (with its cluster support) after clustering all groups.
    support = [1] * len(candidates)
    sources = [1] * len(candidates)
    sizes = [1] * len(candidates)
    cluster_of: dict[int, list[int]] = {}
    for (_repo, pr), members in groups.items():
        sub = [candidates[i] for i in members]
        n_sources = len({c.source or "unknown" for c in sub})
        # candidates without a PR are not one review (as in prepare_history): each its own size
        for i, size in zip(members, review_sizes(sub) if pr is not None else [1] * len(sub), strict=True):
            sources[i] = n_sources
            sizes[i] = size
        clusters, _ = cluster_candidates(
            sub,
            priority=_member_priority(candidates, assessments, members),
            settings=settings.dedup,
            claims=[claims[i] for i in members],
        )
        for cl in clusters:
            global_members = [members[k] for k in cl.members]
            for i in global_members:
                support[i] = cl.support
                cluster_of[i] = global_members
    scores = model.score_examples(
        [
            Example(c, a, s, n, z)
            for c, a, s, n, z in zip(candidates, assessments, support, sources, sizes, strict=True)
        ]
    )
    threshold, _origin = threshold_for(model, settings)

    def decide(
        i: int, verdict: Literal["post", "suppress"], reason: str, cluster: str, explore: bool = False
    ) -> None:
        decisions[i] = Decision(
            candidate=candidates[i],
            decision=verdict,
            reason=reason,
            score=round(scores[i], 6),
            severity=assessments[i].severity,
            category=assessments[i].category,
            cluster=cluster,
            fingerprint=fps[i],
            explore=explore,
            review_size=sizes[i],
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
                elif candidates[j].verdict == "refuted":  # set by reviewbot.review.verify
                    why = candidates[j].verify_reason or "no reason given"
                    decide(j, "suppress", f"{REFUTED}: {why}", name)
                elif (held := _learned_reason(learned, candidates[j], assessments[j])) is not None:
                    decide(j, "suppress", held, name)
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
            max_comments=settings.max_comments if pr is not None or one_review else None,
            exploration_rate=settings.exploration_rate,
            seed=settings.seed,
        )
        for idx, verdict in verdicts.items():
            decide(idx, verdict.decision, verdict.reason, cluster_name[idx], verdict.explore)

    out = [d for d in decisions if d is not None]
    assert len(out) == len(candidates)
    return out


def _learned_reason(learned: Learned, c: Candidate, a: Assessment) -> str | None:
    return learned.reason(rule_id=c.rule_id, source=c.source, category=a.category, title=c.title, body=c.body)


def held_back(learned: Learned, candidate: Candidate) -> bool:
    """Whether the repo's feedback holds this candidate's kind back: the filter suppresses it
    whatever else is said of it, so a verification question about it is not worth its cost."""
    return bool(learned.by_kind) and _learned_reason(learned, candidate, assess(candidate)) is not None


def threshold_for(model: AcceptanceModel, settings: FilterSettings) -> tuple[float, str]:
    """The acceptance threshold this repo's review uses, and where it came from."""
    return resolve_threshold(
        min_acceptance=settings.min_acceptance,
        target_precision=settings.target_precision,
        history_thresholds=model.thresholds,
        default=settings.default_threshold,
        history_rate=model.history_rate(),
        rate_lift=settings.rate_lift,
    )


def silence_note(decisions: Sequence[Decision], threshold: float, origin: str) -> str | None:
    """Why nothing was posted, and which setting would post the best candidate; None when
    something was posted or there was nothing to post. Never silently silent."""
    if not decisions or any(d.decision == "post" for d in decisions):
        return None
    best = max(decisions, key=lambda d: d.score)
    where = f"{best.candidate.path}:{best.candidate.line}" if best.candidate.path else best.candidate.id
    head = (
        f"Nothing posted: {len(decisions)} candidate{'s' if len(decisions) != 1 else ''}; the best scored "
        f"{best.score:.2f} ({best.severity} {best.category} at {where}) against the acceptance threshold "
        f"{threshold:.2f} ({origin})."
    )
    below = [d for d in decisions if d.reason.startswith("below acceptance threshold")]
    if below:
        top = max(below, key=lambda d: d.score)
        value = math.floor(top.score * 100) / 100
        return f"{head} `min_acceptance: {value:.2f}` in the repo config would post it."
    by_severity = [d for d in decisions if d.reason.startswith("below min_severity")]
    if by_severity:
        top = max(by_severity, key=lambda d: d.score)
        return f"{head} It is {top.severity}: `min_severity: {top.severity}` would let it through."
    return f"{head} Every candidate was held back for another reason ({best.reason})."


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
    sizes = [1] * len(rows)
    cluster_ids = [""] * len(rows)
    found = [r.assessment or assess(r.candidate) for r in rows]  # kept on the rows for training
    for (_repo, pr), members in groups.items():
        if pr is None:
            continue  # rows without a PR were not one review; each stands alone
        sub = [rows[i].candidate for i in members]
        n_sources = len({c.source or "unknown" for c in sub})
        for i, size in zip(members, review_sizes(sub), strict=True):
            sources[i] = n_sources
            sizes[i] = size
        assessments = [found[i] for i in members]
        clusters, _ = cluster_candidates(
            sub, priority=_member_priority(sub, assessments, range(len(sub))), settings=dedup
        )
        for cl in clusters:
            for k in cl.members:
                support[members[k]] = cl.support
                cluster_ids[members[k]] = cl.id
    return with_support(rows, support, sources, cluster_ids, found, sizes)
