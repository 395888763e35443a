"""Evaluate the noise filter on review-bench (../shared/data/review-bench), and time it.

Protocol (per repo): history = the candidates of the earlier half of its PRs (by PR number;
tp -> accepted, fp -> dismissed); evaluate on the later half. Warm = with that history and the
shipped prior; cold = no history and a prior rebuilt WITHOUT that repo's rows (leave-repo-out),
so the cold number is not flattered by the prior having seen the repo.

Precision and recall count distinct golden issues: a posted comment is a hit only if it matches
a golden issue no earlier posted comment on the same PR already matched. Each of the 12 tools is
scored the same way on the same PRs (all of its comments count as posted).

The filter runs through `run_filter`, the code behind `reviewbot filter`, with the default repo
config (reviewbot.config defaults: min_severity low, max_comments 10, threshold 0.5).

Run: .venv/bin/python bench/filter_eval.py [--json OUT.json]   (deterministic)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from train_prior import SHARED, bench_candidate, bench_history, bench_split, build_prior, load_bench  # noqa: E402

from reviewbot.acceptance import HistoryRow, auc, load_prior, train  # noqa: E402
from reviewbot.commands.filter_cmd import run_filter, settings_from_file  # noqa: E402
from reviewbot.models import Candidate  # noqa: E402
from reviewbot.noise import FilterSettings, filter_review, prepare_history  # noqa: E402


def distinct_metrics(posted: Sequence[dict], golden_total: int, n_prs: int) -> dict[str, float]:
    """Precision/recall/F1 over distinct golden issues; `posted` rows carry pr and golden_id."""
    covered: set[str] = set()
    hits = 0
    for row in posted:
        gid = row.get("golden_id")
        if row.get("label") == "tp" and gid and gid not in covered:
            covered.add(gid)
            hits += 1
    p = hits / len(posted) if posted else 0.0
    r = len(covered) / golden_total if golden_total else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"posted_per_pr": len(posted) / n_prs, "precision": p, "recall": r, "f1": f1,
            "posted": len(posted), "hits": hits}


_PRIORS: dict[str, Any] = {}


def _loro_prior(repo: str) -> Any:
    """The prior rebuilt without this repo's rows: the repo's labels reach it only as history."""
    if repo not in _PRIORS:
        _PRIORS[repo] = build_prior(SHARED, exclude_repos=[repo])
    return _PRIORS[repo]


def evaluate(
    settings: FilterSettings,
    *,
    cold: bool,
    cands: list[dict],
    golden: list[dict],
    shipped_prior: bool = False,
) -> dict[str, Any]:
    hist_prs, eval_prs = bench_split(cands)
    eval_rows = [c for c in cands if (c["repo"], c["pr"]) in eval_prs]
    by_id = {c["id"]: c for c in eval_rows}
    outputs: list[dict] = []
    for repo in sorted({r for r, _ in eval_prs}):
        repo_eval = [c for c in eval_rows if c["repo"] == repo]
        candidates: list[Candidate] = [bench_candidate(c) for c in repo_eval]
        history: list[HistoryRow] = []
        if not cold:
            history = bench_history(cands, {p for p in hist_prs if p[0] == repo})
        prior = load_prior() if shipped_prior else _loro_prior(repo)
        outputs += run_filter(candidates, history, settings, prior=prior)
    scores = [o["score"] for o in outputs]
    labels = [by_id[o["id"]]["label"] == "tp" for o in outputs]
    posted = [by_id[o["id"]] for o in outputs if o["decision"] == "post"]
    golden_total = sum(1 for g in golden if (g["repo"], g["pr"]) in eval_prs)
    out = distinct_metrics(posted, golden_total, len(eval_prs))
    out["auc"] = auc(scores, labels)
    return out


def tool_metrics(cands: list[dict], golden: list[dict]) -> dict[str, dict[str, float]]:
    _, eval_prs = bench_split(cands)
    golden_total = sum(1 for g in golden if (g["repo"], g["pr"]) in eval_prs)
    by_tool: dict[str, list[dict]] = defaultdict(list)
    for c in cands:
        if (c["repo"], c["pr"]) in eval_prs:
            by_tool[c["tool"]].append(c)
    result = {}
    for tool, rows in sorted(by_tool.items()):
        # distinct counting is per PR: the same golden id cannot recur across PRs anyway
        result[tool] = distinct_metrics(rows, golden_total, len(eval_prs))
    return result


def speed(cands: list[dict]) -> dict[str, float]:
    """Train on 100,000 history rows; filter 1,000 candidates end to end (scoring + all stages)."""
    rng = random.Random(7)
    base = [c for c in cands]
    words = ["null", "check", "retry", "cache", "lock", "index", "query", "handler", "token", "session"]
    hist: list[HistoryRow] = []
    for k in range(100_000):
        c = base[k % len(base)]
        body = c["body"] + " " + " ".join(rng.choice(words) for _ in range(3))
        cand = Candidate(id=f"h{k}", path=None, line=None, body=body, source=c["tool"],
                         repo="speed/repo", pr=k // 30)
        hist.append(HistoryRow(cand, c["label"] == "tp", at=f"{k:08d}"))
    prior = load_prior()
    t0 = time.perf_counter()
    model = train(hist, prior, repo="speed/repo")
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepared = prepare_history(hist)
    support_s = time.perf_counter() - t0
    model_with_support = train(prepared[:0], prior, repo="speed/repo")  # warm caches only
    del model_with_support
    test = [replace(bench_candidate(base[k % len(base)]), id=f"t{k}", pr=k // 30) for k in range(1000)]
    settings = FilterSettings()
    t0 = time.perf_counter()
    decisions = filter_review(test, model=model, settings=settings)
    filter_s = time.perf_counter() - t0
    assert len(decisions) == 1000
    one_review = [replace(c, pr=1) for c in test]
    t0 = time.perf_counter()
    filter_review(one_review, model=model, settings=settings)
    one_review_s = time.perf_counter() - t0
    return {"train_100k_s": train_s, "history_support_100k_s": support_s,
            "filter_1000_s": filter_s, "filter_1000_one_review_s": one_review_s}


def fmt(m: dict[str, float]) -> str:
    auc_s = f"{m['auc']:.3f}" if "auc" in m else "-"
    return (f"| {m['posted_per_pr']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{auc_s} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON here")
    parser.add_argument("--no-speed", action="store_true", help="skip the timing runs")
    args = parser.parse_args()
    if not (SHARED / "review-bench").is_dir():
        print(f"skipped: {SHARED / 'review-bench'} is absent")
        return 0
    cands, golden = load_bench()
    default = settings_from_file(None)
    results: dict[str, Any] = {
        "warm": evaluate(default, cold=False, cands=cands, golden=golden),
        "cold": evaluate(default, cold=True, cands=cands, golden=golden),
        "warm_shipped_prior": evaluate(default, cold=False, cands=cands, golden=golden, shipped_prior=True),
        "warm_target_precision_0.6": evaluate(replace(default, target_precision=0.6), cold=False,
                                              cands=cands, golden=golden),
        "tools": tool_metrics(cands, golden),
    }
    for thr in (0.3, 0.4, 0.5, 0.6):
        results[f"warm_min_acceptance_{thr}"] = evaluate(replace(default, min_acceptance=thr), cold=False,
                                                        cands=cands, golden=golden)
    if not args.no_speed:
        results["speed"] = speed(cands)
    print("| run | posted/PR | precision | recall | F1 | AUC |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, m in results.items():
        if key in ("tools", "speed"):
            continue
        print(f"| filter {key} " + fmt(m))
    for tool, m in results["tools"].items():
        print(f"| tool {tool} " + fmt(m))
    if "speed" in results:
        for k, v in results["speed"].items():
            print(f"{k}: {v:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
