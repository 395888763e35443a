"""The review pipeline: a change in, a ReviewResult out.

It sequences the pure stages (diff -> context -> rules -> prompt -> anchor -> noise filter) and
calls out only through the ports it is given (an LLM client, an acceptance model). The GitHub
App and `reviewbot review` both call `review_change`; neither has a pipeline of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from reviewbot.core.config_schema import DISABLED_REASON, RepoConfig
from reviewbot.core.costs import ReviewCaps, TokenCap
from reviewbot.core.domain import (
    Candidate,
    Decision,
    Dropped,
    FileDiff,
    HunkContext,
    LLMUsage,
    ReviewResult,
    severity_rank,
)
from reviewbot.filter.acceptance import AcceptanceModel
from reviewbot.filter.noise import FilterSettings, filter_review, held_back, silence_note, threshold_for
from reviewbot.filter.suppression import NOTHING, Learned
from reviewbot.review import context as ctx
from reviewbot.review.asking import AskOutcome, LLMPort, ask_all
from reviewbot.review.diff import hunk_index_for, parse_diff
from reviewbot.review.passes import plan_passes, shuffled, tag
from reviewbot.review.prompt import ChangeIntent, PromptOptions, PromptRequest, build_requests
from reviewbot.review.redact import redact_result
from reviewbot.review.render import to_review_comment
from reviewbot.review.replies import candidates_from_reply
from reviewbot.review.rule_selection import rule_switched_on
from reviewbot.review.rules import RuleSet
from reviewbot.review.sarif_in import anchor as anchor_imported
from reviewbot.review.verify import Gate, verify_review

NOT_IN_PR_DIFF = "not part of the pull request's diff"

#: A head file larger than this is reviewed from its hunks alone (no parse, context or rules).
MAX_FILE_BYTES = 1_000_000


@dataclass(slots=True)
class Change:
    """A change to review: its unified diff and a way to read a file as of the head revision."""

    diff_text: str
    read_head: Callable[[str], str | None]
    repo: str = "local/repo"
    pr: int | None = None
    files_not_reviewed: dict[str, str] = field(default_factory=dict)
    intent: ChangeIntent | None = None  # title, description, commit subjects (shown to the LLM)
    #: The whole pull request's diff when `diff_text` is only part of it (an incremental review):
    #: GitHub accepts comments only on lines of this one.
    pr_diff_text: str | None = None


@dataclass(slots=True)
class StageTimer:
    """Wall-clock seconds per stage, for metrics and the funnel (not used in any decision)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, started: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


#: The reason prefix of a file left out by the operator's per-review caps.
CAP_REASON = "over the operator's cap"


def select_files(
    files: list[FileDiff], config: RepoConfig, caps: ReviewCaps | None = None
) -> tuple[list[FileDiff], dict[str, str]]:
    """The files to review, and for every other file the reason it is not reviewed.

    `caps` (the operator's): past `max_files` files or `max_changed_lines` changed lines, the rest
    of the files are left out in diff order, each named with the cap that left it out. A file too
    large for what is left of the line budget is skipped and smaller ones after it still fit.
    """
    keep: list[FileDiff] = []
    skipped: dict[str, str] = {}
    caps = caps or ReviewCaps()
    lines = 0
    for file in files:
        if file.is_binary:
            skipped[file.path] = "binary file"
        elif file.status == "deleted":
            skipped[file.path] = "deleted file"
        elif not file.hunks and file.status == "added":
            skipped[file.path] = "new empty file"
        elif not file.hunks:
            skipped[file.path] = "no content change (rename or mode change)"
        elif not config.path_included(file.path):
            skipped[file.path] = "excluded by paths"
        elif not config.language_included(file.language):
            skipped[file.path] = f"language {file.language or 'unknown'} not enabled"
        elif caps.max_files is not None and len(keep) >= caps.max_files:
            skipped[file.path] = (
                f"{CAP_REASON} of {caps.max_files} files per review (REVIEWBOT_REVIEW_MAX_FILES)"
            )
        elif caps.max_changed_lines is not None and lines + changed_lines(file) > caps.max_changed_lines:
            skipped[file.path] = (
                f"{CAP_REASON} of {caps.max_changed_lines} changed lines per review "
                f"(REVIEWBOT_REVIEW_MAX_CHANGED_LINES; this file changes {changed_lines(file)})"
            )
        else:
            keep.append(file)
            if caps.max_changed_lines is not None:  # counting reads every line: only for the cap
                lines += changed_lines(file)
    return keep, skipped


