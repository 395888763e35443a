"""Which scored candidates to post: an acceptance threshold, a per-PR budget, expected value.

The threshold is `min_acceptance` when configured, else the lowest threshold that reached
`target_precision` on this repo's held-out history, else a default. Within the budget the most
valuable findings go first (score times a severity weight). Nothing is dropped silently: every
candidate leaves with a reason. Exploration (off by default) posts a small, deterministic share
of below-threshold candidates so the model keeps getting labels for what it would hide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

#: How much a finding of each severity is worth when accepted (orders the budget).
SEVERITY_WEIGHT: dict[str, float] = {"critical": 4.0, "high": 2.5, "medium": 1.6, "low": 1.0, "nit": 0.5}


@dataclass(frozen=True, slots=True)
class Choice:
    """One candidate still in the running after the earlier stages."""

    index: int
    score: float
    severity: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Literal["post", "suppress"]
    reason: str
    explore: bool = False


def resolve_threshold(
    *,
    min_acceptance: float | None,
    target_precision: float | None,
    history_thresholds: Sequence[tuple[float, float, int]] = (),
    default: float = 0.5,
    min_count: int = 5,
    history_rate: tuple[float, int] | None = None,
    rate_lift: float | None = None,
    min_history: int = 10,
    floor: float = 0.1,
) -> tuple[float, str]:
    """(threshold, where it came from). `history_thresholds` is (threshold, precision, count).

    Without an explicit setting, a repo with at least `min_history` labelled findings posts what
    is `rate_lift` times as likely to be acted on as its average past finding (`history_rate` is
    (accept rate, labels)): scores are calibrated probabilities, so a source that is right a
    third of the time is not held to the fixed default meant for a fresh install.
    """
    if min_acceptance is not None:
        return float(min_acceptance), "min_acceptance"
    if target_precision is not None:
        reached = [t for t, p, c in history_thresholds if c >= min_count and p >= target_precision]
        if reached:
            return min(reached), f"target_precision {target_precision:g} on history"
        return default, f"default (target_precision {target_precision:g} never reached on history)"
    if rate_lift is not None and history_rate is not None and history_rate[1] >= min_history:
        rate, n = history_rate
        value = min(max(rate_lift * rate, floor), default)
        return value, f"{rate_lift:g} x this repo's accept rate {rate:.2f} over {n} labelled findings"
    return default, f"default (fewer than {min_history} labelled findings in this repo)"


def expected_value(score: float, severity: str) -> float:
    return score * SEVERITY_WEIGHT.get(severity, 1.0)


def explore_draw(fingerprint: str, seed: int) -> float:
    """A uniform draw in [0, 1) fixed by (seed, fingerprint): the same finding, the same draw."""
    digest = hashlib.sha256(f"{seed}:{fingerprint}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def select(
    choices: Sequence[Choice],
    *,
    threshold: float,
    max_comments: int | None,
    exploration_rate: float = 0.0,
    seed: int = 0,
) -> dict[int, Verdict]:
    """Verdicts for one PR's remaining candidates, keyed by their index."""
    verdicts: dict[int, Verdict] = {}
    above: list[Choice] = []
    explorers: list[Choice] = []
    for choice in choices:
        if choice.score >= threshold:
            above.append(choice)
        elif exploration_rate > 0 and explore_draw(choice.fingerprint, seed) < exploration_rate:
            explorers.append(choice)
        else:
            verdicts[choice.index] = Verdict("suppress", f"below acceptance threshold {threshold:.2f}")

    def rank(c: Choice) -> tuple[float, float, int]:
        return (-expected_value(c.score, c.severity), -c.score, c.index)

    budget = max_comments if max_comments is not None and max_comments >= 0 else None
    posted = 0
    for choice in sorted(above, key=rank):
        if budget is not None and posted >= budget:
            verdicts[choice.index] = Verdict("suppress", f"over budget (max_comments={budget})")
            continue
        verdicts[choice.index] = Verdict("post", f"score {choice.score:.2f} >= threshold {threshold:.2f}")
        posted += 1
    for choice in sorted(explorers, key=rank):
        if budget is not None and posted >= budget:
            verdicts[choice.index] = Verdict("suppress", f"below acceptance threshold {threshold:.2f}")
            continue
        verdicts[choice.index] = Verdict(
            "post", f"exploration (score {choice.score:.2f} below threshold {threshold:.2f})", explore=True
        )
        posted += 1
    return verdicts
