# ruff: noqa: E501
"""Evaluate the noise filter on review-bench (../shared/data/review-bench); bench/filter_speed.py times it.

Protocol (per repo): history = the candidates of the earlier half of its PRs (by PR number;
tp -> accepted, fp -> dismissed); evaluate on the later half. Warm = with that history and the
shipped prior; cold = no history and a prior rebuilt WITHOUT that repo's rows (leave-repo-out),
so the cold number is not flattered by the prior having seen the repo.

Precision and recall count distinct golden issues: a posted comment is a hit only if it matches
a golden issue no earlier posted comment on the same PR already matched. Each of the 12 tools is
scored the same way on the same PRs (all of its comments count as posted).

The filter runs through `run_filter`, the code behind `reviewbot filter`, with the default repo
config (reviewbot.core.config defaults: min_severity low, max_comments 10, threshold 0.5).

The primary table is the per-source one (`per_source`): each review-bench tool alone, as one
installation with one reviewer sees it; exits 1 when its targets are missed.

Run: .venv/bin/python bench/filter_eval.py [--history-cv] [--json OUT.json] [--markdown]   (deterministic)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from benchmarks_md import write_section  # noqa: E402
from per_source_auc import BySource, resampled  # noqa: E402
from train_prior import SHARED, bench_candidate, bench_history, bench_split, build_prior, load_bench  # noqa: E402

from reviewbot.commands.filter_cmd import run_filter, settings_from_file  # noqa: E402
from reviewbot.core.domain import Candidate  # noqa: E402
from reviewbot.filter.acceptance import HistoryRow, auc, load_prior  # noqa: E402
from reviewbot.filter.noise import FilterSettings  # noqa: E402


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
    return {
        "posted_per_pr": len(posted) / n_prs,
        "precision": p,
        "recall": r,
        "f1": f1,
        "posted": len(posted),
        "hits": hits,
    }


def why_missed(outputs: Sequence[dict], by_id: dict[str, dict], golden_ids: Sequence[str]) -> dict[str, int]:
    """Each golden issue as hit, or the first reason it was not: where recall goes."""
    clusters: dict[tuple[str, int, str], list[dict]] = defaultdict(list)
    for o in outputs:
        c = by_id[o["id"]]
        clusters[(c["repo"], c["pr"], o["cluster"])].append(o)
    of_golden: dict[str, list[list[dict]]] = defaultdict(list)
    for members in clusters.values():
        for gid in {by_id[o["id"]]["golden_id"] for o in members} - {None}:
            of_golden[gid].append(members)
    covered = {
        by_id[o["id"]]["golden_id"]
        for o in outputs
        if o["decision"] == "post" and by_id[o["id"]]["label"] == "tp"
    }
    out: dict[str, int] = defaultdict(int)
    for gid in golden_ids:
        groups = of_golden.get(gid, [])
        own = [o for members in groups for o in members if by_id[o["id"]]["golden_id"] == gid]
        if gid in covered:
            key = "hit"
        elif not groups:
            key = "raised by no tool"
        elif any(o["decision"] == "post" for members in groups for o in members):
            key = "its cluster posted a member about another issue"
        elif all(o["reason"].startswith("below min_severity") for o in own):
            key = "all its comments rated below min_severity"
        else:
            support = max(len({by_id[o["id"]]["tool"] for o in members}) for members in groups)
            key = f"scored below the threshold, support {'1-2' if support <= 2 else '3-4' if support <= 4 else '5+'}"
        out[key] += 1
    return dict(sorted(out.items()))


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
    golden_ids = [g["golden_id"] for g in golden if (g["repo"], g["pr"]) in eval_prs]
    out: dict[str, Any] = dict(distinct_metrics(posted, len(golden_ids), len(eval_prs)))
    out["auc"] = auc(scores, labels)
    out["missed"] = why_missed(outputs, by_id, golden_ids)
    return out


def history_cv(
    settings: FilterSettings, *, cold: bool, cands: list[dict], golden: list[dict]
) -> dict[str, Any]:
    """The same protocol inside the history half only: the split for choosing settings.

    Per repo, each of its history PRs is held out in turn; warm = trained on its other history
    PRs (cold = none), with the leave-repo-out prior. The evaluation half is never read, so a
    choice made on these numbers leaks nothing into the warm/cold results above.
    """
    hist_prs, _ = bench_split(cands)
    by_id = {c["id"]: c for c in cands}
    outputs: list[dict] = []
    for repo, held in sorted(hist_prs):
        rows = [c for c in cands if (c["repo"], c["pr"]) == (repo, held)]
        others = {p for p in hist_prs if p[0] == repo and p != (repo, held)}
        history = [] if cold else bench_history(cands, others)
        outputs += run_filter([bench_candidate(c) for c in rows], history, settings, prior=_loro_prior(repo))
    posted = [by_id[o["id"]] for o in outputs if o["decision"] == "post"]
    golden_ids = [g["golden_id"] for g in golden if (g["repo"], g["pr"]) in hist_prs]
    out: dict[str, Any] = dict(distinct_metrics(posted, len(golden_ids), len(hist_prs)))
    out["auc"] = auc([o["score"] for o in outputs], [by_id[o["id"]]["label"] == "tp" for o in outputs])
    out["missed"] = why_missed(outputs, by_id, golden_ids)
    return out


def _source_outputs(
    settings: FilterSettings, own: list[dict], test_prs: set[tuple[str, int]], history_of: Any
) -> list[dict]:
    """One source's filter outputs on `test_prs`; `history_of(repo, pr)` gives its history PRs."""
    outputs: list[dict] = []
    for repo, pr in sorted(test_prs):
        rows = [c for c in own if (c["repo"], c["pr"]) == (repo, pr)]
        if not rows:
            continue
        history = bench_history(own, history_of(repo, pr))
        outputs += run_filter([bench_candidate(c) for c in rows], history, settings, prior=_loro_prior(repo))
    return outputs


