"""Learning speed through the App path: how soon a dismissed kind stops, whether models keep shipping.

Runs the scenario of tests/test_learning_loop.py (the real server and worker wiring, FakeGitHub
and FakeLLM on 127.0.0.1, one PR a day, each adding a new file with one finding of each of three
kinds; the team replies "false positive, we don't care" to one kind and "good catch, fixed" to
another, as signed webhooks, never answers the third, and merges each PR) and writes the
"## Learning loop" section of BENCHMARKS.md. Targets (issue #17): the dismissed kind stops at
new locations within 3 explicit dismissals (Greptile: about 3 ignores); the only-ever-ignored
kind stops within 6 PRs; the accepted kind posts every day; a new repo of the org starts from
the org model; every retrain after the first is activated. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime
from math import nan
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_md import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_learning_loop import (  # noqa: E402
    DAYS,
    DISMISSALS_TO_SILENCE,
    IGNORED_PRS_TO_SILENCE,
    LearningWorld,
    Loop,
    run_days,
    three_kinds,
)


def run() -> Loop:
    with tempfile.TemporaryDirectory() as tmp:
        world = LearningWorld(Path(tmp))
        world.llm.responder = three_kinds
        world.start_worker()
        try:
            return run_days(world)
        finally:
            world.close()


def misses(loop: Loop) -> list[str]:
    out = []
    if loop.dismissals_before_silence is None or loop.dismissals_before_silence > DISMISSALS_TO_SILENCE:
        out.append(f"the dismissed kind was not silenced within {DISMISSALS_TO_SILENCE} dismissals")
    if loop.ignored_prs_before_silence is None or loop.ignored_prs_before_silence >= IGNORED_PRS_TO_SILENCE:
        out.append(f"the ignored kind was not silenced within {IGNORED_PRS_TO_SILENCE} PRs")
    if "the org model of" not in loop.new_repo_check:
        out.append("the new repo of the org did not start from the org model")
    if not all("bug" in kinds for kinds in loop.posted.values()):
        out.append("the accepted kind stopped posting")
    if any(v.metrics.get("decision") != "activated" for v in loop.versions):
        out.append("a retrain was rejected")
    return out


def section(loop: Loop, failed: list[str]) -> str:
    silenced = (
        f"stopped after {loop.dismissals_before_silence} dismissals"
        if loop.dismissals_before_silence is not None
        else f"was still posted after {DAYS} dismissals"
    )
    ignored = (
        f"was posted on {loop.ignored_prs_before_silence} PRs"
        if loop.ignored_prs_before_silence is not None
        else f"was still posted on all {DAYS} PRs"
    )
    lines = [
        "## Learning loop",
        "",
        "`python bench/learning_loop.py`: the scenario of `tests/test_learning_loop.py` through the App",
        "path (`serve_cmd.build_handlers` wiring, FakeGitHub and FakeLLM over HTTP, signed reply",
        f"webhooks, each PR merged), {DAYS} PRs, each a new file with one finding of each of three kinds",
        "(accepted by reply, dismissed by reply, never answered: `untouched` at merge);",
        "`min_acceptance: 0.1`.",
        "Anchors: Greptile suppresses after about 3 ignores; Kodus needs 50 labels before it learns.",
        "Learned suppression (`reviewbot/filter/suppression.py`): a kind (rule id; category + title tokens)",
        "with 3 explicit dismissals, or turned down on 4 PRs, since its last acceptance is held back.",
        "A candidate is fitted on the labels the active model saw and judged on the newer ones, so",
        "with an unchanged prior and method its log loss equals the active model's and it ships.",
        "",
        "| PR | posted | accepted kind score | dismissed kind score | ignored kind score | model in force |",
        "|---|---|---|---|---|---|",
    ]
    for day in sorted(loop.posted):
        scores = loop.scores.get(day, {})
        active = loop.active_version.get(day)
        lines.append(
            f"| {day} | {', '.join(sorted(loop.posted[day])) or '-'} | {scores.get('bug', float('nan')):.3f} "
            f"| {scores.get('noise', float('nan')):.3f} | {scores.get('ignored', float('nan')):.3f} "
            f"| {'v' + str(active) if active else 'prior'} |"
        )
    lines += [
        "",
        "| version | split | held out | log loss (candidate / previous) | decision |",
        "|---|---|---|---|---|",
    ]
    for v in loop.versions:
        m = v.metrics
        lines.append(
            f"| v{v.version} | {m.get('split')} | {m.get('holdout_n')} | "
            f"{m.get('holdout_log_loss')} / {m.get('previous_log_loss')} | {m.get('decision')} |"
        )
    first, new = loop.scores.get(1, {}), loop.new_repo_scores
    lines += [
        "",
        "A new repo of the same org, its first PR (the code of PR 1), scored by the org model:",
        "",
        "| repo | model | accepted kind | dismissed kind | ignored kind |",
        "|---|---|---|---|---|",
        f"| first repo, PR 1 | prior | {first.get('bug', nan):.3f} | {first.get('noise', nan):.3f} "
        f"| {first.get('ignored', nan):.3f} |",
        f"| new repo, PR 1 | org model | {new.get('bug', nan):.3f} | {new.get('noise', nan):.3f} "
        f"| {new.get('ignored', nan):.3f} |",
    ]
    verdict = "**PASS**" if not failed else "**FAIL**: " + "; ".join(failed)
    load = os.getloadavg()[0]
    lines += [
        "",
        f"Result: {verdict}. The dismissed kind {silenced} (target <= {DISMISSALS_TO_SILENCE}); "
        f"the ignored kind {ignored} (target < {IGNORED_PRS_TO_SILENCE}). "
        f"(last run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load:.1f}.)",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md")
    args = parser.parse_args()
    loop = run()
    failed = misses(loop)
    text = section(loop, failed)
    print(text)
    if not args.no_write:
        write_section("## Learning loop", text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
