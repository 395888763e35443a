"""Behaviour guard for review-core performance work: digests of every stage's output per real PR.

For each PR in ../shared/data/real-prs: parse_diff, what FileDiff.accepts / accepts_range answer,
hunk_contexts, the rule candidates, the LLM requests (default and a small token budget, which
splits hunks), the candidates that reach the noise filter, and the final decisions with the same
in-process replay LLM as bench/pipeline.py. Each is hashed (sha256 of canonical JSON), so a
speed-up can be checked to change nothing:

    .venv/bin/python bench/pipeline_snapshot.py --write bench/reports/pipeline_snapshot.json  # before
    .venv/bin/python bench/pipeline_snapshot.py --check bench/reports/pipeline_snapshot.json  # after

`--check` lists every (PR, stage) that differs and exits 1. The `decisions` stage also moves when
the noise filter (severity, dedup, acceptance) is retuned on purpose: then only that stage differs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pipeline import ReplayLLM  # noqa: E402

import reviewbot.review.pipeline as review_pipeline  # noqa: E402
from reviewbot.core.config import load_config  # noqa: E402
from reviewbot.filter.acceptance import load_prior  # noqa: E402
from reviewbot.review import context as ctx  # noqa: E402
from reviewbot.review.diff import parse_diff  # noqa: E402
from reviewbot.review.prompt import build_requests  # noqa: E402
from reviewbot.review.rule_selection import ruleset_from_config  # noqa: E402


def _public(value: Any) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(value) if not f.name.startswith("_")]
    return {name: plain(getattr(value, name)) for name in names}


def plain(value: Any) -> Any:
    """Dataclasses and NamedTuples -> dicts of their public fields (caches such as Hunk._accepted
    are not data), so a record changing from one kind to the other keeps its digest."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _public(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {name: plain(getattr(value, name)) for name in value._fields}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(plain(value), sort_keys=True, default=str).encode()).hexdigest()[:16]


async def _one_pr(pr: Path, config: Any, rules: Any, model: Any, reached_filter: list[Any]) -> dict[str, str]:
    text = (pr / "diff.patch").read_text(encoding="utf-8", errors="replace")

    def read(path: str) -> str | None:
        target = pr / "after" / path
        return target.read_text(encoding="utf-8", errors="replace") if target.is_file() else None

    files = parse_diff(text)
    selected, _skipped = review_pipeline.select_files(files, config)
    contexts, candidates = {}, []
    for file in selected:
        source = read(file.path)
        contexts[file.path] = ctx.hunk_contexts(file, source)
        if source is not None:
            candidates += rules.run(file, source)
    by_path = {f.path: f for f in selected}

    def instructions(path: str) -> list[str]:
        file = by_path.get(path)
        language = file.language if file else None
        return [*rules.instructions_for(path, language), *config.instructions_for(path)]

    def requests(budget: int) -> list[Any]:
        if not selected:
            return []
        return build_requests(
            selected, contexts, instructions_for=instructions, max_tokens_per_request=budget
        )

    accepts = {
        f.path: [
            (n, side, f.accepts(n, side), f.accepts_range(n, n + 2, side))
            for side in ("RIGHT", "LEFT")
            for n in range(max([h.new_start + h.new_len for h in f.hunks] + [1]) + 3)
        ]
        for f in files
    }
    reached_filter.clear()
    result = await review_pipeline.review_change(
        review_pipeline.Change(diff_text=text, read_head=read, repo=f"bench/{pr.name}", pr=1),
        config=config,
        rules=rules,
        model=model,
        llm=ReplayLLM(),
    )
    result.timings = {}
    return {
        "diff": digest(files),
        "accepts": digest(accepts),
        "contexts": digest(contexts),
        "rules": digest(candidates),
        "requests": digest(requests(config.llm.max_tokens_per_request)),
        "requests_small_budget": digest(requests(3000)),
        "filter_input": digest(reached_filter[-1] if reached_filter else None),
        "decisions": digest(result),
    }


async def snapshot(data: Path) -> dict[str, dict[str, str]]:
    config = load_config(None)
    rules = ruleset_from_config(config.rules)
    model = load_prior()
    reached_filter: list[Any] = []
    original = review_pipeline.filter_review

    def spy(candidates: list[Any], **kwargs: Any) -> Any:
        reached_filter.append(plain(candidates))
        return original(candidates, **kwargs)

    review_pipeline.filter_review = spy  # type: ignore[assignment]
    try:
        entries = sorted(p for p in data.iterdir() if (p / "diff.patch").is_file())
        return {pr.name: await _one_pr(pr, config, rules, model, reached_filter) for pr in entries}
    finally:
        review_pipeline.filter_review = original  # type: ignore[assignment]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real-prs")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="write the digests here")
    group.add_argument("--check", type=Path, help="compare with the digests written here")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent (the real PRs live in ../shared)")
        return 0
    current = asyncio.run(snapshot(args.data))
    if args.write:
        args.write.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
        print(f"wrote digests of {len(current)} PRs to {args.write}")
        return 0
    expected = json.loads(args.check.read_text())
    differences = [
        (pr, stage)
        for pr in sorted(set(expected) | set(current))
        for stage in sorted(set(expected.get(pr, {})) | set(current.get(pr, {})))
        if expected.get(pr, {}).get(stage) != current.get(pr, {}).get(stage)
    ]
    for pr, stage in differences:
        print(f"DIFFERS {pr}: {stage}")
    print(f"{len(current)} PRs, {len(differences)} differing (PR, stage) pairs")
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
