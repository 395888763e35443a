"""Learned suppression: a kind of finding a repo keeps turning down is not posted again, anywhere.

Why a stage of its own: the acceptance model is a logistic layer over many features; a handful
of dismissals of one kind barely moves that kind's score (issue #17: 8 dismissals took it from
0.17 to 0.19), while a team expects the bot to stop after a few clear "no"s (Greptile: about 3).
This stage is a table anyone can read, per repo and kind:

- **dismissed**: at least `dismissals` (3) full-weight dismissals (`feedback.silences`: a 👎, a
  "false positive" reply) since the kind's last acceptance;
- **ignored**: turned down on at least `ignored_prs` (4) different pull requests since its last
  acceptance, weak labels included (a thread resolved with the lines unchanged, a comment left
  untouched at merge, a question the bot conceded), and never accepted since.

Any acceptance of the kind (👍, a fixing commit, an applied suggestion, "good catch") lifts it:
the counts start again from there. A suppressed kind is held back at every location, with a
reason that names the kind and the labels; the model still scores it (the funnel shows it).

A *kind* is what a team means by "this remark again": a rule finding's rule id; an LLM finding's
category plus the normalised tokens of its title (`dedup.tokens`: lower case, stemmed, stop words
dropped, as a sorted set, so "Missing docstring" and "Docstring missing" are one kind). Not the
fingerprint: it is per path and enclosing symbol by design (the same remark elsewhere is a new
finding). Not the body: it names the line's own identifiers, so every location would be a kind
of its own. A finding with no title falls back to the first words of its body.

Pure: the labelled history comes in (read through `records.labelled_kinds`), suppressions go out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reviewbot.core.feedback import Outcome, resolve_outcome, silences
from reviewbot.filter.dedup import tokens

if TYPE_CHECKING:
    from reviewbot.app.records import KindRow

#: The reason prefix of a candidate held back by this stage (the funnel groups on the full text).
PREFIX = "suppressed:"


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of finding: `key` is stable across locations; `name` is what a person reads."""

    key: str
    name: str
    what: str  # "rule" or the category of an LLM finding


@dataclass(frozen=True, slots=True)
class SuppressionPolicy:
    #: full-weight dismissals since the last acceptance that suppress a kind
    dismissals: int = 3
    #: pull requests on which a never-since-accepted kind was turned down (weak labels count)
    ignored_prs: int = 4


@dataclass(frozen=True, slots=True)
class KindLabel:
    """One posted finding's kind and its combined outcome (`feedback.resolve_outcome`)."""

    kind: Kind
    pr: int
    finding_id: int
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Suppression:
    """A kind held back in a repo, and the labels behind it."""

    kind: Kind
    rule: str  # "dismissed" or "ignored"
    dismissed: int  # full-weight dismissals since the last acceptance
    ignored: int  # weak dismissals since the last acceptance
    prs: int  # pull requests they came from
    first_at: str  # the oldest of those labels
    since: str  # when the kind crossed the line (the label that suppressed it)
    last_accepted_at: str | None
    finding_ids: tuple[int, ...]

    @property
    def reason(self) -> str:
        """The candidate's reason: the kind and the labels, with dates (day precision)."""
        if self.rule == "dismissed":
            what = f"dismissed {self.dismissed} times since {self.first_at[:10]}"
        else:
            what = (
                f"turned down on {self.prs} PRs since {self.first_at[:10]} "
                f"({self.dismissed} dismissed, {self.ignored} ignored)"
            )
        lifted = (
            f", last accepted {self.last_accepted_at[:10]}" if self.last_accepted_at else ", never accepted"
        )
        return f"{PREFIX} {self.kind.name} {what}{lifted}"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.key,
            "name": self.kind.name,
            "what": self.kind.what,
            "rule": self.rule,
            "dismissed": self.dismissed,
            "ignored": self.ignored,
            "prs": self.prs,
            "first_at": self.first_at,
            "since": self.since,
            "last_accepted_at": self.last_accepted_at,
            "findings": list(self.finding_ids),
            "reason": self.reason,
        }