def changed_lines(file: FileDiff) -> int:
    """Added plus deleted lines of a file's diff."""
    return sum(1 for hunk in file.hunks for ln in hunk.lines if ln.kind in ("added", "deleted"))


def cap_candidates(
    candidates: list[Candidate], max_candidates: int | None
) -> tuple[list[Candidate], list[Dropped]]:
    """At most `max_candidates`, the most severe first (ties in their order); the rest dropped."""
    if max_candidates is None or len(candidates) <= max_candidates:
        return candidates, []
    order = sorted(range(len(candidates)), key=lambda i: severity_rank(candidates[i].severity or "low"))
    kept = set(order[:max_candidates])
    reason = f"{CAP_REASON} of {max_candidates} candidates per review (REVIEWBOT_REVIEW_MAX_CANDIDATES)"
    return (
        [c for i, c in enumerate(candidates) if i in kept],
        [Dropped(c, "cap", reason) for i, c in enumerate(candidates) if i not in kept],
    )


def _cap_notes(skipped: dict[str, str], dropped: int, caps: ReviewCaps) -> list[str]:
    """One line per operator cap that left part of the change out, for the check run and report."""
    notes = []
    by_files = sum(1 for why in skipped.values() if "REVIEWBOT_REVIEW_MAX_FILES" in why)
    by_lines = sum(1 for why in skipped.values() if "REVIEWBOT_REVIEW_MAX_CHANGED_LINES" in why)
    if by_files:
        notes.append(
            f"Stopped by the operator's cap of {caps.max_files} files per review "
            f"(REVIEWBOT_REVIEW_MAX_FILES): {by_files} file(s) not reviewed, listed below."
        )
    if by_lines:
        notes.append(
            f"Stopped by the operator's cap of {caps.max_changed_lines} changed lines per review "
            f"(REVIEWBOT_REVIEW_MAX_CHANGED_LINES): {by_lines} file(s) not reviewed, listed below."
        )
    if dropped:
        notes.append(
            f"Stopped by the operator's cap of {caps.max_candidates} candidates per review "
            f"(REVIEWBOT_REVIEW_MAX_CANDIDATES): the {dropped} least severe candidate(s) were not "
            f"considered."
        )
    return notes


