"""Is a filter change worth shipping? Per-source AUC of this tree against a baseline commit, paired.

Runs the single-reviewer protocol of bench/filter_eval.py (`per_source`: each review-bench source
alone, its own history, the leave-repo-out prior) on this tree and on `--baseline` (exported with
`git archive` into a temporary directory and run there in a subprocess, so each side builds its
own prior with its own code), on both halves: the history-CV (each history PR held out in turn),
which is the only split settings are chosen on, and the evaluation half, reported for the record.

The scores are paired comment by comment and compared with a paired bootstrap over PRs: each
resample draws the half's PRs with replacement and scores every source on it, on both sides, so
the interval is the one of the *difference*. The rule (bench/reports/filter_tuning.md): a change
ships when the history-CV interval lies above 0. Exits 1 when it does not (or the run failed).

Run: .venv/bin/python bench/filter_compare.py --baseline COMMIT [--resamples 300] [--report PATH]
(needs ../shared/data; about a minute).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # imported where used: the --dump process must load reviewbot from its tree only
    from per_source_auc import BySource

ROOT = Path(__file__).resolve().parent.parent
HALVES = ("cv", "eval")


def dump(root: Path) -> list[dict[str, Any]]:
    """Every review-bench comment's score under the tree at `root`, on both halves."""
    from tree_imports import pin  # this checkout's, from the script's own folder

    # `root` first on sys.path, and today's module names bound to where an older tree has them;
    # check_pinned() then proves no module came from this checkout (the venv's editable install
    # answers what a tree lacks, and a comparison of today's code with itself says "no change")
    pinned: dict[str, Any] = {}
    exec(pin(root), pinned)
    sys.path.insert(1, str(root / "bench"))
    import filter_eval as fe  # the tree's own protocol and prior recipe
    from train_prior import bench_split, load_bench

    from reviewbot.commands.filter_cmd import settings_from_file

    cands, _ = load_bench()
    settings = settings_from_file(None)
    hist, evals = bench_split(cands)
    out: list[dict[str, Any]] = []
    for half, test in (("cv", hist), ("eval", evals)):
        for tool in sorted({c["tool"] for c in cands}):
            own = [c for c in cands if c["tool"] == tool]
            by_id = {c["id"]: c for c in own}

            def history_of(repo: str, pr: int, half: str = half) -> set[tuple[str, int]]:
                return {q for q in hist if q[0] == repo and (half == "eval" or q != (repo, pr))}

            for o in fe._source_outputs(settings, own, test, history_of):
                c = by_id[o["id"]]
                out.append(
                    {"half": half, "tool": tool, "repo": c["repo"], "pr": c["pr"], "id": c["id"]}
                    | {"score": o["score"], "tp": c["label"] == "tp"}
                )
    pinned["check_pinned"]()
    return out


@dataclass(frozen=True)
class Paired:
    """Both sides' scores of one half, grouped by source, then by PR: ((baseline, this tree), tp)."""

    by_source: BySource

    @property
    def prs(self) -> list[tuple[str, int]]:
        return sorted({pr for prs in self.by_source.values() for pr in prs})

    def mean_auc(self, prs: Sequence[tuple[str, int]]) -> tuple[float, float]:
        """(baseline, this tree) mean per-source AUC over `prs` (sources with both labels)."""
        from per_source_auc import mean_aucs

        means = mean_aucs(self.by_source, prs)
        return (means[0], means[1]) if means is not None else (math.nan, math.nan)


def pair(baseline: list[dict[str, Any]], ours: list[dict[str, Any]], half: str) -> Paired:
    theirs = {(d["half"], d["id"]): d["score"] for d in baseline}
    by_source: BySource = {}
    for d in ours:
        if d["half"] != half:
            continue
        key = (d["half"], d["id"])
        if key not in theirs:
            raise SystemExit(f"comment {d['id']} was scored by this tree but not by the baseline")
        by_source.setdefault(d["tool"], {}).setdefault((d["repo"], d["pr"]), []).append(
            ((theirs[key], d["score"]), d["tp"])
        )
    return Paired(by_source)


def bootstrap(paired: Paired, resamples: int, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5th, 97.5th percentile) of this tree's gain in mean per-source AUC over PRs."""
    from per_source_auc import resampled

    gains = [ours - base for base, ours in resampled(paired.by_source, paired.prs, resamples, seed)]
    return float(np.mean(gains)), float(np.percentile(gains, 2.5)), float(np.percentile(gains, 97.5))


def export(commit: str, into: Path) -> Path:
    """The baseline's tree, from `git archive` (no checkout of this worktree is touched)."""
    blob = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_dump(root: Path, out: Path, shared: Path) -> list[dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=str(root), REVIEWBOT_SHARED_DATA=str(shared))
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--dump-root", str(root), "--dump", str(out)],
        check=True,
        env=env,
        cwd=root,
    )
    loaded: list[dict[str, Any]] = json.loads(out.read_text())
    return loaded


def report_lines(
    baseline: str, rows: dict[str, tuple[float, float, tuple[float, float, float]]], resamples: int
) -> list[str]:
    lines = [
        f"`.venv/bin/python bench/filter_compare.py --baseline {baseline} --resamples {resamples}`",
        "",
        "| half | baseline mean AUC | this tree | gain, paired bootstrap over PRs (95%) |",
        "|---|---:|---:|---|",
    ]
    for half, (base, ours, (mean, lo, hi)) in rows.items():
        name = "history-CV (decides)" if half == "cv" else "evaluation (reported)"
        interval = f"bootstrap {mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        lines.append(f"| {name} | {base:.3f} | {ours:.3f} | {ours - base:+.3f} ({interval}) |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="the commit to compare against")
    parser.add_argument("--resamples", type=int, default=300)
    parser.add_argument("--report", type=Path, help="also write the result as markdown here")
    parser.add_argument("--dump-root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dump is not None:
        args.dump.write_text(json.dumps(dump(args.dump_root)))
        return 0
    if not args.baseline:
        parser.error("--baseline is required")
    from train_prior import SHARED as shared  # REVIEWBOT_SHARED_DATA, else ../shared/data

    if not (shared / "review-bench").is_dir():
        print(f"skipped: {shared / 'review-bench'} is absent")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = export(args.baseline, Path(tmp) / "baseline")
        theirs = run_dump(base_tree, Path(tmp) / "baseline.json", shared)
        ours = run_dump(ROOT, Path(tmp) / "ours.json", shared)
    results = {}
    for half in HALVES:
        paired = pair(theirs, ours, half)
        base, mine = paired.mean_auc(paired.prs)
        results[half] = (base, mine, bootstrap(paired, args.resamples))
    lines = report_lines(args.baseline, results, args.resamples)
    print("\n".join(lines))
    low = results["cv"][2][1]
    verdict = (
        "ships: the history-CV interval lies above 0"
        if low > 0
        else "does not ship: the history-CV interval reaches 0"
    )
    print(f"\nDecision: {verdict}.")
    if args.report is not None:
        args.report.write_text("\n".join([*lines, "", f"Decision: {verdict}.", ""]), encoding="utf-8")
    return 0 if low > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
