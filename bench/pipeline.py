"""CPU cost of the review pipeline against tree-sitter parsing alone, side by side in one run.

For every PR in ../shared/data/real-prs, the whole `review_change` (diff parse, context, rules,
prompt building, reply parsing, anchoring, the verification step's selection, excerpts and reply
parsing, the noise filter), in two ways:

- `replay` (the target): the LLM port answers in-process with the reply a model would send; only
  producing that reply is left out of the count, so this is everything but waiting for the LLM.
- `http`: the real openai client against a fake OpenAI-compatible server in ANOTHER process (its
  CPU and the wait for it are not counted), i.e. replay plus the HTTP client's own cost.

We count this thread's CPU time (time.thread_time). The baseline is the CPU time tree-sitter
alone takes to parse the same after-files, measured in the same run.

    .venv/bin/python bench/pipeline.py [--data ../shared/data/real-prs] [--repeat 3] [--json out.json]

Targets (issue 3): ratio <= 2.0 overall; the largest PR under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reviewbot.adapters.llm import LLMClient  # noqa: E402
from reviewbot.adapters.llm_caps import DEFAULT_OUTPUT_TOKENS  # noqa: E402
from reviewbot.core import languages  # noqa: E402
from reviewbot.core.config import load_config  # noqa: E402
from reviewbot.filter.acceptance import load_prior  # noqa: E402
from reviewbot.review.diff import parse_diff  # noqa: E402
from reviewbot.review.llm_port import LLMReply  # noqa: E402
from reviewbot.review.pipeline import Change, review_change  # noqa: E402
from reviewbot.review.prompt import PromptRequest  # noqa: E402
from reviewbot.review.rule_selection import ruleset_from_config  # noqa: E402

SERVER = """
import sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
from tests.fakes.fake_llm import FakeLLM
from pipeline import responder

