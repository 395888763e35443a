"""The mean per-source AUC of review-bench and its bootstrap over PRs.

One procedure for bench/filter_eval.py (an interval on the mean) and bench/filter_compare.py (an
interval on one tree's gain over another, both sides scored on every resample), so the two
reports resample alike. A comment carries one score per side: (score,) or (baseline, this tree).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reviewbot.filter.acceptance import auc

PR = tuple[str, int]
#: source -> PR -> that PR's comments of the source, each (its score on every side, tp)
BySource = dict[str, dict[PR, list[tuple[tuple[float, ...], bool]]]]


def mean_aucs(by_source: BySource, prs: Sequence[PR]) -> tuple[float, ...] | None:
    """Per side, the mean AUC over the sources whose comments on `prs` (a PR drawn twice counts
    twice) hold both labels; None when no source does."""
    per_side: list[list[float]] = []
    for rows_by_pr in by_source.values():
        rows = [r for pr in prs for r in rows_by_pr.get(pr, ())]
        labels = [tp for _, tp in rows]
        if not any(labels) or all(labels):
            continue
        if not per_side:
            per_side = [[] for _ in rows[0][0]]
        for side, aucs in enumerate(per_side):
            aucs.append(auc([scores[side] for scores, _ in rows], labels))
    return tuple(float(np.mean(aucs)) for aucs in per_side) if per_side else None


def resampled(
    by_source: BySource, prs: Sequence[PR], resamples: int, seed: int = 0
) -> list[tuple[float, ...]]:
    """`mean_aucs` on `resamples` draws of `prs` with replacement (every side on the same draw)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, ...]] = []
    for _ in range(resamples):
        drawn = [prs[i] for i in rng.integers(0, len(prs), len(prs))]
        means = mean_aucs(by_source, drawn)
        if means is not None:
            out.append(means)
    return out
