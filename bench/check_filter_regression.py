"""Regression gate for the noise filter: fail when the per-source review-bench figures drop.

Runs the single-reviewer evaluation (bench/filter_eval.py `per_source`: each review-bench tool
alone, default repo config) and compares its mean filtered precision, recall, F1 and AUC with
the committed baseline bench/baseline_filter.json. Exits 1 if any is more than 0.05 below the
baseline; exits 2 when the baseline is missing (run with `--update` to write it after an
intended change); skips (exit 0, with a message) when ../shared is absent, as on a user's clone.

Run: .venv/bin/python bench/check_filter_regression.py [--update]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
BASELINE = ROOT / "bench" / "baseline_filter.json"
TOLERANCE = 0.05
GATED = ("precision", "recall", "f1", "auc")


def compare(current: dict[str, float], baseline: dict[str, float], tolerance: float = TOLERANCE) -> list[str]:
    """The gated metrics that fell more than `tolerance` below the baseline, as messages."""
    return [
        f"{key}: {current[key]:.3f} is more than {tolerance} below the baseline {baseline[key]:.3f}"
        for key in GATED
        if current[key] < baseline[key] - tolerance
    ]


def summarise(per_source: dict) -> dict[str, float]:
    m = per_source["mean"]
    out = {
        k: round(float(m["filtered"][k]), 4) for k in ("precision", "recall", "f1", "posted_per_pr", "auc")
    }
    out["targets_met"] = int(m["targets_met"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--update", action="store_true", help="write the current numbers as the baseline")
    parser.add_argument("--baseline", type=Path, default=BASELINE, help="the baseline JSON to compare with")
    args = parser.parse_args(argv)
    baseline_path: Path = args.baseline
    if not args.update and not baseline_path.exists():
        print(
            f"refused: no baseline at {baseline_path}; run with --update after checking the figures",
            file=sys.stderr,
        )
        return 2
    from filter_eval import SHARED, load_bench, per_source, settings_from_file

    if not (SHARED / "review-bench").is_dir():
        print(f"skipped: {SHARED / 'review-bench'} is absent, nothing to compare")
        return 0
    cands, golden = load_bench()
    summary = summarise(per_source(settings_from_file(None), cands=cands, golden=golden))
    if args.update:
        baseline_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        print(f"baseline written: {summary}")
        return 0
    baseline = json.loads(baseline_path.read_text())
    missing = [k for k in GATED if k not in baseline]
    if missing:
        print(f"refused: the baseline lacks {', '.join(missing)}; run with --update", file=sys.stderr)
        return 2
    failures = compare(summary, baseline)
    print(f"filter on review-bench, per source (mean): {summary}; baseline {baseline}")
    for failure in failures:
        print(f"REGRESSION {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
