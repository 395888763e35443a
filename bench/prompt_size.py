"""Prompt size before and after prompt v2, on the real PRs of ../shared/data/real-prs.

For every PR: the diff, the enclosing-function context of each hunk (from the after-files) and the
default rule packs' instructions are packed into LLM requests by `build_requests`, once with the
code of a baseline commit (prompt v1, exported with `git archive` into a temporary directory and
run in a subprocess) and once with this tree (prompt v2). We count requests and estimated prompt
tokens (reviewbot's own conservative estimate, the one the budget uses), and how many of those
tokens are context blocks (the enclosing function, sent once per request in v2).

    .venv/bin/python bench/prompt_size.py [--baseline 045d08e] [--data ../shared/data/real-prs] [--write]

`--write` rewrites the "## Prompt size" section of BENCHMARKS.md. Rows: v1 at its 12,000-token
budget; v2 at the same budget (the prompt alone); v2 as the pipeline sends it to a model of unknown
family (its 2,048-token output limit counts against the 12,000, leaving 9,952 for the prompt).
Target: v2 at the same budget sends no more prompt tokens in total than v1 (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.tree_imports import pin  # noqa: E402
from reviewbot.adapters.llm_caps import DEFAULT_OUTPUT_TOKENS  # noqa: E402

HEADING = "## Prompt size"

#: Run in a subprocess with the tree to measure first on sys.path; prints JSON figures.
MEASURE = r"""
import json, re, sys
from pathlib import Path
from reviewbot.review import context as ctx
from reviewbot.core.config import load_config
from reviewbot.review.diff import parse_diff
from reviewbot.review.prompt import build_requests, estimate_tokens
from reviewbot.review.rule_selection import ruleset_from_config  # noqa: E402

data, budget = Path(sys.argv[2]), int(sys.argv[3])
config = load_config(None)
rules = ruleset_from_config(config.rules)
CONTEXT = re.compile(r"<context-[0-9a-f]+[^>]*>.*?</context-[0-9a-f]+>", re.S)
out = {"prs": 0, "hunks": 0, "requests": 0, "tokens": 0, "context_tokens": 0, "per_pr": {}}
for pr in sorted(p for p in data.iterdir() if (p / "diff.patch").is_file()):
    files = [f for f in parse_diff((pr / "diff.patch").read_text(encoding="utf-8", errors="replace"))
             if f.hunks and not f.is_binary and f.status != "deleted"]
    contexts = {}
    for f in files:
        head = pr / "after" / f.path
        text = head.read_text(encoding="utf-8", errors="replace") if head.is_file() else None
        tree = ctx.parse_source(f.language, text.encode("utf-8")) if text and f.language else None
        contexts[f.path] = ctx.hunk_contexts(f, text, tree=tree)
    lang = {f.path: f.language for f in files}
    reqs = build_requests(files, contexts, max_tokens_per_request=budget,
                          instructions_for=lambda p: [*rules.instructions_for(p, lang.get(p)),
                                                      *config.instructions_for(p)])
    tokens = sum(r.estimated_tokens for r in reqs)
    context = sum(estimate_tokens(m) for r in reqs for m in CONTEXT.findall(r.messages[-1]["content"]))
    out["prs"] += 1
    out["hunks"] += sum(len(f.hunks) for f in files)
    out["requests"] += len(reqs)
    out["tokens"] += tokens
    out["context_tokens"] += context
    out["per_pr"][pr.name] = tokens
check_pinned()
print(json.dumps(out))
"""


def measure(tree: Path, data: Path, budget: int) -> dict[str, Any]:
    proc = subprocess.run(
        # the tree's own code only: today's module names bound to where they were in an older tree
        [sys.executable, "-c", pin(tree) + MEASURE, str(tree), str(data), str(budget)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export(ref: str, into: Path) -> Path:
    """The tree of commit `ref`, exported (not checked out: the worktree stays as it is)."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default="045d08e", help="commit with prompt v1")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real-prs")
    parser.add_argument("--write", action="store_true", help="rewrite the section of BENCHMARKS.md")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent (the real PRs live in ../shared)")
        return 0
    with tempfile.TemporaryDirectory(prefix="reviewbot-v1-") as tmp:
        v1 = measure(export(args.baseline, Path(tmp)), args.data, 12000)
    v2_same = measure(ROOT, args.data, 12000)
    v2_sent = measure(ROOT, args.data, 12000 - DEFAULT_OUTPUT_TOKENS)
    rows = [
        (f"v1 ({args.baseline}), budget 12,000", v1),
        ("v2, budget 12,000", v2_same),
        (f"v2 as sent ({12000 - DEFAULT_OUTPUT_TOKENS:,} prompt + {DEFAULT_OUTPUT_TOKENS:,} out)", v2_sent),
    ]
    change = v2_same["tokens"] / v1["tokens"] - 1
    ok = v2_same["tokens"] <= v1["tokens"]
    table = [
        "| prompt | PRs | hunks | requests | prompt tokens (est.) | of which context blocks | per hunk |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in rows:
        share = f["context_tokens"] / f["tokens"]
        table.append(
            f"| {name} | {f['prs']} | {f['hunks']} | {f['requests']} | {f['tokens']:,} | "
            f"{f['context_tokens']:,} ({share:.0%}) | {f['tokens'] / f['hunks']:.0f} |"
        )
    ratio = {n: v2_same["per_pr"][n] / v1["per_pr"][n] for n in v2_same["per_pr"]}
    grew = sorted(ratio, key=ratio.__getitem__)
    section = "\n".join(
        [
            HEADING,
            "",
            "`.venv/bin/python bench/prompt_size.py --write`: every hunk of the 62 real PRs in",
            "`../shared/data/real-prs`, with its enclosing-function context and the default rule packs'",
            "instructions, packed into LLM requests by prompt v1 (the baseline commit, exported and run",
            "in a subprocess) and by prompt v2 (this tree). Tokens are reviewbot's own conservative",
            "estimate, the one its budgets use. v2 adds the do-not list, the severity and confidence",
            "rubric and the findings cap to the system prompt (sent once per request) and sends each",
            "enclosing function once per request instead of once per hunk. Target: v2 at the same",
            "budget sends no more prompt tokens in total than v1.",
            "",
            *table,
            "",
            f"Result: **{'PASS' if ok else 'MISSED'}** (v2 vs v1 at the same budget: {change:+.1%} prompt",
            f"tokens). Per PR, v2/v1 ranges from {ratio[grew[0]]:.2f} ({grew[0]}) to {ratio[grew[-1]]:.2f}",
            f"({grew[-1]}): small PRs pay the longer system prompt, PRs with many hunks per function save",
            "the repeated context. Context blocks are still about half of every prompt: the enclosing",
            "function repeats the hunk's own lines, the next thing to cut.",
        ]
    )
    print(section)
    if args.write:
        sys.path.insert(0, str(ROOT / "bench"))
        from benchmarks_md import write_section

        write_section(HEADING, section + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