async def review_change(
    change: Change,
    *,
    config: RepoConfig,
    rules: RuleSet,
    model: AcceptanceModel,
    llm: LLMPort | None = None,
    dismissed_fingerprints: Iterable[str] = (),
    posted_fingerprints: Iterable[str] = (),
    progress: Callable[[str], None] | None = None,
    secrets: Iterable[str | bytes | None] = (),
    explore: bool = True,
    token_cap: TokenCap | None = None,
    imported: Sequence[Candidate] = (),
    caps: ReviewCaps | None = None,
    learned: Learned = NOTHING,
) -> ReviewResult:
    """Review one change end to end; never raises for bad LLM output (it is dropped and counted).

    `imported` are candidates from the repo's own linters (reviewbot.review.sarif_in): anchored to the
    lines the change adds, then filtered like every other candidate.

    `explore=False` turns off exploration (posting a few near-threshold candidates to learn from
    the answer): right for a local review, where no feedback comes back.

    `token_cap` (the operator's cost caps: tokens, LLM requests per review) stops sending LLM
    requests past its budget; the review keeps what it found before, and `result.usage.stopped_by`
    names the cap. `caps` (the operator's per-review caps on files, changed lines and candidates)
    leave the rest of a giant change out; what was left out is in `files_not_reviewed`, `dropped`
    and one note per cap.
    `learned` holds back the kinds of finding the repo's feedback suppressed (reviewbot.filter.suppression).

    Every text of the result is passed through `redact.redact_result`: the `secrets` values
    (webhook secret, keys, tokens) and credential-shaped strings never reach a comment or report.
    """
    result = ReviewResult(files_not_reviewed=dict(change.files_not_reviewed))
    if not config.enabled:
        result.notes.append(f"not reviewed: {DISABLED_REASON}")
        return result
    result.notes.extend(rules.warnings)
    timer = StageTimer()
    note = progress or (lambda _msg: None)

    started = time.perf_counter()
    all_files = parse_diff(change.diff_text)
    caps = caps or ReviewCaps()
    files, skipped = select_files(all_files, config, caps)
    result.files_not_reviewed.update(skipped)
    del all_files

    sources: dict[str, str | None] = {}
    for file in files:
        text = change.read_head(file.path)
        if text is not None and len(text) > MAX_FILE_BYTES:
            result.notes.append(f"{file.path}: larger than {MAX_FILE_BYTES} bytes, reviewed without context")
            text = None
        sources[file.path] = text
    timer.add("fetch", started)

    note(f"context for {len(files)} files")
    started = time.perf_counter()
    contexts: dict[str, list[HunkContext]] = {}
    trees: dict[str, Any] = {}
    parsed: dict[str, ctx.ParsedFile] = {}  # indexed once: the context stage and verification read it
    for file in files:
        source = sources[file.path]
        tree = None
        if source is not None and file.language is not None:
            tree = ctx.parse_source(file.language, source.encode("utf-8"))
        trees[file.path] = tree
        if source is not None:
            parsed[file.path] = ctx.parse_file(file.language, source, tree=tree, hunks=file.hunks)
        contexts[file.path] = ctx.hunk_contexts(file, source, tree=tree, parsed=parsed.get(file.path))
    timer.add("context", started)

    started = time.perf_counter()
    candidates: list[Candidate] = []
    for file in files:
        source = sources[file.path]
        if source is None:
            continue
        candidates.extend(rules.run(file, source, tree=trees[file.path]))
    result.notes.extend(rules.overrun.values())  # custom rules disabled for overrunning (named)
    timer.add("rules", started)

    by_path = {f.path: f for f in files}
    if imported:
        kept, off_diff = anchor_imported(
            imported,
            by_path,
            not_reviewed=result.files_not_reviewed,
            rule_enabled=lambda rule_id: rule_switched_on(
                rule_id, config.rules.enable, config.rules.disable, default=True
            ),
            severity_override=config.rules.severity,
        )
        candidates.extend(kept)
        result.dropped.extend(off_diff)
    if llm is not None and files:
        started = time.perf_counter()

        def instructions(path: str) -> list[str]:
            file = by_path.get(path)
            language = file.language if file else None
            return [*rules.instructions_for(path, language), *config.instructions_for(path)]

        options = PromptOptions(allow_nits=config.min_severity == "nit", intent=change.intent)
        plans = plan_passes(config.pass_specs(), config.llm.temperature)
        per_pass: list[list[PromptRequest]] = []
        for plan in plans:
            pass_files, pass_contexts = shuffled(files, contexts, plan.seed)
            requests = build_requests(
                pass_files,
                pass_contexts,
                instructions_for=instructions,
                max_tokens_per_request=llm.prompt_budget(config.llm.max_tokens_per_request),
                options=replace(options, system_extra=plan.system_extra()),
            )
            for request in requests:
                request.model, request.temperature = plan.model, plan.temperature
            per_pass.append(requests)
        timer.add("prompt", started)
        note(f"asking the LLM: {sum(map(len, per_pass))} request(s) in {len(plans)} pass(es)")
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(
                ask_all(llm, requests, configured_budget=config.llm.max_tokens_per_request, cap=token_cap)
                for requests in per_pass
            )
        )
        timer.add("llm", started)
        started = time.perf_counter()
        for plan, outcome in zip(plans, outcomes, strict=True):
            found, drops, problems = candidates_from_outcome(outcome, by_path, source="llm")
            candidates.extend(tag(found, plan, len(plans)))
            result.dropped.extend(drops)
            result.usage.add(outcome.usage)
            result.notes.extend(problems)
            result.notes.extend(outcome.notes)
        result.notes.extend(_llm_notes(llm))
        timer.add("anchor", started)
    elif llm is None:
        result.notes.append("no LLM configured: rules only")

    candidates, over_cap = cap_candidates(candidates, caps.max_candidates)
    result.dropped.extend(over_cap)
    result.notes.extend(_cap_notes(skipped, len(over_cap), caps))

    _annotate(candidates, by_path, contexts, change)
    dismissed_fingerprints, posted_fingerprints = list(dismissed_fingerprints), list(posted_fingerprints)

    if llm is not None and config.verify and candidates:
        note(f"verifying up to {len(candidates)} candidates")
        started = time.perf_counter()
        verified = await verify_review(
            candidates,
            llm,
            files=by_path,
            head_lines={path: index.lines for path, index in parsed.items()},
            enclosing=_enclosing_finder(by_path, parsed),
            gate=Gate(config.min_severity, dict(config.min_severity_by_path)),
            dismissed=dismissed_fingerprints,
            posted=posted_fingerprints,
            held_back=partial(held_back, learned),
            max_tokens=llm.prompt_budget(config.llm.max_tokens_per_request),
            # the review passes are done: the client's whole concurrency is free for the judge
            parallel=getattr(llm, "max_concurrency", 1),
            cap=token_cap,
        )
        result.usage.add(verified.usage)
        result.notes.extend(p for p in verified.problems if p not in result.notes)
        timer.add("verify", started)
    result.notes.extend(_stop_notes(result, token_cap))

    note(f"filtering {len(candidates)} candidates")
    started = time.perf_counter()
    filter_settings = _filter_settings(config, explore=explore)
    decisions = filter_review(
        candidates,
        model=model,
        settings=filter_settings,
        dismissed_fingerprints=dismissed_fingerprints,
        posted_fingerprints=posted_fingerprints,
        one_review=True,  # the App and `reviewbot review` share max_comments: one change, one budget
        learned=learned,
    )
    result.silence = silence_note(decisions, *threshold_for(model, filter_settings))
    timer.add("filter", started)

    result.funnel.candidates = len(candidates) + len(result.dropped)
    for drop in result.dropped:
        result.funnel.drop(f"{drop.stage}: {drop.reason}")
    for decision in decisions:
        if decision.decision == "post":
            result.posted.append(decision)
        else:
            result.suppressed.append(decision)
            result.funnel.drop(reason_kind(decision.reason))
    result.funnel.posted = len(result.posted)
    if change.pr_diff_text is not None:
        restrict_to_diff(result, {f.path: f for f in parse_diff(change.pr_diff_text)})
    result.timings = timer.seconds
    return redact_result(result, secrets)


