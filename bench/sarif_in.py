"""A team's linter through reviewbot's filter, on real commits: how much of ruff's output reaches
a review, and what reading and anchoring a large SARIF log costs.

    python bench/sarif_in.py [--commits 30] [--bundle ../shared/data/real-repos/click.bundle] [--no-write]

On the last N commits of pallets/click that touch Python (../shared/data/real-repos/click.bundle),
ruff runs on the head tree with a broad rule set (E, W, F, B, S, UP, SIM, PL, RUF: what a team that
"turns everything on" gets), and `reviewbot review --sarif-in` (rules only, the shipped prior,
the default config) filters it. Counts: ruff's findings in the whole tree, in the changed files, on
the lines the commits add (what reaches the filter), and what is posted or suppressed and why.

Targets (exit 1 when missed): every imported finding that reaches the filter sits on a line its
commit adds (anchoring), and reading + anchoring the SARIF log takes under 500 ms per commit at
the median (ruff reports the whole tree: ~1,600 findings per commit here).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchmarks_md import write_section  # noqa: E402
from reviewbot.adapters.local import load_change  # noqa: E402
from reviewbot.commands.review_cmd import run_local_review  # noqa: E402
from reviewbot.core.settings import Settings  # noqa: E402
from reviewbot.review.diff import parse_diff  # noqa: E402
from reviewbot.review.pipeline import select_files  # noqa: E402
from reviewbot.review.review_config import load_review_config  # noqa: E402
from reviewbot.review.sarif_in import anchor, parse_sarif  # noqa: E402

BUNDLE = ROOT.parent / "shared" / "data" / "real-repos" / "click.bundle"
SELECT = "E,W,F,B,S,UP,SIM,PL,RUF"
MAX_IMPORT_MS = 500.0
HEADING = "## Linters through the filter (SARIF in)"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=30)
    ap.add_argument("--bundle", type=Path, default=BUNDLE)
    ap.add_argument("--no-write", action="store_true", help="print, do not rewrite BENCHMARKS.md")
    args = ap.parse_args()
    if not args.bundle.exists():
        print(f"skipped: {args.bundle} is absent (it is in ../shared, beside a clone of the project)")
        return 0
    ruff = Path(sys.executable).parent / "ruff"
    counts: Counter[str] = Counter()
    import_ms: list[float] = []
    misplaced = 0
    settings = Settings(llm_base_url=None, llm_api_key=None)
    config = load_review_config(None)  # the defaults and built-in rules, as a fresh repo has
    with tempfile.TemporaryDirectory(prefix="reviewbot-sarif-bench-") as tmp:
        repo = Path(tmp) / "click"
        clone = ["git", "-c", "advice.detachedHead=false", "clone", "-q", str(args.bundle), str(repo)]
        subprocess.run(clone, check=True)
        log = ["log", "--no-merges", "-n", str(args.commits), "--format=%H", "--", "*.py"]
        commits = _git(repo, *log).split()
        for sha in commits:
            _git(repo, "checkout", "-q", "--force", sha)
            out = Path(tmp) / "ruff.sarif"
            subprocess.run(
                [
                    str(ruff),
                    "check",
                    "--no-cache",
                    "--isolated",
                    "--exit-zero",
                    "--select",
                    SELECT,
                    "--output-format",
                    "sarif",
                    "-o",
                    str(out),
                    ".",
                ],
                cwd=repo,
                capture_output=True,
                check=True,
            )
            change = load_change(repo, base=f"{sha}~1", head=sha)
            text = out.read_text()
            started = time.perf_counter()
            imported = parse_sarif(text).candidates
            files, skipped = select_files(parse_diff(change.diff_text), config.config)
            by_path = {f.path: f for f in files}
            kept, _ = anchor(imported, by_path, not_reviewed=skipped)
            import_ms.append((time.perf_counter() - started) * 1000)
            misplaced += sum(1 for c in kept if c.line not in by_path[c.path or ""].added_line_numbers())
            review = run_local_review(
                change, config=config, settings=settings, show_progress=False, imported=imported
            )
            result = asyncio.run(review)
            counts["commits"] += 1
            counts["whole tree"] += len(imported)
            counts["changed files"] += sum(
                1 for c in imported if any((c.path or "").endswith("/" + p) for p in {*by_path, *skipped})
            )
            decided = [*result.posted, *result.suppressed]
            mine = [d for d in decided if d.candidate.source.startswith("sarif:")]
            counts["added lines"] += len(mine)
            counts["posted"] += sum(1 for d in mine if d.decision == "post")
            for d in mine:
                if d.decision != "post":
                    counts["suppressed: " + _kind(d.reason)] += 1
    median_ms = statistics.median(import_ms) if import_ms else 0.0
    ok = misplaced == 0 and median_ms < MAX_IMPORT_MS
    lines = [
        HEADING,
        "",
        f"`python bench/sarif_in.py` (ruff `--select {SELECT}` on the last {counts['commits']} commits of "
        "pallets/click that touch Python; `reviewbot review --sarif-in` with rules only, the shipped prior "
        "and the default config).",
        "",
        "| ruff findings | count |",
        "|---|---|",
        f"| in the whole tree (what ruff reports) | {counts['whole tree']} |",
        f"| in the files the commits change | {counts['changed files']} |",
        f"| on lines the commits add (reach the filter) | {counts['added lines']} |",
        f"| posted | {counts['posted']} |",
        *[f"| {k} | {v} |" for k, v in sorted(counts.items()) if k.startswith("suppressed: ")],
        "",
        f"Reading and anchoring one commit's SARIF log: median {median_ms:.0f} ms (target < "
        f"{MAX_IMPORT_MS:.0f} ms); imported findings that reached the filter off an added line: {misplaced} "
        "(target 0). Identical findings of one rule on nearby lines become one issue (dedup), and with no "
        "feedback yet the shipped prior scores a linter rule by its severity, so style rules stay below "
        "the acceptance threshold until the repository's engineers accept them.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(HEADING, text)
    if not ok:
        print("MISSED TARGET", file=sys.stderr)
    return 0 if ok else 1


def _kind(reason: str) -> str:
    for prefix in ("duplicate", "below acceptance", "below min_severity", "over budget"):
        if reason.startswith(prefix):
            return prefix
    return reason


if __name__ == "__main__":
    sys.exit(main())
