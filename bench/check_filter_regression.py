"""Regression gate for the noise filter: fail when review-bench precision or recall drops.

Runs the warm review-bench evaluation (bench/filter_eval.py, default repo config) and compares
it with the committed baseline bench/baseline_filter.json. Exits 1 if precision or recall is
more than 0.05 below the baseline, 0 otherwise; skips (exit 0, with a message) when ../shared is
absent, as on a user's clone. `--update` rewrites the baseline after an intended change.

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
GATED = ("precision", "recall")


def compare(current: dict[str, float], baseline: dict[str, float], tolerance: float = TOLERANCE) -> list[str]:
    """The gated metrics that fell more than `tolerance` below the baseline, as messages."""
    return [
        f"{key}: {current[key]:.3f} is more than {tolerance} below the baseline {baseline[key]:.3f}"
        for key in GATED
        if current[key] < baseline[key] - tolerance
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--update", action="store_true", help="write the current numbers as the baseline")
    args = parser.parse_args()
    from filter_eval import SHARED, evaluate, load_bench, settings_from_file

    if not (SHARED / "review-bench").is_dir():
        print(f"skipped: {SHARED / 'review-bench'} is absent, nothing to compare")
        return 0
    cands, golden = load_bench()
    current = evaluate(settings_from_file(None), cold=False, cands=cands, golden=golden)
    summary = {k: round(float(current[k]), 4) for k in ("precision", "recall", "f1", "posted_per_pr", "auc")}
    if args.update or not BASELINE.exists():
        BASELINE.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        print(f"baseline written: {summary}")
        return 0
    baseline = json.loads(BASELINE.read_text())
    failures = compare(summary, baseline)
    print(f"filter on review-bench (warm): {summary}; baseline {baseline}")
    for failure in failures:
        print(f"REGRESSION {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
