"""Dataclasses shared by every stage of the review pipeline.

Pure data: no I/O, no clock, no globals. Every stage takes and returns these, so a stage can be
tested with hand-made values and no fake servers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

# The vocabulary lives in vocabulary.py; re-exported here for the stages that import it with the data.
from reviewbot.core.vocabulary import CATEGORIES as CATEGORIES
from reviewbot.core.vocabulary import SEVERITIES as SEVERITIES
from reviewbot.core.vocabulary import at_least as at_least
from reviewbot.core.vocabulary import severity_rank as severity_rank

Side = Literal["LEFT", "RIGHT"]
LineKind = Literal["added", "deleted", "context"]
#: The verification step's answer on a candidate (reviewbot.review.verify); None when it was not asked.
Verdict = Literal["confirmed", "refuted", "unsure"]
FileStatus = Literal["added", "deleted", "modified", "renamed"]


class DiffLine(NamedTuple):
    """One line of a hunk, with its number in the old file, the new file, or both.

    A NamedTuple, not a frozen dataclass: every line of every diff is one, and a frozen
    dataclass's __init__ (object.__setattr__ per field) cost four times as much to build.
    """

    kind: LineKind
    text: str
    old_no: int | None
    new_no: int | None


@dataclass(slots=True)
class Hunk:
    """A hunk of a unified diff (`@@ -old_start,old_len +new_start,new_len @@ section`)."""

    old_start: int
    old_len: int
    new_start: int
    new_len: int
    section: str = ""
    lines: list[DiffLine] = field(default_factory=list)
    #: (the lines list it was built from, its length, RIGHT lines, LEFT lines): see has_line
    _accepted: tuple[list[DiffLine], int, frozenset[int], frozenset[int]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    #: (the lines list it was built from, its length, added lines): see added_line_numbers
    _added: tuple[list[DiffLine], int, tuple[int, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def has_line(self, line: int, side: Side = "RIGHT") -> bool:
        """`line in self.lines_on(side)`, from sets built once per hunk (hunk_for runs for every
        candidate, anchor and annotation). Rebuilt when `lines` is replaced or changes length;
        hunks are not edited in place after parsing."""
        cache = self._accepted
        if cache is None or cache[0] is not self.lines or cache[1] != len(self.lines):
            right, left = frozenset(self.right_line_numbers()), frozenset(self.left_line_numbers())
            cache = self._accepted = (self.lines, len(self.lines), right, left)
        return line in (cache[2] if side == "RIGHT" else cache[3])

    def added_line_numbers(self) -> list[int]:
        """New-file numbers of the added lines, found once per hunk (the context stage, the rules
        and SARIF anchoring each ask), rebuilt like has_line's sets."""
        cache = self._added
        if cache is None or cache[0] is not self.lines or cache[1] != len(self.lines):
            added = tuple(ln.new_no for ln in self.lines if ln.kind == "added" and ln.new_no is not None)
            cache = self._added = (self.lines, len(self.lines), added)
        return list(cache[2])

    def right_line_numbers(self) -> set[int]:
        """New-file lines GitHub accepts on side RIGHT: added or context lines of this hunk."""
        return {ln.new_no for ln in self.lines if ln.kind != "deleted" and ln.new_no is not None}

    def left_line_numbers(self) -> set[int]:
        """Old-file lines GitHub accepts on side LEFT: deleted or context lines of this hunk."""
        return {ln.old_no for ln in self.lines if ln.kind != "added" and ln.old_no is not None}

    def lines_on(self, side: Side) -> set[int]:
        return self.right_line_numbers() if side == "RIGHT" else self.left_line_numbers()


@dataclass(slots=True)
class FileDiff:
    """The change to one file. `path` is the new path (the old one for a deleted file)."""

    path: str
    old_path: str | None
    status: FileStatus
    hunks: list[Hunk] = field(default_factory=list)
    is_binary: bool = False
    old_mode: str | None = None
    new_mode: str | None = None
    language: str | None = None

    def hunk_for(self, line: int, side: Side = "RIGHT") -> Hunk | None:
        """The hunk that contains `line` on `side`, or None when GitHub would reject it."""
        for hunk in self.hunks:
            if hunk.has_line(line, side):
                return hunk
        return None

    def accepts(self, line: int, side: Side = "RIGHT") -> bool:
        """Whether GitHub accepts a review comment on (line, side) of this file."""
        return self.hunk_for(line, side) is not None

    def accepts_range(self, start_line: int, line: int, side: Side = "RIGHT") -> bool:
        """Whether a multi-line comment start_line..line is valid: same hunk, start before end."""
        if start_line >= line:
            return False
        hunk = self.hunk_for(line, side)
        return hunk is not None and hunk.has_line(start_line, side)

    def added_line_numbers(self) -> set[int]:
        return {n for h in self.hunks for n in h.added_line_numbers()}