def per_source(
    settings: FilterSettings, *, cands: list[dict], golden: list[dict], history_cv: bool = False
) -> dict[str, Any]:
    """The single-reviewer evaluation: each source (tool) alone, as one installation sees it.

    For each source: its candidates on the evaluation PRs, its own history only (its earlier
    PRs of the same repo), the leave-repo-out prior. `history_cv` runs the same inside the
    history half (each history PR held out, the source's other history PRs as history): the
    split settings are chosen on. Raw = every comment of the source posted.
    """
    hist_prs, eval_prs = bench_split(cands)
    test = hist_prs if history_cv else eval_prs
    golden_ids = [g["golden_id"] for g in golden if (g["repo"], g["pr"]) in test]
    result: dict[str, Any] = {}
    scored: dict[str, list[tuple[tuple[str, int], float, bool]]] = {}
    for tool in sorted({c["tool"] for c in cands}):
        own = [c for c in cands if c["tool"] == tool]
        tested = [c for c in own if (c["repo"], c["pr"]) in test]
        by_id = {c["id"]: c for c in tested}
        if history_cv:
            outputs = _source_outputs(
                settings, own, test, lambda r, p: {q for q in hist_prs if q[0] == r and q != (r, p)}
            )
        else:
            outputs = _source_outputs(settings, own, test, lambda r, p: {q for q in hist_prs if q[0] == r})
        posted = [by_id[o["id"]] for o in outputs if o["decision"] == "post"]
        raw = distinct_metrics(tested, len(golden_ids), len(test))
        filtered = distinct_metrics(posted, len(golden_ids), len(test))
        filtered["auc"] = auc(
            [o["score"] for o in outputs], [by_id[o["id"]]["label"] == "tp" for o in outputs]
        )
        scored[tool] = [
            ((by_id[o["id"]]["repo"], by_id[o["id"]]["pr"]), o["score"], by_id[o["id"]]["label"] == "tp")
            for o in outputs
        ]
        met = (
            raw["precision"] > 0
            and filtered["precision"] >= 1.3 * raw["precision"]
            and filtered["recall"] >= 0.5 * raw["recall"]
        )
        result[tool] = {"raw": raw, "filtered": filtered, "n": len(tested), "target_met": met}
    keys = ("posted_per_pr", "precision", "recall", "f1")
    mean: dict[str, Any] = {
        part: {k: float(np.mean([r[part][k] for r in result.values()])) for k in keys}
        for part in ("raw", "filtered")
    }
    aucs = [r["filtered"]["auc"] for r in result.values() if not math.isnan(r["filtered"]["auc"])]
    mean["filtered"]["auc"] = float(np.mean(aucs)) if aucs else float("nan")
    mean["auc_interval"] = mean_auc_interval(scored, sorted(test))
    mean["targets_met"] = sum(1 for r in result.values() if r["target_met"])
    mean["sources"] = len(result)
    return {"sources": result, "mean": mean}


