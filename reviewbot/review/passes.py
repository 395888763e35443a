"""Diverse LLM review passes: each pass sees the change differently, so agreement means something.

Byte-identical requests at temperature 0 return the same findings, and "raised by 3 of 3 passes"
then carries no information. Here each pass after the first gets the files, and the hunks within
each file, in its own shuffled order (seeded by the pass number: reproducible), which also packs
different hunks together into requests, plus a temperature above 0, and optionally its own model
or focus (`llm.passes` entries). Pure: plans and reordered copies, no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from reviewbot.core.config_schema import DIVERSE_TEMPERATURE, LLMPass
from reviewbot.core.domain import Candidate, FileDiff, HunkContext


@dataclass(frozen=True, slots=True)
class PassPlan:
    """How one pass differs: its order seed (None: diff order), temperature, model and focus."""

    number: int
    seed: int | None
    temperature: float | None
    model: str | None = None
    focus: str | None = None

    def system_extra(self) -> str:
        return f"Focus of this review pass: {' '.join(self.focus.split())}" if self.focus else ""


def plan_passes(specs: list[LLMPass], base_temperature: float | None) -> list[PassPlan]:
    """One plan per `llm.passes` entry. A single pass is the plain review (diff order, the repo's
    temperature); in a multi-pass review every pass after the first is shuffled and warm."""
    plans: list[PassPlan] = []
    for number, spec in enumerate(specs, start=1):
        first = number == 1
        if spec.temperature is not None:
            temperature: float | None = spec.temperature
        elif first:
            temperature = None  # the client's (llm.temperature)
        else:
            temperature = max(DIVERSE_TEMPERATURE, base_temperature or 0.0)
        plans.append(PassPlan(number, None if first else number, temperature, spec.model, spec.focus))
    return plans


def shuffled(
    files: list[FileDiff], contexts: dict[str, list[HunkContext]], seed: int | None
) -> tuple[list[FileDiff], dict[str, list[HunkContext]]]:
    """Copies of `files` (and their hunk contexts, re-indexed) in the order of `seed`.

    The copies only feed the prompt; findings are anchored on the original files, by path, line
    and quoted code, so a hunk's position in the prompt never changes where a comment lands.
    """
    if seed is None:
        return files, contexts
    rng = random.Random(seed)
    order = list(files)
    rng.shuffle(order)
    out_files: list[FileDiff] = []
    out_ctx: dict[str, list[HunkContext]] = {}
    for file in order:
        positions = list(range(len(file.hunks)))
        rng.shuffle(positions)
        out_files.append(replace(file, hunks=[file.hunks[i] for i in positions]))
        by_index = {c.hunk_index: c for c in contexts.get(file.path, [])}
        out_ctx[file.path] = [
            replace(by_index[old], hunk_index=new) for new, old in enumerate(positions) if old in by_index
        ]
    return out_files, out_ctx


def tag(candidates: list[Candidate], plan: PassPlan, passes: int) -> list[Candidate]:
    """Mark each candidate with its pass, so dedup's support counts distinct passes."""
    if passes <= 1:
        return candidates
    for cand in candidates:
        cand.source = f"{cand.source}:pass{plan.number}"
        cand.id = f"{cand.id}#pass{plan.number}"
    return candidates
