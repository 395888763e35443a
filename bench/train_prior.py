"""Rebuild the shipped acceptance prior (reviewbot/data/prior.json) from public labelled comments.

Training data, and nothing else:
- ../shared/data/revhelper: both parts (comparative-study_ and validation_), useful -> accepted;
- ../shared/data/review-bench: ONLY the history half of each repo (the earlier half of its PRs by
  PR number), tp -> accepted, fp -> dismissed. The later half is bench/filter_eval.py's
  evaluation split and is never read here (see `bench_split`).
The L2 penalty is chosen by leave-one-project-out cross-validation (projects: the two revhelper
parts and the three review-bench repos) and the report is written to bench/reports/prior_training.md.
A separate run trains on revhelper comparative-study_ only and reports AUC on validation_.

Run: .venv/bin/python bench/train_prior.py   (deterministic; ~10 s)
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reviewbot.core.domain import Candidate  # noqa: E402
from reviewbot.filter.acceptance import (  # noqa: E402
    CLAIM_PRIOR,
    NUMERIC,
    AcceptanceModel,
    FeatureConfig,
    HistoryRow,
    auc,
    fit_layer,
    history_examples,
)
from reviewbot.filter.noise import prepare_history  # noqa: E402

#: ../shared/data beside the project; REVIEWBOT_SHARED_DATA points elsewhere (e.g. from a worktree)
SHARED = Path(os.environ.get("REVIEWBOT_SHARED_DATA") or ROOT.parent / "shared" / "data")
PRIOR_PATH = ROOT / "reviewbot" / "data" / "prior.json"
REPORT_PATH = ROOT / "bench" / "reports" / "prior_training.md"
L2_GRID = (1.0, 3.0, 10.0, 30.0)
_LINE = re.compile(r"^(\d+)-(\d+)-(u|nu)\s+(.*)$")


def load_revhelper(part: str, shared: Path = SHARED) -> list[HistoryRow]:
    """One revhelper part ('comparative-study_' or 'validation_') as history rows."""
    rows: list[HistoryRow] = []
    for kind in ("useful", "non-useful"):
        path = shared / "revhelper" / f"{part}corpus-{kind}.txt"
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
            m = _LINE.match(line.strip())
            if not m:
                continue
            cid, pr, label, text = m.groups()
            cand = Candidate(
                id=f"revhelper/{part}{cid}-{n}",
                path=None,
                line=None,
                body=text,
                source="human",
                repo=f"revhelper/{part.rstrip('_')}",
                pr=int(pr),
            )
            rows.append(HistoryRow(cand, label == "u", at=""))
    return rows


def load_bench(shared: Path = SHARED) -> tuple[list[dict], list[dict]]:
    bench = shared / "review-bench"
    cands = [json.loads(x) for x in (bench / "candidates.jsonl").read_text().splitlines() if x.strip()]
    golden = [json.loads(x) for x in (bench / "golden.jsonl").read_text().splitlines() if x.strip()]
    return cands, golden


def bench_split(cands: Sequence[dict]) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
    """(history PRs, evaluation PRs): per repo the earlier half of PR numbers is history."""
    by_repo: dict[str, list[int]] = {}
    for c in cands:
        by_repo.setdefault(c["repo"], [])
        if c["pr"] not in by_repo[c["repo"]]:
            by_repo[c["repo"]].append(c["pr"])
    hist: set[tuple[str, int]] = set()
    evals: set[tuple[str, int]] = set()
    for repo, prs in by_repo.items():
        prs = sorted(prs)
        half = len(prs) // 2
        hist.update((repo, p) for p in prs[:half])
        evals.update((repo, p) for p in prs[half:])
    return hist, evals


def bench_candidate(c: dict) -> Candidate:
    # the id ends with the comment's position in its tool's review: the order the tool listed it
    tail = str(c["id"]).rsplit("/", 1)[-1]
    return Candidate(
        id=c["id"],
        path=c.get("path"),
        line=c.get("line"),
        body=c["body"],
        source=c.get("tool") or "unknown",
        repo=c["repo"],
        pr=c["pr"],
        rank=int(tail) if tail.isdigit() else None,
    )


def bench_history(cands: Sequence[dict], prs: set[tuple[str, int]]) -> list[HistoryRow]:
    """review-bench rows of the given PRs as history (ordered by PR number, then file order)."""
    chosen = [c for c in cands if (c["repo"], c["pr"]) in prs]
    chosen.sort(key=lambda c: (c["repo"], c["pr"]))
    return [HistoryRow(bench_candidate(c), c["label"] == "tp", at=f"{c['pr']:010d}") for c in chosen]


def fit_prior(
    rows: Sequence[HistoryRow], l2: float, config: FeatureConfig = FeatureConfig(), name: str = "prior"
) -> AcceptanceModel:
    """A prior = one layer fitted from zero; rows are re-weighted so both labels weigh the same."""
    model = AcceptanceModel(config, [])
    X = model.featurizer().transform(history_examples(rows))
    y = np.array([r.accepted for r in rows], dtype=np.float64)
    layer = fit_layer(X, y, np.zeros(len(rows)), l2=l2, name=name, intercept_l2=0.0)
    layer.metrics = {"n": float(len(rows)), "accept_rate": float(y.mean())}
    # Columns only reviewbot's own pipeline fills in are zero on every public row: they start
    # from CLAIM_PRIOR (documented there) and each repo learns its correction from feedback.
    used = set(np.unique(X.indices).tolist())
    base = config.n_text + config.n_cat
    for name_, weight in CLAIM_PRIOR.items():
        col = base + NUMERIC.index(name_)
        if col not in used:
            layer.weights[col] = weight
    return AcceptanceModel(config, [layer])


def score_rows(model: AcceptanceModel, rows: Sequence[HistoryRow]) -> list[float]:
    return model.score_examples(history_examples(rows))


def prior_rows(shared: Path = SHARED, exclude_repos: Sequence[str] = ()) -> dict[str, list[HistoryRow]]:
    """Training rows per project (group), with cluster support filled in as at review time."""
    cands, _ = load_bench(shared)
    hist_prs, _ = bench_split(cands)
    groups: dict[str, list[HistoryRow]] = {
        "revhelper/comparative-study": load_revhelper("comparative-study_", shared),
        "revhelper/validation": load_revhelper("validation_", shared),
    }
    for repo in sorted({r for r, _ in hist_prs}):
        if repo in exclude_repos:
            continue
        groups[repo] = bench_history(cands, {p for p in hist_prs if p[0] == repo})
    out = {g: prepare_history(rows) for g, rows in groups.items()}
    # One installation has one reviewer: each tool's comments also appear as their own review
    # (support and sources from that tool alone), so the prior learns what a comment is worth
    # without other tools agreeing with it, not only with them.
    for repo in [g for g in groups if not g.startswith("revhelper/")]:
        for tool in sorted({r.candidate.source for r in groups[repo]}):
            out[repo] += prepare_history([r for r in groups[repo] if r.candidate.source == tool])
    return out


def build_prior(
    shared: Path = SHARED, exclude_repos: Sequence[str] = (), l2: float = 10.0
) -> AcceptanceModel:
    groups = prior_rows(shared, exclude_repos)
    return fit_prior([r for rows in groups.values() for r in rows], l2)


def main() -> int:
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent (the prior is rebuilt from ../shared data)")
        return 0
    groups = prior_rows()
    lines = [
        "# Acceptance prior: training report",
        "",
        "Rebuilt by `.venv/bin/python bench/train_prior.py` (deterministic).",
        "",
        "## Training data",
        "",
        "| project (CV group) | rows | accepted |",
        "|---|---:|---:|",
    ]
    for g, rows in groups.items():
        lines.append(f"| {g} | {len(rows)} | {sum(r.accepted for r in rows)} |")
    lines += [
        "",
        "review-bench rows are ONLY the history half (earlier half of each repo's PRs by number);",
        "the evaluation half used by bench/filter_eval.py is never read.",
        "",
        "## Leave-one-project-out AUC per L2 penalty",
        "",
    ]
    header = "| l2 | " + " | ".join(groups) + " | mean |"
    lines += [header, "|---" * (len(groups) + 2) + "|"]
    best_l2, best_mean = L2_GRID[0], -1.0
    for l2 in L2_GRID:
        aucs = []
        for held in groups:
            train_rows = [r for g, rows in groups.items() if g != held for r in rows]
            model = fit_prior(train_rows, l2)
            test = groups[held]
            aucs.append(auc(score_rows(model, test), [r.accepted for r in test]))
        mean = float(np.nanmean(aucs))
        lines.append(f"| {l2:g} | " + " | ".join(f"{a:.3f}" for a in aucs) + f" | {mean:.3f} |")
        print(f"l2={l2}: " + " ".join(f"{a:.3f}" for a in aucs) + f" mean={mean:.3f}")
        if mean > best_mean:
            best_l2, best_mean = l2, mean

    # revhelper protocol: train on comparative-study_, test on validation_.
    rh_train, rh_test = groups["revhelper/comparative-study"], groups["revhelper/validation"]
    rh_model = fit_prior(rh_train, best_l2)
    rh_auc = auc(score_rows(rh_model, rh_test), [r.accepted for r in rh_test])
    print(f"revhelper comparative-study -> validation AUC {rh_auc:.3f} (l2={best_l2:g})")

    all_rows = [r for rows in groups.values() for r in rows]
    prior = fit_prior(all_rows, best_l2)
    prior.layers[0].metrics.update(
        {"lopo_auc": round(best_mean, 4), "revhelper_val_auc": round(rh_auc, 4), "l2": best_l2}
    )
    PRIOR_PATH.write_text(prior.to_json() + "\n", encoding="utf-8")
    lines += [
        "",
        f"Chosen l2 = {best_l2:g} (best mean leave-one-project-out AUC {best_mean:.3f}).",
        "",
        "## revhelper protocol",
        "",
        f"Trained on `comparative-study_` only ({len(rh_train)} rows), tested on `validation_` "
        f"({len(rh_test)} rows): **AUC {rh_auc:.3f}**.",
        "",
        "## Shipped prior",
        "",
        f"`reviewbot/data/prior.json`: trained on all {len(all_rows)} rows above with l2={best_l2:g}; "
        f"{len(prior.layers[0].weights)} non-zero coefficients; "
        f"{PRIOR_PATH.stat().st_size // 1024} KiB.",
        "",
    ]
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {PRIOR_PATH} and {REPORT_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