def mean_auc_interval(
    scored: dict[str, list[tuple[tuple[str, int], float, bool]]],
    prs: Sequence[tuple[str, int]],
    resamples: int = 300,
    seed: int = 0,
) -> list[float]:
    """95% interval of the mean per-source AUC under a bootstrap over PRs: how far the mean of
    12 sources' 15-70 comments each moves when the half's PRs are drawn again."""
    by_source: BySource = {}
    for tool, rows in scored.items():
        by_pr = by_source[tool] = {}
        for pr, score, tp in rows:
            by_pr.setdefault(pr, []).append(((score,), tp))
    means = [m[0] for m in resampled(by_source, prs, resamples, seed)]
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def per_source_markdown(ps: dict[str, Any], cv: dict[str, Any] | None) -> list[str]:
    """The primary table: one row per source, raw vs filtered."""
    lines = [
        "| source | comments | raw P | raw R | raw F1 | filtered P | filtered R | filtered F1 | AUC | "
        "posted/PR | P >= 1.3x raw, R >= 0.5x raw |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for tool, r in ps["sources"].items():
        raw, f = r["raw"], r["filtered"]
        a = "-" if math.isnan(f["auc"]) else f"{f['auc']:.3f}"
        lines.append(
            f"| {tool} | {r['n']} | {raw['precision']:.3f} | {raw['recall']:.3f} | {raw['f1']:.3f} | "
            f"{f['precision']:.3f} | {f['recall']:.3f} | {f['f1']:.3f} | {a} | {f['posted_per_pr']:.2f} | "
            f"{'met' if r['target_met'] else 'missed'} |"
        )
    m = ps["mean"]
    lines.append(
        f"| **mean** | | {m['raw']['precision']:.3f} | {m['raw']['recall']:.3f} | {m['raw']['f1']:.3f} | "
        f"{m['filtered']['precision']:.3f} | {m['filtered']['recall']:.3f} | {m['filtered']['f1']:.3f} | "
        f"{m['filtered']['auc']:.3f} | {m['filtered']['posted_per_pr']:.2f} | "
        f"{m['targets_met']} of {m['sources']} |"
    )
    if cv is not None:
        c = cv["mean"]
        lines += [
            "",
            f"History-CV (the split settings are chosen on): mean filtered precision "
            f"{c['filtered']['precision']:.3f} (raw {c['raw']['precision']:.3f}), recall "
            f"{c['filtered']['recall']:.3f} (raw {c['raw']['recall']:.3f}), AUC {c['filtered']['auc']:.3f}"
            + (
                f" (bootstrap [{c['auc_interval'][0]:.3f}, {c['auc_interval'][1]:.3f}])"
                if "auc_interval" in c
                else ""
            )
            + ", "
            f"targets met for {c['targets_met']} of {c['sources']} sources.",
        ]
    return lines


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


def fmt(m: dict[str, float]) -> str:
    auc_s = f"{m['auc']:.3f}" if "auc" in m else "-"
    return (
        f"| {m['posted_per_pr']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {auc_s} |"
    )


def markdown(d: dict[str, Any]) -> str:
    """The BENCHMARKS.md "Noise filter" section for these results."""

    def row(name: str, m: dict[str, float]) -> str:
        a = f"{m['auc']:.3f}" if "auc" in m else "-"
        return (
            f"| {name} | {m['posted_per_pr']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | "
            f"{m['f1']:.3f} | {a} |"
        )

    warm, cold = d["warm"], d["cold"]
    best_tool, best = max(d["tools"].items(), key=lambda kv: kv[1]["f1"])
    verdict = lambda ok: "met" if ok else "missed"  # noqa: E731
    ps = d["per_source"]
    m = ps["mean"]
    lines = [
        "## Noise filter",
        "",
        "Reproduce: `.venv/bin/python bench/train_prior.py` (rebuilds `reviewbot/data/prior.json` and",
        "`bench/reports/prior_training.md`), then `.venv/bin/python bench/filter_eval.py --history-cv",
        "--json bench/reports/filter_eval.json --markdown` (rewrites this section; a few minutes; needs",
        "../shared/data). Regression gate: `.venv/bin/python bench/check_filter_regression.py` (also run",
        "by tests/test_filter_cli.py when ../shared is present): on the per-source evaluation below, fails",
        "if mean filtered precision, recall, F1 or AUC drops more than 0.05 below",
        "`bench/baseline_filter.json`, and refuses to run without that baseline.",
        "",
        "### One reviewer at a time (primary)",
        "",
        "An installation has one reviewer (its LLM passes and its rules), so agreement among tools is not",
        "available to it. **Protocol.** For each review-bench source (tool) alone: its comments on the",
        "evaluation half of the PRs are the candidates, its own comments on the history half of the same",
        "repo are the history (tp -> accepted, fp -> dismissed), the prior is rebuilt without the evaluated",
        "repo. Raw = every comment of the source posted. Precision and recall count distinct golden",
        "issues; AUC is per comment. Default settings (threshold 0.8 x the source's accept rate in its",
        "history, chosen on the history-CV below; no verification step). Candidate features are what one",
        "comment carries (concreteness, hedging, category, stated severity, file role) plus its position in",
        "the source's review and how many remarks the source made on the change.",
        "",
        *per_source_markdown(ps, d.get("per_source_cv")),
        "",
        f"**Targets:** filtered precision >= 1.3x raw keeping >= half the recall for most sources: "
        f"{verdict(m['targets_met'] > m['sources'] / 2)} ({m['targets_met']} of {m['sources']}); "
        f"mean AUC >= 0.70: {verdict(m['filtered']['auc'] >= 0.70)} ({m['filtered']['auc']:.3f}"
        + (
            f"; 95% bootstrap over the half's PRs [{m['auc_interval'][0]:.3f}, {m['auc_interval'][1]:.3f}]"
            if "auc_interval" in m
            else ""
        )
        + ").",
        "",
        "### Many tools together (second table)",
        "",
        "Reproduced by the same command. **Protocol.** review-bench: 852 comments of 12 review tools on 30 PRs of 3 repos, judged against 78",
        "human golden issues. Per repo, history = the candidates of the earlier half of its PRs by PR number",
        "(tp -> accepted, fp -> dismissed); evaluation = the later half (15 PRs, 39 golden issues). The filter",
        "runs through `run_filter` (the code behind `reviewbot filter`) with the default repo config",
        "(min_severity low, max_comments 10, threshold 0.8 x the repo's accept rate in its history, no",
        "exploration). *warm* = a prior rebuilt",
        "without the evaluated repo + a repo layer trained on its history; *cold* = the same prior, no",
        "history; *warm, shipped prior* = the shipped prior (it saw the repo's history half, never its",
        "evaluation half) + the repo layer. Precision and recall count distinct golden issues (a second",
        "comment on an already-covered issue is noise); AUC is per candidate (score vs tp). Each tool is",
        "scored the same way on the same 15 PRs (all its comments count as posted).",
        "",
        "| run | posted/PR | precision | recall | F1 | AUC |",
        "|---|---:|---:|---:|---:|---:|",
        row("filter warm", warm),
        row("filter cold", cold),
        row("filter warm, shipped prior", d["warm_shipped_prior"]),
    ]
    for key in sorted(k for k in d if k.startswith("warm_min_acceptance") or k.startswith("warm_target")):
        lines.append(row("filter warm, " + key[5:].replace("_", " "), d[key]))
    for tool, m in sorted(d["tools"].items(), key=lambda kv: -kv[1]["f1"]):
        lines.append(row(f"tool {tool}", m))
    lines += [
        "",
        f"**Targets (warm, default settings):** precision >= 0.6 {verdict(warm['precision'] >= 0.6)} "
        f"({warm['precision']:.3f}); F1 >= 0.65 {verdict(warm['f1'] >= 0.65)} ({warm['f1']:.3f}); "
        f"F1 above every single tool {verdict(warm['f1'] > best['f1'])} ({warm['f1']:.3f} vs {best_tool} "
        f"{best['f1']:.3f}). Cold: F1 {cold['f1']:.3f}. Nothing was tuned or selected on this split (the",
        "threshold policy was chosen on the per-source history-CV; the min_acceptance rows are shown, not",
        f"used). The filter posts {warm['posted_per_pr']:.1f} comments per PR at precision "
        f"{warm['precision']:.2f} where the best tool posts {best['posted_per_pr']:.1f} at "
        f"{best['precision']:.2f}.",
        "",
        "**Where recall goes** (each golden issue once, first reason; `missed` in the JSON): warm "
        + "; ".join(f"{k} {v}" for k, v in warm.get("missed", {}).items())
        + ".",
    ]
    cv = d.get("history_cv")
    if cv:
        lines[-1] += (
            " Inside the history half (history-CV below): "
            + "; ".join(f"{k} {v}" for k, v in cv["warm"].get("missed", {}).items())
            + "."
        )
        lines += [
            "",
            "**Choosing settings without leakage: history-CV** (`--history-cv`). The same protocol run inside",
            "the history half only: each history PR is held out in turn, the repo layer is trained on the",
            "repo's other history PRs, the prior is the leave-repo-out one (15 PRs, 39 golden issues). Every",
            "setting change is judged on these numbers, never on the evaluation half; what was tried and why",
            "nothing shipped is in `bench/reports/filter_tuning.md`.",
            "",
            "| history-CV run | posted/PR | precision | recall | F1 | AUC |",
            "|---|---:|---:|---:|---:|---:|",
            *(row(k.replace("_", " "), m) for k, m in cv.items()),
        ]
    lines += [
        "",
        "**What limits it.** F1 0.65 at precision 0.6 needs recall 0.71, i.e. 28 of the 39 golden issues,",
        "but only 31 were raised by any tool at all. Across tools cluster support (how many tools raised",
        "it) carries most of the signal, and high-support clusters that are not golden issues (often real",
        "remarks the golden list lacks) cap precision. With 39 golden issues one issue is 0.026 of recall,",
        "so differences under ~0.05 are noise on either split.",
        "",
    ]
    lines += [
        "**Speed**: `reviewbot filter` with a 100,000-row history, timed as a user runs it, is in",
        '"Filter speed" below (`bench/filter_speed.py`).',
        "",
    ]
    prior_metrics = load_prior().layers[0].metrics
    lines += [
        "**Prior** (`bench/reports/prior_training.md`): trained on revhelper (both parts) + the review-bench",
        "history halves only, L2 chosen by leave-one-project-out AUC. revhelper protocol (train",
        f"`comparative-study_`, test `validation_`): AUC {prior_metrics.get('revhelper_val_auc', float('nan')):.3f}",
        "(whether a human comment led to a change is hard to read from its text alone); mean",
        f"leave-one-project-out AUC {prior_metrics.get('lopo_auc', float('nan')):.3f} (per project in the report).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON here")
    parser.add_argument("--markdown", action="store_true", help="rewrite the BENCHMARKS.md section")
    parser.add_argument(
        "--history-cv",
        action="store_true",
        help="also run leave-one-PR-out CV inside the history half (the split for choosing settings)",
    )
    parser.add_argument(
        "--reuse", type=Path, help="take the results from this earlier --json output instead of running"
    )
    args = parser.parse_args()
    if args.reuse is not None:
        results = json.loads(args.reuse.read_text())
        results.pop("speed", None)  # timed by bench/filter_speed.py now
        return report(results, args)
    if not (SHARED / "review-bench").is_dir():
        print(f"skipped: {SHARED / 'review-bench'} is absent")
        return 0
    cands, golden = load_bench()
    default = settings_from_file(None)
    results: dict[str, Any] = {
        "warm": evaluate(default, cold=False, cands=cands, golden=golden),
        "cold": evaluate(default, cold=True, cands=cands, golden=golden),
        "warm_shipped_prior": evaluate(default, cold=False, cands=cands, golden=golden, shipped_prior=True),
        "warm_target_precision_0.6": evaluate(
            replace(default, target_precision=0.6), cold=False, cands=cands, golden=golden
        ),
        "tools": tool_metrics(cands, golden),
    }
    for thr in (0.3, 0.4, 0.5, 0.6):
        results[f"warm_min_acceptance_{thr}"] = evaluate(
            replace(default, min_acceptance=thr), cold=False, cands=cands, golden=golden
        )
    results["per_source"] = per_source(default, cands=cands, golden=golden)
    if args.history_cv:
        results["per_source_cv"] = per_source(default, cands=cands, golden=golden, history_cv=True)
    if args.history_cv:
        cv: dict[str, Any] = {
            "warm": history_cv(default, cold=False, cands=cands, golden=golden),
            "cold": history_cv(default, cold=True, cands=cands, golden=golden),
        }
        for thr in (0.3, 0.4, 0.5, 0.6):
            cv[f"warm_min_acceptance_{thr}"] = history_cv(
                replace(default, min_acceptance=thr), cold=False, cands=cands, golden=golden
            )
        results["history_cv"] = cv
    return report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> int:
    """Print the tables, write the requested files; 1 when a target is missed."""
    print("| run | posted/PR | precision | recall | F1 | AUC |")
    print("|---|---:|---:|---:|---:|---:|")
    for key in ("per_source", "per_source_cv"):
        if key in results:
            print(f"\n{key}:")
            print("\n".join(per_source_markdown(results[key], None)))
    for key, m in results.items():
        if key in ("tools", "history_cv", "per_source", "per_source_cv"):
            continue
        print(f"| filter {key} " + fmt(m))
    for key, m in results.get("history_cv", {}).items():
        print(f"| history-CV {key} " + fmt(m))
    for tool, m in results["tools"].items():
        print(f"| tool {tool} " + fmt(m))
    if args.markdown:
        write_section("## Noise filter", markdown(results) + "\n")
    if args.json and args.reuse is None:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    missed = missed_targets(results)
    for message in missed:
        print(f"TARGET MISSED: {message}", file=sys.stderr)
    return 1 if missed else 0


def missed_targets(results: dict[str, Any]) -> list[str]:
    """The issue #10 targets these results miss (speed: bench/filter_speed.py)."""
    out: list[str] = []
    m = results["per_source"]["mean"]
    if not m["targets_met"] > m["sources"] / 2:
        out.append(
            f"precision >= 1.3x raw at >= half recall for {m['targets_met']} of {m['sources']} sources"
        )
    if not m["filtered"]["auc"] >= 0.70:
        out.append(f"mean per-source AUC {m['filtered']['auc']:.3f} < 0.70")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
