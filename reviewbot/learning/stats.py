"""What the bot's comments achieved in one repo: the figures the dashboard and `reviewbot stats` show.

`load_repo_data` is the only function that reads the store (through `records`, one tenant's
rows); everything after it is pure over the rows it returns, so the dashboard, the CLI and the
tests compute exactly the same numbers.

Definitions (also in docs/feedback.md):
- a finding's outcome combines its labels with `feedback.resolve_outcome` (the most direct source
  wins); silence when the PR closed ("untouched") is not an outcome, it is counted on its own;
- precision = accepted / (accepted + dismissed) over posted findings with an outcome;
- explored comments (posted near the threshold to keep the model honest, `explore=1`) are counted
  apart from the regular ones, so exploration never flatters or hurts the headline precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from reviewbot.app import records
from reviewbot.app.records import Tenant
from reviewbot.core.config_schema import DEFAULT_EXCLUDE
from reviewbot.core.feedback import Outcome, resolve_outcome

if TYPE_CHECKING:  # annotations only: the caller opens the store; suppression loads numpy
    from reviewbot.app.store import Store
    from reviewbot.filter.suppression import Suppression


def pct(value: float | None) -> str:
    """0.5234 -> '52.3%'; None (nothing labelled yet) -> '–'."""
    return "–" if value is None else f"{value * 100:.1f}%"


@dataclass(frozen=True, slots=True)
class FindingRow:
    id: int
    pr: int
    path: str | None
    category: str | None
    rule: str
    has_rule_id: bool
    score: float | None
    decision: str
    explore: bool
    created_at: str
    fingerprint: str
    outcome: Outcome | None
    untouched: bool
    followup_changed: bool | None  # suppressed only: did the code change anyway?


@dataclass(frozen=True, slots=True)
class ModelVersion:
    version: int
    n_labels: int
    active: bool
    created_at: str
    metrics: dict[str, object]


@dataclass(slots=True)
class RepoData:
    repo: str
    findings: list[FindingRow]
    models: list[ModelVersion]
    #: the kinds this repo's feedback holds back now (reviewbot.filter.suppression), rules first
    learned: list[Suppression] = field(default_factory=list)


@dataclass(slots=True)
class Tally:
    """Posted / accepted / dismissed counts of a group of findings."""

    key: str
    posted: int = 0
    accepted: int = 0
    dismissed: int = 0

    @property
    def labelled(self) -> int:
        return self.accepted + self.dismissed

    @property
    def precision(self) -> float | None:
        return self.accepted / self.labelled if self.labelled else None

    @property
    def dismissal_rate(self) -> float | None:
        return self.dismissed / self.labelled if self.labelled else None

    def add(self, f: FindingRow) -> None:
        self.posted += 1
        if f.outcome is not None:
            if f.outcome.label == "accepted":
                self.accepted += 1
            else:
                self.dismissed += 1

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "posted": self.posted,
            "accepted": self.accepted,
            "dismissed": self.dismissed,
            "precision": self.precision,
        }


@dataclass(slots=True)
class RepoStats:
    repo: str
    candidates: int = 0
    posted: int = 0
    suppressed: int = 0
    labelled: int = 0
    accepted: int = 0
    dismissed: int = 0
    untouched: int = 0
    regular: Tally = field(default_factory=lambda: Tally("regular"))
    explore: Tally = field(default_factory=lambda: Tally("explore"))
    over_time: list[Tally] = field(default_factory=list)  # key = ISO date of the week's Monday
    by_category: list[Tally] = field(default_factory=list)
    by_rule: list[Tally] = field(default_factory=list)
    top_dismissed_rules: list[Tally] = field(default_factory=list)
    by_path: list[Tally] = field(default_factory=list)
    suppressed_followed_up: int = 0
    suppressed_changed: int = 0
    model: ModelVersion | None = None
    model_history: list[ModelVersion] = field(default_factory=list)
    learned: list[Suppression] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        """Headline precision: regular (not explored) posted comments with an outcome."""
        return self.regular.precision

    def as_dict(self) -> dict[str, object]:
        def tallies(ts: list[Tally]) -> list[dict[str, object]]:
            return [t.as_dict() for t in ts]

        return {
            "repo": self.repo,
            "funnel": {
                "candidates": self.candidates,
                "posted": self.posted,
                "labelled": self.labelled,
                "accepted": self.accepted,
            },
            "suppressed": self.suppressed,
            "dismissed": self.dismissed,
            "untouched": self.untouched,
            "precision": self.precision,
            "regular": self.regular.as_dict(),
            "explore": self.explore.as_dict(),
            "over_time": tallies(self.over_time),
            "by_category": tallies(self.by_category),
            "by_rule": tallies(self.by_rule),
            "top_dismissed_rules": tallies(self.top_dismissed_rules),
            "by_path": tallies(self.by_path),
            "suppressed_followup": {
                "followed_up": self.suppressed_followed_up,
                "code_changed": self.suppressed_changed,
            },
            "model": asdict(self.model) if self.model else None,
            "model_history": [asdict(m) for m in self.model_history],
            "learned_suppressions": [x.as_dict() for x in self.learned],
        }


# --------------------------------------------------------------------------- I/O: read the store


def load_repo_data(store: Store, t: Tenant) -> RepoData:
    """Read a tenant's findings, their labels and its model versions (through `records`)."""
    labels = records.labels_by_finding(store, t)
    findings: list[FindingRow] = []
    for f in records.stats_findings(store, t):
        rows = [lb.as_vote() for lb in labels.get(f.id, [])]
        followups = [lab for lab, src, _w, _at in rows if src == "suppressed_followup"]
        findings.append(
            FindingRow(
                id=f.id,
                pr=f.pr,
                path=f.path,
                category=f.category,
                rule=f.rule_id or (f"{f.source}" if f.source else "unknown"),
                has_rule_id=bool(f.rule_id),
                score=f.score,
                decision=f.decision,
                explore=f.explore,
                created_at=f.created_at,
                fingerprint=f.fingerprint,
                outcome=resolve_outcome(rows, include_untouched=False),
                untouched=any(src == "untouched" for _l, src, _w, _a in rows),
                followup_changed=(followups[-1] == "accepted") if followups else None,
            )
        )
    models = [
        ModelVersion(
            version=v.version,
            n_labels=v.n_labels,
            active=v.active,
            created_at=v.created_at,
            metrics=v.metrics,
        )
        for v in records.model_versions(store, t)
    ]
    from reviewbot.filter import suppression  # numpy via dedup: only where a repo's data is read

    held = suppression.from_rows(records.labelled_kinds(store, t)).by_kind.values()
    learned = sorted(held, key=lambda x: (x.kind.what != "rule", x.kind.what, x.kind.key))
    return RepoData(repo=t.repo, findings=findings, models=models, learned=learned)


