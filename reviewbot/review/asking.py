"""Asking the LLM for a whole review: every request answered, split, salvaged, or accounted for.

Runs the requests concurrently through the LLM port (the port bounds concurrency). A request the
server refuses as longer than the model's window is split to the window and the pieces asked. A
reply cut at the output limit is asked again in halves when it holds fewer findings than the
prompt allows (the limit was too small for the request, e.g. a reasoning model spent it thinking);
otherwise the findings written out completely before the cut are kept. A
request past the operator's token cap is not sent. What comes back is replies, not findings:
`reviewbot.review.replies` turns them into candidates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reviewbot.core.costs import TokenCap, reserve_request
from reviewbot.core.domain import LLMUsage
from reviewbot.review.llm_port import ContextOverflow, LLMError, LLMReply, failure_scope
from reviewbot.review.prompt import PromptBudgetError, PromptRequest, split_request
from reviewbot.review.replies import repair_truncated

log = logging.getLogger("reviewbot.adapters.llm")

#: How many times one request may be halved (2**4 = 16 pieces) before it counts as failed.
MAX_SPLIT_DEPTH = 4


class LLMPort(Protocol):
    """What asking needs from an LLM client (reviewbot.adapters.llm.LLMClient satisfies it)."""

    model: str

    async def complete(self, request: PromptRequest, *, label: str = "request") -> LLMReply: ...

    def prompt_budget(self, configured: int) -> int: ...

    def learned(self) -> list[str]: ...


@dataclass(slots=True)
class Answered:
    """One request and the reply to it; `key` numbers it ("3", or "3.2" for a piece of a split)."""

    request: PromptRequest
    reply: LLMReply
    key: str
    label: str


@dataclass(slots=True)
class AskOutcome:
    """Replies, failures and what it cost, for one pass over the requests."""

    answered: list[Answered] = field(default_factory=list)
    usage: LLMUsage = field(default_factory=LLMUsage)
    problems: list[str] = field(default_factory=list)  # failed requests, one line each
    notes: list[str] = field(default_factory=list)  # splits and salvages, for the report


@dataclass(frozen=True, slots=True)
class _Asking:
    """What every request of one `ask_all` shares, passed down the splits as one value."""

    llm: LLMPort
    out: AskOutcome
    configured_budget: int
    cap: TokenCap | None


def _label(key: str, request: PromptRequest) -> str:
    """ "request 4 (a.py, b.py)" for key "3" (keys count from 0, labels from 1); pieces "4.1"."""
    first, _, rest = key.partition(".")
    number = f"{int(first) + 1}{'.' + rest if rest else ''}"
    shown = ", ".join(request.paths[:3]) + (
        f" +{len(request.paths) - 3} more" if len(request.paths) > 3 else ""
    )
    return f"request {number} ({shown})"


async def ask_all(
    llm: LLMPort,
    requests: Sequence[PromptRequest],
    *,
    configured_budget: int = 12000,
    cap: TokenCap | None = None,
) -> AskOutcome:
    """Ask every request; never raises for a failed request (it is counted and described)."""
    out = AskOutcome()
    out.usage.model = llm.model
    run = _Asking(llm, out, configured_budget, cap)
    with failure_scope():  # an exhausted quota or a refused key fails the rest of this pass at once
        await asyncio.gather(*(_ask(run, req, str(i), 0) for i, req in enumerate(requests)))
    out.answered.sort(key=lambda a: [int(p) for p in a.key.split(".")])
    out.problems = list(dict.fromkeys(out.problems))  # a fatal error is said once, not per request
    log.info(
        "LLM: %d request(s), %d answered, %d error(s), tokens %d+%d",
        out.usage.requests,
        len(out.answered),
        out.usage.errors,
        out.usage.prompt_tokens,
        out.usage.completion_tokens,
    )
    return out


async def _ask(run: _Asking, request: PromptRequest, key: str, depth: int) -> None:
    llm, out, cap = run.llm, run.out, run.cap
    label = _label(key, request)
    spend = reserve_request(cap, out.usage, request.estimated_tokens)
    if spend is None:
        return
    try:
        reply = await llm.complete(request, label=label)
    except ContextOverflow as exc:
        spend.failed()
        out.usage.requests -= 1  # the pieces count instead
        budget = llm.prompt_budget(run.configured_budget) if exc.window is not None else None
        await _split(run, request, key, depth, budget, str(exc))
        return
    except LLMError as exc:
        spend.failed()
        out.usage.errors += 1
        out.problems.append(str(exc))  # a fatal error's line is the same for every request
        if not exc.fatal:
            log.error("LLM %s", exc)
        return
    spend.answered(reply.prompt_tokens, reply.completion_tokens)
    if reply.truncated:
        repaired = repair_truncated(reply.text)
        kept = repaired[1] if repaired is not None else 0
        # Fewer findings than the prompt allows: the output limit is too small for this request,
        # so smaller requests find the rest. As many or more: the model ignored the cap (or is
        # flooding on purpose): keep what it wrote, ask nothing more.
        if kept < request.options.max_findings and depth < MAX_SPLIT_DEPTH:
            try:
                pieces = split_request(request)
            except PromptBudgetError:
                pieces = []
            if pieces:
                out.notes.append(
                    f"{label}: reply cut at the output limit; asked again in {len(pieces)} parts"
                )
                await _gather_pieces(run, pieces, key, depth)
                return
        if repaired is not None:
            reply.text = repaired[0]
            out.notes.append(f"{label}: reply cut at the output limit; {kept} complete finding(s) kept")
    out.answered.append(Answered(request, reply, key, label))


async def _split(
    run: _Asking, request: PromptRequest, key: str, depth: int, budget: int | None, why: str
) -> None:
    out = run.out
    label = _label(key, request)
    if depth >= MAX_SPLIT_DEPTH:
        out.usage.requests += 1
        out.usage.errors += 1
        out.problems.append(f"{why} (still too long after {depth} splits)")
        return
    try:
        pieces = split_request(
            request, budget if budget is not None and budget < request.estimated_tokens else None
        )
    except PromptBudgetError as exc:
        out.usage.requests += 1
        out.usage.errors += 1
        out.problems.append(f"{why}; cannot split it: {exc}")
        return
    out.notes.append(f"{label}: over the model's context window; split into {len(pieces)} requests")
    await _gather_pieces(run, pieces, key, depth)


async def _gather_pieces(run: _Asking, pieces: list[PromptRequest], key: str, depth: int) -> None:
    await asyncio.gather(*(_ask(run, p, f"{key}.{n}", depth + 1) for n, p in enumerate(pieces, 1)))
