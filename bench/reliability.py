"""Long fuzzing runs of the four untrusted-input parsers, beyond what CI can afford.

Uses the same generators and checks as tests/test_fuzz.py (diff-shaped text, YAML-shaped configs,
mutated webhook payloads, finding-shaped LLM replies, plus their cheap mutations), driven by a
seeded random.Random instead of hypothesis so it runs at full speed for a time budget per target.
Any input that raises something other than the target's typed error, breaks an invariant, or takes
longer than tests.test_fuzz.PER_CALL_LIMIT is saved to bench/reports/fuzz-failures/ and counted.

    python bench/reliability.py                     # 60 s per target
    python bench/reliability.py --seconds 5 --seed 3

Exit status 1 when any failure was found.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import test_fuzz as fz  # noqa: E402  (the generators and checks under test in CI)

OUT = ROOT / "bench" / "reports" / "fuzz-failures"


def _diff(rnd: random.Random) -> list[tuple[Callable[..., None], tuple]]:
    text = fz.diff_shaped(rnd)
    return [(fz.check_diff, (t,)) for t in [text, *fz.mutations(text, rnd, 5)]]


def _config(rnd: random.Random) -> list[tuple[Callable[..., None], tuple]]:
    text = fz.yaml_shaped(rnd)
    return [(fz.check_config, (t,)) for t in [text, *fz.mutations(text, rnd, 4)]]


def _webhooks(rnd: random.Random) -> list[tuple[Callable[..., None], tuple]]:
    return [(fz.check_route, fz.mutated_payload(rnd)) for _ in range(4)]


def _reply(rnd: random.Random) -> list[tuple[Callable[..., None], tuple]]:
    text = fz.reply_shaped(rnd)
    return [(fz.check_reply, (t,)) for t in [text, *fz.mutations(text, rnd, 3)]]


TARGETS: dict[str, Callable[[random.Random], list[tuple[Callable[..., None], tuple]]]] = {
    "diff": _diff,
    "config": _config,
    "webhooks": _webhooks,
    "llm-reply": _reply,
}


def run(seconds: float, seed: int) -> dict[str, dict[str, int]]:
    report: dict[str, dict[str, int]] = {}
    for name, make in TARGETS.items():
        rnd = random.Random(f"{seed}:{name}")
        fz.COUNTS.clear()
        failures: Counter[str] = Counter()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for check, args in make(rnd):
                try:
                    check(*args)
                except Exception as exc:  # noqa: BLE001 - every escape is a finding to save
                    key = f"{type(exc).__name__}: {str(exc)[:80]}"
                    if failures[key] == 0:
                        OUT.mkdir(parents=True, exist_ok=True)
                        path = OUT / f"{name}-{len(failures)}.json"
                        path.write_text(
                            json.dumps(
                                {"args": [repr(a) for a in args], "error": traceback.format_exc()}, indent=2
                            )
                        )
                    failures[key] += 1
        report[name] = {**dict(fz.COUNTS), "failures": sum(failures.values())}
        for key, n in failures.most_common():
            print(f"  {name}: {n} x {key}", file=sys.stderr)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget per target")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = run(args.seconds, args.seed)
    print(json.dumps(report, indent=2))
    return 1 if any(r["failures"] for r in report.values()) else 0  # inputs counted per parser called


if __name__ == "__main__":
    raise SystemExit(main())