def repo_stats(store: Store, t: Tenant) -> RepoStats:
    return compute_stats(load_repo_data(store, t))


# --------------------------------------------------------------------------- pure


def week_of(iso: str) -> str:
    """The Monday (ISO date) of the week an ISO timestamp falls in."""
    d = datetime.fromisoformat(iso.replace("Z", "+00:00")).date()
    return (d - timedelta(days=d.weekday())).isoformat()


def path_group(path: str | None, depth: int = 2) -> str:
    """'src/gen/a/b.py' -> 'src/gen/**': the directory a path-exclusion glob would name."""
    if not path:
        return "(no path)"
    parts = path.split("/")[:-1][:depth]
    return "/".join(parts) + "/**" if parts else path


def compute_stats(data: RepoData) -> RepoStats:
    s = RepoStats(repo=data.repo)
    weeks: dict[str, Tally] = {}
    cats: dict[str, Tally] = {}
    rules: dict[str, Tally] = {}
    paths: dict[str, Tally] = {}
    for f in data.findings:
        s.candidates += 1
        if f.decision != "post":
            s.suppressed += 1
            if f.followup_changed is not None:
                s.suppressed_followed_up += 1
                s.suppressed_changed += int(f.followup_changed)
            continue
        s.posted += 1
        if f.outcome is not None:
            s.labelled += 1
            if f.outcome.label == "accepted":
                s.accepted += 1
            else:
                s.dismissed += 1
        elif f.untouched:
            s.untouched += 1
        if f.explore:
            s.explore.add(f)
            continue
        s.regular.add(f)
        wk = week_of(f.created_at)
        weeks.setdefault(wk, Tally(wk)).add(f)
        cat = f.category or "uncategorised"
        cats.setdefault(cat, Tally(cat)).add(f)
        rules.setdefault(f.rule, Tally(f.rule)).add(f)
        grp = path_group(f.path)
        paths.setdefault(grp, Tally(grp)).add(f)
    s.over_time = [weeks[k] for k in sorted(weeks)]
    s.by_category = sorted(cats.values(), key=lambda t: (-t.posted, t.key))
    s.by_rule = sorted(rules.values(), key=lambda t: (-t.posted, t.key))
    s.by_path = sorted(paths.values(), key=lambda t: (-t.posted, t.key))
    s.top_dismissed_rules = sorted(
        (t for t in rules.values() if t.dismissed),
        key=lambda t: (-t.dismissed, -(t.dismissal_rate or 0.0), t.key),
    )[:5]
    s.model_history = list(data.models)
    active = [m for m in data.models if m.active]
    s.model = active[-1] if active else None
    s.learned = list(data.learned)
    return s


