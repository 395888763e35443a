"""The benches are gates: each exits non-zero when it misses its target.

`bench/pipeline_snapshot.py --check` runs here over the 62 real PRs (skipped without ../shared):
a change that moves what any review stage produces fails the suite, unless the baseline
(bench/reports/pipeline_snapshot.json) is rewritten on purpose with `--write` in the same commit.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
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


def _run_bench(name: str, *args: str, timeout: float = 300) -> str:
    """Run bench/<name>.py as a user does (a subprocess from the checkout); its stdout, once it
    has exited 0."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


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
    out = _run_bench(
        "pipeline_snapshot",
        "--data",
        str(shared_data / "real-prs"),
        "--check",
        str(ROOT / "bench" / "reports" / "pipeline_snapshot.json"),
        timeout=900,
    )
    assert "62 PRs, 0 differing" in out


@pytest.mark.shared
@pytest.mark.slow
def test_sarif_in_bench_runs_through_the_review_command_on_real_commits(shared_data: Path) -> None:
    """It had rotted unseen: run_local_review took a ReviewConfig and the bench still passed a
    RepoConfig. Two commits, BENCHMARKS.md left alone."""
    bundle = shared_data / "real-repos" / "click.bundle"
    out = _run_bench("sarif_in", "--commits", "2", "--bundle", str(bundle), "--no-write", timeout=600)
    assert "| on lines the commits add (reach the filter) |" in out


def test_queue_misses_when_the_deep_backlog_halves_the_rate_or_acks_are_slow_while_draining() -> None:
    queue = _bench("queue_backlog")

    def drained(depth: int, workers: int, seconds: float, backend: str = "sqlite") -> object:
        return queue.Drain(backend, depth, workers, 1000, seconds)

    assert queue.misses([drained(500, 1, 1.0), drained(20000, 1, 1.9)], []) == []
    [miss] = queue.misses(
        [drained(500, 1, 1.0), drained(20000, 1, 2.1), drained(500, 2, 1.0), drained(20000, 2, 1.0)], []
    )
    assert miss.startswith("sqlite, 1 worker(s): 476 jobs/s at 20,000")
    # each backend against its own shallow figure: PostgreSQL's slower 500 does not excuse SQLite
    rows = [drained(500, 1, 1.0), drained(20000, 1, 2.1), drained(500, 1, 4.0, "postgresql")]
    rows.append(drained(20000, 1, 4.0, "postgresql"))
    assert [m.split(",")[0] for m in queue.misses(rows, [])] == ["sqlite"]
    idle = queue.Acks("idle (no worker)", 100, 5.0, 90.0, 0, 1.0)
    busy = queue.Acks("while 1 worker drains 2,000 jobs", 100, 5.0, 51.0, 0, 1.0)
    assert queue.misses([], [idle]) == []  # the target is for acks while draining
    said = "ack p99 51.0 ms while 1 worker drains 2,000 jobs (target 50 ms)"
    assert queue.misses([], [idle, busy]) == [said]
    assert queue.misses([], [queue.Acks("while", 10, 1.0, 2.0, 1, 1.0)]) == ["1 ack(s) not 202 while"]


def test_latency_holds_each_case_to_its_own_target_and_reports_the_overhead() -> None:
    latency = _bench("latency")

    def row(case: str, e2e: float, verify: int) -> dict[str, object]:
        return {
            "case": case,
            "run": "1",
            "e2e": e2e,
            "slowest": 1.0,
            "requests": latency.REQUESTS,
            "verify_requests": verify,
        }

    cases = latency.summarise([row("verification on", 1.5, 4), row("verification off", 1.25, 0)])
    assert cases["verification on"]["ok"] and cases["verification off"]["ok"]
    cases = latency.summarise([row("verification on", 1.5, 4), row("verification off", 1.4, 0)])
    off = cases["verification off"]
    assert not off["ok"] and round(off["median_overhead"], 3) == 0.4
    no_judge = latency.summarise([row("verification on", 1.2, 0), row("verification off", 1.1, 0)])
    assert not no_judge["verification on"]["ok"]  # the verification case must verify