@dataclass(frozen=True, slots=True)
class Symbol:
    """A named syntactic unit found by tree-sitter (function, method, class...)."""

    name: str
    kind: str
    start_line: int
    end_line: int


@dataclass(slots=True)
class HunkContext:
    """What the prompt needs to know about one hunk besides its lines."""

    path: str
    hunk_index: int
    language: str | None
    enclosing: Symbol | None
    changed_symbols: list[Symbol] = field(default_factory=list)
    snippet: str = ""
    snippet_start_line: int | None = None
    parse_error: bool = False


@dataclass(slots=True)
class Candidate:
    """A proposed review comment, from a rule or an LLM pass, before the noise filter."""

    id: str
    path: str | None
    line: int | None
    body: str
    title: str = ""
    end_line: int | None = None
    side: Side = "RIGHT"
    severity: str | None = None
    category: str | None = None
    confidence: float | None = None
    suggestion: str | None = None
    quoted_code: str | None = None
    source: str = "llm"
    rule_id: str | None = None
    symbol: str | None = None
    repo: str | None = None
    pr: int | None = None
    hunk_size: int | None = None
    language: str | None = None
    #: whether its line (or range) is on lines the change adds; None when not known
    on_added_line: bool | None = None
    #: whether the code it quotes is the code at its line; None when it quotes nothing
    quote_verified: bool | None = None
    #: its position in its source's reply (0 = listed first), when the source orders its findings
    rank: int | None = None
    #: how many findings the reply that listed it held (its rank is its place among them); an
    #: LLM orders each reply on its own, so a review of several requests has several first places
    reply_size: int | None = None
    #: the verification step's answer about it ("confirmed" | "refuted" | "unsure"), when run
    verdict: Verdict | None = None
    #: the verification step's probability that it holds, when run
    verify_probability: float | None = None
    #: the judge's one-line why, quoting the line that proves it
    verify_reason: str | None = None


@dataclass(slots=True)
class Decision:
    """The noise filter's verdict on one candidate; suppressed ones are kept for the record."""

    candidate: Candidate
    decision: Literal["post", "suppress"]
    reason: str
    score: float
    severity: str
    category: str
    cluster: str
    fingerprint: str
    explore: bool = False
    #: how many candidates its source raised in the review (a feature the model scored it with)
    review_size: int = 1


@dataclass(slots=True)
class Dropped:
    """A candidate dropped before the filter (invalid anchor, unknown path...), with why."""

    candidate: Candidate
    stage: str
    reason: str


@dataclass(slots=True)
class Funnel:
    """How many candidates entered, and how many each stage dropped and why."""

    candidates: int = 0
    posted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def as_dict(self) -> dict[str, object]:
        return {"candidates": self.candidates, "posted": self.posted, "dropped": dict(self.dropped)}


@dataclass(slots=True)
class LLMUsage:
    """What a review asked of the LLM: requests, tokens, failures, the model, cost, and the cap
    that stopped it (empty when none did)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    model: str = ""
    cost: float | None = None  # in the price table's currency; None without a price for the model
    stopped_by: str = ""  # the operator cap that stopped the review, e.g. "tokens per PR (50000)"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: LLMUsage) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.errors += other.errors
        self.model = self.model or other.model
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost
        self.stopped_by = self.stopped_by or other.stopped_by


@dataclass(slots=True)
class ReviewResult:
    """Everything one review run produced: what to post, what was held back, and the funnel."""

    posted: list[Decision] = field(default_factory=list)
    suppressed: list[Decision] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    funnel: Funnel = field(default_factory=Funnel)
    usage: LLMUsage = field(default_factory=LLMUsage)
    files_not_reviewed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: when candidates existed but none was posted: how many, the best score, what would post it
    silence: str | None = None
    #: what the repo's feedback taught: the model version in force, the kinds held back
    learned: list[str] = field(default_factory=list)