@dataclass(frozen=True, slots=True)
class ConfigSuggestion:
    """YAML-ready changes plus the evidence for each, so a team can judge before committing."""

    changes: dict[str, object]
    reasons: list[str]


def suggest_config(
    data: RepoData,
    *,
    min_samples: int = 10,
    max_dismissal_rate: float = 0.7,
    target_precision: float = 0.7,
    current_exclude: Sequence[str] = DEFAULT_EXCLUDE,
) -> ConfigSuggestion:
    """The config changes this repo's labels support, each with the counts behind it.

    `changes` has the shape of `.github/reviewbot.yml` (config_schema.RepoConfig):
    - rules (with a rule id) dismissed at >= max_dismissal_rate over >= min_samples labelled
      comments: disable;
    - path groups (directories) likewise: exclude;
    - min_acceptance: the lowest score threshold at which posted comments scoring at least that
      reached target_precision (with >= min_samples labelled above it), when it would hold back
      some of what was posted.
    """
    stats = compute_stats(data)
    changes: dict[str, object] = {}
    reasons: list[str] = []
    real_rules = {f.rule for f in data.findings if f.has_rule_id}
    disable = [
        t
        for t in stats.by_rule
        if t.key in real_rules
        and t.labelled >= min_samples
        and (t.dismissal_rate or 0.0) >= max_dismissal_rate
    ]
    if disable:
        changes["rules"] = {"disable": [t.key for t in disable]}
        reasons += [
            f"rule {t.key}: {t.dismissed} of {t.labelled} labelled comments dismissed "
            f"({t.dismissal_rate:.0%})"
            for t in disable
        ]
    exclude = [
        t
        for t in stats.by_path
        if t.key != "(no path)"
        and t.labelled >= min_samples
        and (t.dismissal_rate or 0.0) >= max_dismissal_rate
    ]
    if exclude:
        # `paths.exclude` replaces the list it overrides, so the suggestion keeps the current one.
        kept = list(current_exclude)
        changes["paths"] = {"exclude": kept + [t.key for t in exclude if t.key not in kept]}
        reasons += [
            f"path {t.key}: {t.dismissed} of {t.labelled} labelled comments dismissed "
            f"({t.dismissal_rate:.0%})"
            for t in exclude
        ]
    scored = sorted(
        (f.score, f.outcome.label == "accepted")
        for f in data.findings
        if f.decision == "post" and not f.explore and f.outcome is not None and f.score is not None
    )
    for i, (threshold, _) in enumerate(scored):
        above = scored[i:]
        if len(above) < min_samples:
            break
        precision = sum(ok for _, ok in above) / len(above)
        if precision >= target_precision:
            if i > 0:
                changes["min_acceptance"] = round(threshold, 3)
                reasons.append(
                    f"min_acceptance {threshold:.3f}: comments scoring at least this reached "
                    f"precision {precision:.0%} on {len(above)} labelled comments "
                    f"(all {len(scored)}: {sum(ok for _, ok in scored) / len(scored):.0%})"
                )
            break
    return ConfigSuggestion(changes=changes, reasons=reasons)
