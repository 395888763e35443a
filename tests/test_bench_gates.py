"""The benches are gates: each exits non-zero when it misses its target.

`bench/pipeline_snapshot.py --check` runs here over the 62 real PRs (skipped without ../shared):
a change that moves what any review stage produces fails the suite, unless the baseline
(bench/reports/pipeline_snapshot.json) is rewritten on purpose with `--write` in the same commit.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_ingest_fails_when_it_misses_its_latency_target_not_only_when_it_loses_deliveries() -> None:
    ingest = _bench("ingest")
    fast = ingest.Report(sent=10, p99_ms=12.0, seconds=1.0)
    slow = ingest.Report(sent=10, p99_ms=105.7, seconds=1.0)
    lost = ingest.Report(sent=10, p99_ms=1.0, lost=1, seconds=1.0)
    assert ingest.verdict([(1, fast), (8, fast)]) == (True, "PASS")
    ok, said = ingest.verdict([(1, fast), (16, slow)])
    assert not ok and "p99 over the 50 ms target at 16 in flight" in said
    assert ingest.verdict([(16, slow)], p99_target_ms=200.0)[0]
    assert not ingest.verdict([(1, lost)])[0]
    assert "**FAIL" in ingest.render([(1, fast), (16, slow)], 10)


@pytest.mark.shared
@pytest.mark.slow
def test_pipeline_snapshot_check_finds_no_change_on_the_real_prs(shared_data: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, str(ROOT / "bench" / "pipeline_snapshot.py"),
            "--data", str(shared_data / "real-prs"),
            "--check", str(ROOT / "bench" / "reports" / "pipeline_snapshot.json"),
        ],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "62 PRs, 0 differing" in proc.stdout