def candidates_from_outcome(
    outcome: AskOutcome, files: dict[str, FileDiff], *, source: str = "llm"
) -> tuple[list[Candidate], list[Dropped], list[str]]:
    """Every reply of one pass turned into candidates (ids f"{source}:{request key}:{n}"), the
    drops, and the problems: failed requests first, then each reply's parse problems."""
    found: list[Candidate] = []
    drops: list[Dropped] = []
    problems = list(outcome.problems)
    for answered in outcome.answered:
        kept, dropped, parse_problems = candidates_from_reply(
            answered.reply.text,
            answered.request,
            files,
            source=source,
            prefix=f"{source}:{answered.key}",
            label=answered.label,
        )
        found += kept
        drops += dropped
        problems += parse_problems
    return found, drops, problems


async def review_requests(
    llm: LLMPort, requests: list[PromptRequest], files: dict[str, FileDiff], *, source: str = "llm"
) -> tuple[list[Candidate], list[Dropped], LLMUsage, list[str]]:
    """One pass over prepared requests: (candidates, drops, usage, problems). For tools and tests
    that build their own requests; `review_change` does the same inside the whole pipeline."""
    outcome = await ask_all(llm, requests)
    found, dropped, problems = candidates_from_outcome(outcome, files, source=source)
    return found, dropped, outcome.usage, problems


def _llm_notes(llm: LLMPort) -> list[str]:
    """What the report says about the LLM: what the server taught us."""
    learned = llm.learned()
    return [f"LLM model {llm.model}: learned from the server: {'; '.join(learned)}."] if learned else []


