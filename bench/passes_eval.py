# ruff: noqa: E501
"""What k LLM passes add, measured on review-bench with distinct tools standing in for passes.

review-bench (../shared/data/review-bench) holds the comments of 12 review tools on 30 PRs,
each judged against 78 human golden issues. A "k-pass review" of a PR is the union of the
comments of k tools on it; for every k from 1 to 5 (the `llm.passes` range) we average over up
to SAMPLES random sets of k tools (fixed seed):

- recall: distinct golden issues the union hits / all golden issues (what more passes find);
- comments per PR before the filter, and the raw precision (tp comments / comments);
- agreement: the union is clustered by reviewbot's own dedup (`cluster_candidates`), each
  comment's support is how many of the k tools raised its cluster; `AUC(support)` is how well
  that ranks tp above fp, and `agreed` the precision / recall of the comments raised by >= 2;
- cost: k times the tokens and requests of one pass.

Distinct tools disagree far more than passes of one model with shuffled order and a little
temperature, so these are upper bounds on what diverse passes add. The recommended default is
the largest k whose last pass still adds at least GAIN_SHARE of the recall the first pass
brought per unit of cost; the bench exits 1 when reviewbot's DEFAULT_PASSES differs from it.

    .venv/bin/python bench/passes_eval.py              # writes its BENCHMARKS.md section
    .venv/bin/python bench/passes_eval.py --no-write --json out.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchmarks_md import write_section  # noqa: E402
from train_prior import SHARED, bench_candidate, load_bench  # noqa: E402

from reviewbot.core.config_schema import DEFAULT_PASSES, MAX_PASSES  # noqa: E402
from reviewbot.filter.acceptance import auc  # noqa: E402
from reviewbot.filter.dedup import cluster_candidates  # noqa: E402

SECTION = "## LLM passes: what k passes add"
SAMPLES = 60
SEED = 10
GAIN_SHARE = 0.5


def review_of(rows: list[dict]) -> tuple[list[float], list[bool]]:
    """Support share (tools that raised the comment's cluster / tools in the review) per comment."""
    cands = [bench_candidate(r) for r in rows]
    clusters, _ = cluster_candidates(cands, priority=lambda _i: (0.0,))
    tools = len({r["tool"] for r in rows}) or 1
    support = [0] * len(rows)
    for cl in clusters:
        for i in cl.members:
            support[i] = cl.support
    return [s / tools for s in support], [r["label"] == "tp" for r in rows]


def evaluate_set(tools: tuple[str, ...], by_pr: dict[tuple[str, int], list[dict]], golden_total: int) -> dict:
    chosen = set(tools)
    found: set[str] = set()
    comments = tp = 0
    scores: list[float] = []
    labels: list[bool] = []
    agreed = agreed_tp = 0
    agreed_found: set[str] = set()
    for rows in by_pr.values():
        mine = [r for r in rows if r["tool"] in chosen]
        if not mine:
            continue
        comments += len(mine)
        tp += sum(r["label"] == "tp" for r in mine)
        found |= {r["golden_id"] for r in mine if r["label"] == "tp" and r["golden_id"]}
        if len(chosen) > 1:
            share, lab = review_of(mine)
            scores += share
            labels += lab
            for r, s in zip(mine, share, strict=True):
                if s * len(chosen) >= 2:
                    agreed += 1
                    agreed_tp += r["label"] == "tp"
                    if r["label"] == "tp" and r["golden_id"]:
                        agreed_found.add(r["golden_id"])
    out = {
        "recall": len(found) / golden_total,
        "comments_per_pr": comments / len(by_pr),
        "precision": tp / comments if comments else 0.0,
    }
    if len(chosen) > 1:
        out["auc_support"] = auc(scores, labels)
        out["agreed_precision"] = agreed_tp / agreed if agreed else float("nan")
        out["agreed_recall"] = len(agreed_found) / golden_total
    return out


def measure(
    cands: list[dict], golden: list[dict], samples: int = SAMPLES, seed: int = SEED
) -> dict[str, Any]:
    by_pr: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for c in cands:
        by_pr[(c["repo"], c["pr"])].append(c)
    tools = sorted({c["tool"] for c in cands})
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for k in range(1, MAX_PASSES + 1):
        combos = list(itertools.combinations(tools, k))
        if len(combos) > samples:
            combos = rng.sample(combos, samples)
        results = [evaluate_set(c, by_pr, len(golden)) for c in combos]
        row: dict[str, Any] = {"k": k, "sets": len(combos), "cost": float(k)}
        for key in results[0]:
            values = [r[key] for r in results if r[key] == r[key]]  # NaN-free
            row[key] = statistics.fmean(values) if values else float("nan")
        rows.append(row)
    first = rows[0]["recall"]
    recommended = 1
    for prev, row in itertools.pairwise(rows):
        gain = row["recall"] - prev["recall"]
        row["marginal_recall"] = gain
        if gain >= GAIN_SHARE * first and recommended == prev["k"]:
            recommended = row["k"]
    return {
        "rows": rows,
        "recommended": recommended,
        "default": DEFAULT_PASSES,
        "tools": len(tools),
        "prs": len(by_pr),
        "golden": len(golden),
    }


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}"


def render(res: dict[str, Any], command: str) -> str:
    ok = res["recommended"] == res["default"]
    lines = [
        SECTION,
        "",
        f"`{command}`: review-bench ({res['prs']} PRs, {res['golden']} golden issues, {res['tools']} tools),",
        "a k-pass review = the union of k tools' comments on each PR (distinct tools stand in for diverse",
        f"passes: an upper bound on what shuffled, warmer passes of one model add), averaged over up to {SAMPLES}",
        f"random tool sets per k (seed {SEED}). Recall counts distinct golden issues. `support AUC`: the",
        "share of the k tools raising a comment's cluster (reviewbot's dedup) as a score for tp vs fp;",
        "`agreed`: the comments raised by >= 2 of the k. Cost: k x the tokens and requests of one pass.",
        "",
        "| k | cost | recall | marginal recall | comments / PR | precision | support AUC | agreed precision "
        "| agreed recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['k']} | {r['cost']:.0f}x | {r['recall']:.2f} | {_pct(r.get('marginal_recall', float('nan')))} "
            f"| {r['comments_per_pr']:.1f} | {r['precision']:.2f} | {_pct(r.get('auc_support', float('nan')))} "
            f"| {_pct(r.get('agreed_precision', float('nan')))} | {_pct(r.get('agreed_recall', float('nan')))} |"
        )
    lines += [
        "",
        f"Rule: the default is the largest k whose last pass still adds >= {GAIN_SHARE:.0%} of the recall the "
        f"first pass brought (each pass costs the same). Recommended k = {res['recommended']}; reviewbot's "
        f"default `llm.passes` = {res['default']}: **{'PASS' if ok else 'FAIL'}**.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if not (args.data / "review-bench" / "candidates.jsonl").is_file():
        print(f"skipped: {args.data}/review-bench is absent (it lives in ../shared)")
        return 0
    cands, golden = load_bench(args.data)
    res = measure(cands, golden)
    text = render(res, "python bench/passes_eval.py")
    print(text)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    if not args.no_write:
        write_section(SECTION, text)
    return 0 if res["recommended"] == res["default"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