def _comments(score_of: Callable[[int, bool], float], half: str = "cv") -> list[dict[str, object]]:
    """Two sources, twelve PRs, one true and two false remarks per source and PR."""
    rows: list[dict[str, object]] = []
    for tool in ("a", "b"):
        for pr in range(12):
            for k, tp in enumerate((True, False, False)):
                cid = f"{tool}/{pr}/{k}"
                rows.append({"half": half, "tool": tool, "repo": "r", "pr": pr, "id": cid, "tp": tp})
                rows[-1]["score"] = score_of(pr * 3 + k, tp)
    return rows


def test_filter_compare_ships_a_change_only_when_its_cv_gain_interval_excludes_zero() -> None:
    compare = _bench("filter_compare")
    noise = [((i * 7919) % 101) / 101 for i in range(100)]
    coin = _comments(lambda i, tp: noise[i % 100])
    sharp = _comments(lambda i, tp: (0.6 if tp else 0.4) + 0.1 * noise[i % 100])
    gain = compare.pair(coin, sharp, "cv")
    base, ours = gain.mean_auc(gain.prs)
    assert ours == 1.0 and base < 0.75
    mean, low, high = compare.bootstrap(gain, resamples=200)
    assert 0 < low <= mean <= high
    same = compare.pair(coin, coin, "cv")
    assert compare.bootstrap(same, resamples=50) == (0.0, 0.0, 0.0)
    with pytest.raises(SystemExit, match="not by the baseline"):
        compare.pair(coin[:-1], coin, "cv")


@pytest.mark.slow
def test_hostile_bench_times_the_before_code_not_this_checkout() -> None:
    """It had rotted unseen: since the layout move the attacks import reviewbot.review.prompt,
    which 045d08e lacks, and the editable install supplied this checkout's module, so "before"
    timed the fixed code (0.0 ms where the code of issue #11 takes > 20 s). RELIABILITY.md left
    alone."""
    out = _run_bench("hostile", "--timeout", "1", "--no-write")
    neutralise = out.split("1. an added line of `<` + 20,000 spaces")[1].splitlines()
    assert neutralise[1].strip() == "before: > 1 s (stopped)", out[:1000]
    assert neutralise[2].strip() == "after:  0.0 ms (20001 chars)", out[:1000]


@pytest.mark.shared
@pytest.mark.slow
def test_prompt_size_bench_measures_v1_with_the_v1_code(shared_data: Path) -> None:
    """It had rotted unseen: on the export of 045d08e (flat layout) its imports of today's module
    names were answered by this checkout, so v1 and v2 were the same code (+0.0%). v1 is frozen
    code on frozen PRs: its row is the one BENCHMARKS.md shows."""
    out = _run_bench("prompt_size", "--data", str(shared_data / "real-prs"))
    v1 = "| v1 (045d08e), budget 12,000 | 62 | 1412 | 192 | 1,732,733 | 932,991 (54%) | 1227 |"
    assert v1 in out, out[-3000:]


@pytest.mark.shared
@pytest.mark.slow
def test_untouched_bias_bench_reads_the_shared_data_it_is_given(shared_data: Path) -> None:
    """It only looked beside the checkout (../shared/data), so from a worktree it exited "absent"."""
    out = _run_bench("untouched_bias", "--seeds", "1", "--data", str(shared_data))
    assert "mean of 1 simulations x 3 repos" in out


def test_filter_eval_puts_an_interval_on_the_mean_per_source_auc() -> None:
    evaluation = _bench("filter_eval")
    prs = [("r", n) for n in range(10)]
    perfect = {"a": [(pr, 1.0 if k == 0 else 0.0, k == 0) for pr in prs for k in range(3)]}
    assert evaluation.mean_auc_interval(perfect, prs, resamples=50) == [1.0, 1.0]
    noise = [((i * 7919) % 101) / 101 for i in range(30)]
    coin = {"a": [(pr, noise[3 * n + k], k == 0) for n, pr in enumerate(prs) for k in range(3)]}
    low, high = evaluation.mean_auc_interval(coin, prs, resamples=200)
    assert 0.0 < low < high < 1.0 and high - low > 0.1