def _stop_notes(result: ReviewResult, cap: TokenCap | None) -> list[str]:
    """The operator's cap that stopped LLM requests (review passes or verification), and how many."""
    if not result.usage.stopped_by or cap is None:
        return []
    return [
        f"Stopped by the operator's cap on {result.usage.stopped_by}: {cap.stopped} LLM request(s) "
        f"not sent; this review shows what was found before the cap."
    ]


def _filter_settings(config: RepoConfig, *, explore: bool) -> FilterSettings:
    settings = FilterSettings.from_config(config)
    return settings if explore else replace(settings, exploration_rate=0.0)


def move_to_suppressed(result: ReviewResult, decision: Decision, reason: str) -> None:
    """Take a posted decision back (GitHub would refuse it, or did), keeping it for the record."""
    result.posted.remove(decision)
    decision.decision = "suppress"
    decision.reason = reason
    decision.explore = False
    result.suppressed.append(decision)
    result.funnel.posted = len(result.posted)
    result.funnel.drop(reason_kind(reason))


def anchored_in(decision: Decision, files: dict[str, FileDiff]) -> bool:
    """Whether GitHub accepts the decision's comment against these files."""
    c = decision.candidate
    file = files.get(c.path or "")
    if file is None or c.line is None:
        return False
    comment = to_review_comment(decision)
    if comment.start_line is not None:
        return file.accepts_range(comment.start_line, comment.line, comment.side)
    return file.accepts(comment.line, comment.side)


def restrict_to_diff(result: ReviewResult, pr_files: dict[str, FileDiff]) -> list[Decision]:
    """Hold back findings GitHub would refuse on the PR diff (incremental reviews: a line changed
    since the last review but back to the base text is in the compare diff, not the PR diff)."""
    moved = [d for d in result.posted if not anchored_in(d, pr_files)]
    for d in moved:
        move_to_suppressed(result, d, NOT_IN_PR_DIFF)
    return moved


def reason_kind(reason: str) -> str:
    """Group reasons that carry ids or numbers ('duplicate of llm:3') under one funnel key."""
    for prefix in (
        "duplicate",
        "below acceptance",
        "over budget",
        "below min_severity",
        "refuted by verification",
    ):
        if reason.startswith(prefix):
            return prefix
    return reason


def _enclosing_finder(
    files: dict[str, FileDiff], parsed: dict[str, ctx.ParsedFile]
) -> Callable[[Candidate], tuple[str, int, int] | None]:
    """(name, first line, last line) of the symbol around a candidate's lines, for verification,
    from the index the context stage built."""

    def find(cand: Candidate) -> tuple[str, int, int] | None:
        index = parsed.get(cand.path or "")
        if cand.line is None or cand.side != "RIGHT" or index is None or cand.path not in files:
            return None
        symbol = index.enclosing(cand.line, max(cand.end_line or cand.line, cand.line))
        return (symbol.name, symbol.start_line, symbol.end_line) if symbol is not None else None

    return find


def _annotate(
    candidates: list[Candidate],
    files: dict[str, FileDiff],
    contexts: dict[str, list[HunkContext]],
    change: Change,
) -> None:
    """Fill the features the filter reads: repo, PR, language, enclosing symbol, hunk size."""
    for cand in candidates:
        cand.repo = cand.repo or change.repo
        cand.pr = cand.pr if cand.pr is not None else change.pr
        file = files.get(cand.path or "")
        if file is None or cand.line is None:
            continue
        cand.language = cand.language or file.language
        index = hunk_index_for(file, cand.line, cand.side)
        if index is not None:
            cand.hunk_size = cand.hunk_size or len(file.hunks[index].lines)
            hunk_ctx = contexts.get(file.path, [])
            here = hunk_ctx[index] if index < len(hunk_ctx) else None
            # the symbol around the finding's line (new-file lines: RIGHT), else the hunk's
            on_new = cand.side != "LEFT"
            enclosing = (ctx.symbol_at(here, cand.line) if on_new else here.enclosing) if here else None
            if enclosing is not None and not cand.symbol:
                cand.symbol = enclosing.name
