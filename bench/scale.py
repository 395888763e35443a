"""Giant PRs: peak memory and time per file of `reviewbot review` on 1,000- and 5,000-file changes.

Each case is a generated git repository whose head changes N Python files (36 changed lines
each: three blocks of six lines rewritten), reviewed by the real CLI (`python -m reviewbot review
--format json`) in a subprocess against the fake OpenAI-compatible server (tests/fakes/fake_llm.py,
in this process, answering up to three findings per file). The review process's own figures come
from `os.wait4` (peak RSS, user + system CPU); a watchdog reading /proc kills a review that passes
--kill-mb, so a quadratic blow-up is a measured miss, not a machine out of memory. Both cases run
side by side in one invocation.

    .venv/bin/python bench/scale.py [--sizes 1000 5000] [--kill-mb 2500] [--write]

Targets (issue 14): 5,000 files peak RSS <= 1.5 GB; CPU time per file of the 5,000-file review
within 1.3x of the 1,000-file review's; 1,000 files peak RSS <= 500 MB. Exits 1 on a miss.
`--write` rewrites the "Giant PRs" section of BENCHMARKS.md (bench/benchmarks_md.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchmarks_md import write_section  # noqa: E402
from pipeline import responder  # noqa: E402

from reviewbot.adapters.local import build_repo_from_dirs  # noqa: E402
from tests.fakes.fake_llm import FakeLLM  # noqa: E402

HEADING = "## Giant PRs (scale)"
COMMAND = ".venv/bin/python bench/scale.py --write"
MB = 1024 * 1024
TARGET_5000_MB = 1536
TARGET_1000_MB = 500
TARGET_LINEARITY = 1.3
LINES_PER_FILE = 36


@dataclass(slots=True)
class Run:
    files: int
    changed_lines: int
    peak_mb: float
    cpu: float
    wall: float
    killed: bool = False
    exit_code: int = 0
    candidates: int = 0
    requests: int = 0
    posted: int = 0

    @property
    def cpu_ms_per_file(self) -> float:
        return 1000 * self.cpu / self.files


def _module(i: int, *, after: bool) -> str:
    """A 60-line module; the head rewrites lines 5-10, 25-30 and 45-50 (36 changed lines)."""
    out = [f'"""Module {i}."""', "", "def compute(items, k):", "    total = 0"]
    for n in range(4, 60):
        rewritten = after and any(lo <= n < lo + 6 for lo in (4, 24, 44))
        if rewritten:
            out.append(f"    total += items[{n}] / len(items) if items else handle_{i}_{n}(k)")
        else:
            out.append(f"    total += k * {n}  # step {n}")
    out.append("    return total")
    return "\n".join(out) + "\n"


def make_repo(root: Path, files: int) -> tuple[Path, str, str]:
    before, after = root / "before", root / "after"
    for i in range(files):
        rel = Path(f"pkg/d{i // 100:03d}/mod_{i}.py")
        for side, is_after in ((before, False), (after, True)):
            (side / rel).parent.mkdir(parents=True, exist_ok=True)
            (side / rel).write_text(_module(i, after=is_after))
    repo = root / "repo"
    base, head = build_repo_from_dirs(repo, before, after)
    return repo, base, head


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def review(repo: Path, base: str, head: str, files: int, llm_url: str, kill_mb: float, out: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWBOT_", "OPENAI_"))}
    env.update(
        {
            "REVIEWBOT_LLM_BASE_URL": llm_url,
            "REVIEWBOT_LLM_API_KEY": "bench",
            "REVIEWBOT_LOG_LEVEL": "WARNING",
        }
    )
    cmd = [
        sys.executable,
        "-m",
        "reviewbot",
        "review",
        str(repo),
        "--base",
        base,
        "--head",
        head,
        "--format",
        "json",
        "-o",
        str(out),
        "--allow-llm-failure",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = threading.Event()

    def watchdog() -> None:
        while proc.returncode is None and not killed.is_set():
            if _rss_mb(proc.pid) > kill_mb:
                killed.set()
                os.kill(proc.pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    threading.Thread(target=watchdog, daemon=True).start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    run = Run(
        files,
        files * LINES_PER_FILE,
        usage.ru_maxrss / 1024,
        usage.ru_utime + usage.ru_stime,
        wall,
        killed=killed.is_set(),
        exit_code=proc.returncode,
    )
    if not run.killed and out.exists():
        report = json.loads(out.read_text())
        run.candidates = report["funnel"]["candidates"]
        run.requests = report["usage"]["requests"]
        run.posted = len(report["findings"])
    return run


def verdict(runs: dict[int, Run]) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []
    small, big = runs.get(1000), runs.get(5000)
    if small is not None:
        ok = not small.killed and small.peak_mb <= TARGET_1000_MB
        checks.append((f"1,000 files peak RSS {_mb(small)} <= {TARGET_1000_MB} MB", ok))
    if big is not None:
        ok = not big.killed and big.peak_mb <= TARGET_5000_MB
        checks.append((f"5,000 files peak RSS {_mb(big)} <= {TARGET_5000_MB} MB", ok))
    if small is not None and big is not None:
        if big.killed or small.killed:
            checks.append(("time per file: not measured (a review was killed)", False))
        else:
            ratio = big.cpu_ms_per_file / small.cpu_ms_per_file
            checks.append(
                (f"CPU per file 5,000 / 1,000 = {ratio:.2f} <= {TARGET_LINEARITY}", ratio <= TARGET_LINEARITY)
            )
    return checks


def _mb(run: Run) -> str:
    return f"> {run.peak_mb:.0f} MB (killed)" if run.killed else f"{run.peak_mb:.0f} MB"


def section(runs: dict[int, Run], checks: list[tuple[str, bool]], kill_mb: float) -> str:
    rows = [
        f"| {r.files:,} | {r.changed_lines:,} | {r.candidates:,} | {r.requests:,} | {_mb(r)} | "
        f"{r.cpu:.1f} s | {r.wall:.1f} s | {'-' if r.killed else f'{r.cpu_ms_per_file:.1f} ms'} |"
        if not r.killed
        else f"| {r.files:,} | {r.changed_lines:,} | - | - | {_mb(r)} | {r.cpu:.1f} s (until killed) | "
        f"{r.wall:.1f} s | - |"
        for r in runs.values()
    ]
    ok = all(passed for _, passed in checks)
    load = os.getloadavg()[0]
    return "\n".join(
        [
            HEADING,
            "",
            f"`{COMMAND}`: `reviewbot review --format json` in a subprocess on a generated git",
            f"repository whose head rewrites {LINES_PER_FILE} lines in each of N Python files, against the",
            "fake OpenAI-compatible server (up to three findings per file), default settings (LLM",
            "concurrency 4, no per-review caps). Peak RSS and CPU (user + system) are the review",
            f"process's own (`os.wait4`); a review passing {kill_mb:.0f} MB is killed (a miss). Targets",
            "(issue 14): 5,000 files <= 1.5 GB; CPU per file within 1.3x of the 1,000-file run's;",
            "1,000 files <= 500 MB. Both cases measured side by side in this one run.",
            "",
            "| files | changed lines | candidates | LLM requests | peak RSS | CPU | wall | CPU per file |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Result: **"
            + ("PASS" if ok else "FAIL")
            + "** ("
            + "; ".join(f"{text}: {'yes' if passed else 'no'}" for text, passed in checks)
            + ").",
            f"Last run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load:.1f} on 2 shared cores.",
            "The operator's caps (`REVIEWBOT_REVIEW_MAX_FILES`, `REVIEWBOT_REVIEW_MAX_CHANGED_LINES`,",
            "`REVIEWBOT_REVIEW_MAX_CANDIDATES`) bound a review whatever its size; this bench measures the",
            "uncapped default. CPU includes the interpreter's start and imports (a fixed cost), so CPU",
            "per file falls as the change grows; wall time includes waiting for the fake LLM.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--kill-mb", type=float, default=2500.0, help="kill a review past this RSS")
    parser.add_argument("--write", action="store_true", help="rewrite the BENCHMARKS.md section")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    runs: dict[int, Run] = {}
    with tempfile.TemporaryDirectory(prefix="reviewbot-scale-") as tmp, FakeLLM(responder=responder) as llm:
        for size in args.sizes:
            root = Path(tmp) / str(size)
            repo, base, head = make_repo(root, size)
            run = review(repo, base, head, size, llm.base_url, args.kill_mb, root / "report.json")
            runs[size] = run
            print(
                f"{size} files: peak {_mb(run)}, CPU {run.cpu:.1f} s, wall {run.wall:.1f} s, "
                f"{run.candidates} candidates, {run.requests} requests, exit {run.exit_code}",
                flush=True,
            )
    checks = verdict(runs)
    for text, passed in checks:
        print(f"{'PASS' if passed else 'MISS'}: {text}")
    if args.json:
        args.json.write_text(json.dumps({s: asdict(r) for s, r in runs.items()}, indent=2))
    if args.write:
        write_section(HEADING, section(runs, checks, args.kill_mb))
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