def kind_of(
    *, rule_id: str | None, source: str | None, category: str | None, title: str, body: str = ""
) -> Kind:
    """The kind of a finding from what is stored with it (and known at review time)."""
    if rule_id and (source or "").startswith(("rule:", "sarif:")):  # as acceptance.is_rule_finding
        return Kind(key=f"rule:{rule_id}", name=f"rule {rule_id}", what="rule")
    words = sorted(set(tokens(title)))
    if not words:  # no title: the claim's first words stand in
        words = sorted(set(tokens(body)[:8]))
    cat = category or "other"
    label = title.strip() or " ".join(words)
    return Kind(key=f"llm:{cat}:{' '.join(words)}", name=f'{cat} "{label}"', what=cat)


def kind_labels(
    findings: Iterable[tuple[int, int, Kind, Iterable[tuple[str, str, float, str]]]],
) -> list[KindLabel]:
    """(finding id, pr, kind, label votes) of posted findings -> their outcomes, oldest first;
    findings with no outcome are left out."""
    out = []
    for finding_id, pr, kind, votes in findings:
        outcome = resolve_outcome(list(votes), include_untouched=True)
        if outcome is not None:
            out.append(KindLabel(kind, pr, finding_id, outcome))
    out.sort(key=lambda kl: (kl.outcome.at, kl.finding_id))
    return out


def learn(
    labels: Sequence[KindLabel], policy: SuppressionPolicy = SuppressionPolicy()
) -> dict[str, Suppression]:
    """Kind key -> its suppression, for the kinds the labels (oldest first) hold back now."""
    by_kind: dict[str, list[KindLabel]] = {}
    for kl in labels:
        by_kind.setdefault(kl.kind.key, []).append(kl)
    out: dict[str, Suppression] = {}
    for key, mine in by_kind.items():
        found = _suppression(mine, policy)
        if found is not None:
            out[key] = found
    return out


def _suppression(mine: Sequence[KindLabel], policy: SuppressionPolicy) -> Suppression | None:
    accepted = [i for i, kl in enumerate(mine) if kl.outcome.label == "accepted"]
    last_accepted = accepted[-1] if accepted else -1
    since_accept = mine[last_accepted + 1 :]
    strong = 0
    prs: set[int] = set()
    for n, kl in enumerate(since_accept):
        strong += silences(kl.outcome)
        prs.add(kl.pr)
        rule = (
            "dismissed"
            if strong >= policy.dismissals
            else "ignored"
            if len(prs) >= policy.ignored_prs
            else None
        )
        if rule is None:
            continue
        counted = since_accept  # every label since the acceptance is evidence, also later ones
        n_strong = sum(silences(k.outcome) for k in counted)
        return Suppression(
            kind=mine[0].kind,
            rule=rule,
            dismissed=n_strong,
            ignored=len(counted) - n_strong,
            prs=len({k.pr for k in counted}),
            first_at=counted[0].outcome.at,
            since=since_accept[n].outcome.at,
            last_accepted_at=mine[last_accepted].outcome.at if last_accepted >= 0 else None,
            finding_ids=tuple(k.finding_id for k in counted),
        )
    return None


@dataclass(frozen=True, slots=True)
class Learned:
    """A repo's learned suppressions, looked up by a candidate's kind at filter time."""

    by_kind: Mapping[str, Suppression]

    def reason(
        self, *, rule_id: str | None, source: str | None, category: str | None, title: str, body: str
    ) -> str | None:
        """Why a candidate of this kind is held back, or None when its kind is not suppressed."""
        if not self.by_kind:
            return None
        kind = kind_of(rule_id=rule_id, source=source, category=category, title=title, body=body)
        found = self.by_kind.get(kind.key)
        return found.reason if found is not None else None

    def describe(self) -> list[str]:
        """One line per suppressed kind (rules first, then categories), for the check run."""
        ranked = sorted(self.by_kind.values(), key=lambda s: (s.kind.what != "rule", s.kind.key))
        return [s.reason.removeprefix(PREFIX).strip() for s in ranked]


NOTHING = Learned({})


def from_rows(rows: Iterable[KindRow], policy: SuppressionPolicy = SuppressionPolicy()) -> Learned:
    """A repo's learned suppressions from its labelled posted findings (`records.labelled_kinds`)."""
    labels = kind_labels(
        (
            r.id,
            r.pr,
            kind_of(rule_id=r.rule_id, source=r.source, category=r.category, title=r.title, body=r.body),
            [lb.as_vote() for lb in r.labels],
        )
        for r in rows
    )
    return Learned(learn(labels, policy))