llm = FakeLLM(responder=responder).start()
print(llm.base_url, flush=True)
sys.stdin.read()
"""


def responder(request_json: dict[str, Any]) -> dict[str, Any]:
    """What the model 'answers': up to three findings per file, spread over its added lines."""
    from tests.fakes.fake_llm import diff_lines

    findings = []
    for path, lines in diff_lines(request_json).items():
        right = [(n, code) for side, n, code in lines if side == "RIGHT" and code.strip()]
        for n, code in right[:: max(1, len(right) // 3)][:3]:
            findings.append(
                {
                    "path": path,
                    "line": n,
                    "end_line": None,
                    "side": "RIGHT",
                    "severity": "medium",
                    "category": "bug",
                    "confidence": 0.7,
                    "title": "Possible None dereference",
                    "body": "This can raise when the value is None.",
                    "suggestion": None,
                    "quoted_code": code,
                }
            )
    return {"findings": findings}


class ReplayLLM:
    """An in-process LLM port: the model's reply is produced off the clock, the rest is ours (the
    pipeline parses and anchors every reply itself, as it does with a real client)."""

    model = "replay"

    def __init__(self) -> None:
        self.excluded = 0.0

    async def complete(self, request: PromptRequest, *, label: str = "request") -> LLMReply:
        """A review request gets `responder`'s findings; a verification request the fake server's
        verdicts (every finding "unsure")."""
        from tests.fakes.fake_llm import is_verification, verdicts

        started = time.thread_time()
        body = {"messages": request.messages}
        reply = verdicts(body) if is_verification(body) else json.dumps(responder(body))
        self.excluded += time.thread_time() - started
        return LLMReply(reply, request.estimated_tokens, len(reply) // 4, self.model)

    def prompt_budget(self, configured: int) -> int:
        # What LLMClient gives a model of unknown family: its output limit counts against the budget.
        return configured - min(DEFAULT_OUTPUT_TOKENS, configured // 2)

    def learned(self) -> list[str]:
        return []


def parse_cpu(entries: list[Path]) -> float:
    """CPU seconds tree-sitter alone takes to parse every after-file we have a grammar for."""
    total = 0.0
    for pr in entries:
        for path in sorted((pr / "after").rglob("*")):
            if not path.is_file():
                continue
            lang = languages.language_for_path(str(path))
            parser = languages.parser(lang) if lang else None
            if parser is None:
                continue
            data = path.read_bytes()
            started = time.thread_time()
            parser.parse(data)
            total += time.thread_time() - started
    return total


async def pipeline_cpu(entries: list[Path], base_url: str | None) -> dict[str, float]:
    """CPU seconds per PR; base_url None: the replay port, else the openai client over HTTP."""
    config = load_config(None)
    rules = ruleset_from_config(config.rules)
    model = load_prior()
    per_pr: dict[str, float] = {}
    replay = ReplayLLM()
    client = (
        LLMClient(base_url=base_url, api_key="bench", model="fake", max_concurrency=4) if base_url else None
    )
    llm: Any = client or replay
    try:
        for pr in entries:
            diff_text = (pr / "diff.patch").read_text(encoding="utf-8", errors="replace")

            def read_head(path: str, _root: Path = pr / "after") -> str | None:
                target = _root / path
                return target.read_text(encoding="utf-8", errors="replace") if target.is_file() else None

            started, excluded = time.thread_time(), replay.excluded
            await review_change(
                Change(diff_text=diff_text, read_head=read_head, repo=f"bench/{pr.name}", pr=1),
                config=config,
                rules=rules,
                model=model,
                llm=llm,
            )
            per_pr[pr.name] = time.thread_time() - started - (replay.excluded - excluded)
    finally:
        if client is not None:
            await client.aclose()
    return per_pr


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real-prs")
    parser.add_argument("--repeat", type=int, default=3, help="take the best of N runs of each side")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent (the real PRs live in ../shared)")
        return 0
    entries = sorted(p for p in args.data.iterdir() if (p / "diff.patch").is_file())
    sizes = {p.name: sum(len(f.hunks) for f in parse_diff((p / "diff.patch").read_text())) for p in entries}

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(root=str(ROOT), bench=str(ROOT / "bench"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    load_before = os.getloadavg()[0]
    try:
        base_url = server.stdout.readline().strip()
        # Warm-up: compile rule queries, load grammars and the prior once (a server does so at start).
        asyncio.run(pipeline_cpu(entries, None))
        asyncio.run(pipeline_cpu(entries[:2], base_url))
        parse_runs, replay_runs, http_runs = [], [], []
        for _ in range(args.repeat):  # interleaved, so drifting machine load hits every side alike
            parse_runs.append(parse_cpu(entries))
            replay_runs.append(asyncio.run(pipeline_cpu(entries, None)))
            http_runs.append(asyncio.run(pipeline_cpu(entries, base_url)))
    finally:
        server.kill()
    parse_best = min(parse_runs)
    # Best whole run against best whole run (a sum of per-PR bests would pick each PR's luckiest
    # repeat and flatter the pipeline); per-PR bests only name the largest and slowest PR.
    best = {name: min(run[name] for run in replay_runs) for name in replay_runs[0]}
    http_total = min(sum(run.values()) for run in http_runs)
    totals = [sum(run.values()) for run in replay_runs]
    total = min(totals)
    # each repeat's own ratio (its pipeline run against the parse run just before it): the spread
    # says how far one figure can be trusted on this machine
    spread = [t / p for t, p in zip(totals, parse_runs, strict=True) if p]
    largest = max(
        entries,
        key=lambda p: (
            json.loads((p / "meta.json").read_text())["added"]
            + json.loads((p / "meta.json").read_text())["deleted"]
        ),
    )
    slowest = max(best, key=best.__getitem__)
    figures = {
        "prs": len(entries),
        "hunks": sum(sizes.values()),
        "pipeline_cpu_s": round(total, 3),
        "tree_sitter_parse_cpu_s": round(parse_best, 3),
        "ratio": round(total / parse_best, 2) if parse_best else None,
        "ratio_per_repeat": [round(r, 2) for r in spread],
        "with_openai_client_cpu_s": round(http_total, 3),
        "with_openai_client_ratio": round(http_total / parse_best, 2) if parse_best else None,
        "largest_pr": largest.name,
        "largest_pr_cpu_s": round(best[largest.name], 3),
        "slowest_pr": slowest,
        "slowest_pr_cpu_s": round(best[slowest], 3),
        # other processes on the machine slow the Python side and the C parser differently
        "load_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    ok = figures["ratio"] is not None and figures["ratio"] <= 2.0 and figures["slowest_pr_cpu_s"] < 1.0
    print("targets (ratio <= 2.0, largest PR < 1 s):", "met" if ok else "MISSED")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if args.write:
        from benchmarks_md import write_section

        write_section("## Review pipeline CPU", _section(figures, ok, args.repeat))
    return 0 if ok else 1


def _section(f: dict[str, Any], ok: bool, repeat: int) -> str:
    """BENCHMARKS.md's section, from this run's figures only."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = [
        "PRs",
        "hunks",
        "pipeline CPU",
        "tree-sitter parse CPU",
        "ratio",
        "with openai client (ratio)",
        "largest PR",
        "slowest PR",
    ]
    row = [
        f["prs"],
        f["hunks"],
        f"{f['pipeline_cpu_s']} s",
        f"{f['tree_sitter_parse_cpu_s']} s",
        f"**{f['ratio']}**",
        f"{f['with_openai_client_cpu_s']} s ({f['with_openai_client_ratio']})",
        f"{f['largest_pr']} {f['largest_pr_cpu_s']} s",
        f"{f['slowest_pr']} {f['slowest_pr_cpu_s']} s",
    ]
    table = "\n".join("| " + " | ".join(str(c) for c in cells) + " |" for cells in (header, ["---"] * 8, row))
    return f"""## Review pipeline CPU

`.venv/bin/python bench/pipeline.py --repeat {repeat} --write`: over all of `../shared/data/real-prs`,
the CPU time (`time.thread_time`) of the whole `review_change` except waiting for the LLM, against
the CPU time tree-sitter alone takes to parse the same after-files, measured side by side in one
run (interleaved; the best whole run of {repeat} on each side, and each repeat's own ratio
beside it). The LLM port answers in-process (`replay`), so producing
the model's reply is left out; everything of ours is in (diff parse, head files, parse, context,
rules, prompt building, reply parsing, anchoring, verification requests, the noise filter,
redaction). `with openai client` adds the real `openai.AsyncOpenAI` client over HTTP to a fake
server in another process (for information). Targets: ratio <= 2.0; the largest PR under 1 s.

{table}

Ratio of each repeat (its pipeline run against the parse run just before it):
{", ".join(f"{r:.2f}" for r in f["ratio_per_repeat"])}.

Result: **{"PASS" if ok else "MISSED"}**. Last run {when}.
Machine: {f["cpus"]} CPUs, 1-minute load average {f["load_1min"][0]} at the start of the run and
{f["load_1min"][1]} at its end (other work on the machine moves the figures: compare ratios taken
side by side). The 2026-11-25 run measured 1.88 (in git history), before one-reviewer signals,
the verification step, RE2 rule predicates and per-pass planning were added.
"""


if __name__ == "__main__":
    raise SystemExit(main())
