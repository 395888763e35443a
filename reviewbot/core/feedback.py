"""Signals -> labels: what engineers did with a bot comment, turned into accepted / dismissed.

Pure: data in, data out. No network, no clock (times are passed in), no store. `feedback_poll.py`
fetches the signals and writes the labels; `retrain.py` turns labels into training rows via
`resolve_outcome`. Conservative on purpose: a wrong label teaches the model the wrong taste, a
missing label only costs a little data, so anything ambiguous stays unlabelled.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

LabelName = Literal["accepted", "dismissed", "weak_dismissed"]
LABELS: tuple[str, ...] = ("accepted", "dismissed", "weak_dismissed")

#: Where a label came from. `suppressed_followup` scores a suppressed candidate by whether its code
#: changed anyway: used for evaluation (and stats), never as a training label.
SOURCES: tuple[str, ...] = (
    "reaction",
    "reply",
    "conversation",
    "thread",
    "commit",
    "suggestion",
    "untouched",
    "suppressed_followup",
)

POSITIVE_REACTIONS = frozenset({"+1", "heart", "hooray", "rocket"})
NEGATIVE_REACTIONS = frozenset({"-1", "confused"})

#: Weight of a resolved-without-change thread: someone looked and closed it, but resolving is
#: also how people tidy a PR, so it counts for less than an explicit 👎 or reply.
THREAD_WEAK_WEIGHT = 0.5
#: Weight of "the PR merged or closed and nobody touched this comment": a weak dismissal. Silence is
#: mostly, not always, a verdict. On review-bench replays (BENCHMARKS.md "Feedback labels") this
#: weight leaves ranking (AUC) unchanged and has the smallest worst-case calibration bias across
#: engineer behaviours; ignoring silence over-predicts acceptance, a plain dismissal under-predicts.
UNTOUCHED_WEIGHT = 0.2

#: When several sources label one finding, the most direct evidence wins. Explicit human words
#: (reply, reaction) beat behaviour (suggestion applied, commit touching the line), which beats a
#: resolved thread, which beats silence.
SOURCE_PRIORITY: dict[str, int] = {
    "reply": 0,
    "reaction": 1,
    "conversation": 2,  # the bot conceded a finding after an engineer's question (conversation.py)
    "suggestion": 3,
    "commit": 4,
    "thread": 5,
    "untouched": 6,
}
#: Sources that never become training rows: a suppressed candidate was never shown to anyone, so
#: whether its code changed measures the filter (stats, evaluation), not what engineers accept.
NOT_FOR_TRAINING = frozenset({"suppressed_followup"})


class FeedbackError(ValueError):
    """A signal that cannot be turned into a label (bad label name, bad line range...)."""


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """One label on one finding, with where it came from (provenance) and when (`at`, ISO 8601)."""

    finding_id: int
    label: LabelName
    source: str
    provenance: dict[str, object] = field(default_factory=dict)
    weight: float = 1.0
    at: str = ""

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise FeedbackError(f"unknown label {self.label!r}; expected one of {LABELS}")
        if self.source not in SOURCES:
            raise FeedbackError(f"unknown feedback source {self.source!r}; expected one of {SOURCES}")
        if not 0.0 <= self.weight <= 1.0:
            raise FeedbackError(f"label weight must be in [0, 1], got {self.weight}")


@dataclass(frozen=True, slots=True)
class Reaction:
    """A reaction on a comment as GitHub lists it."""

    id: int
    user: str
    content: str
    created_at: str
    user_type: str = "User"


# --------------------------------------------------------------------------- reactions


def reaction_label(content: str) -> LabelName | None:
    if content in POSITIVE_REACTIONS:
        return "accepted"
    if content in NEGATIVE_REACTIONS:
        return "dismissed"
    return None


def reaction_labels(
    reactions: Iterable[Reaction], *, bot_logins: Iterable[str] = ()
) -> dict[str, tuple[LabelName, Reaction]]:
    """user -> (label, the reaction that decided it): the latest labelling reaction per user wins.

    The bot's own reactions, and any Bot account's, are ignored (a bot's 👍 is not a human's
    verdict); neutral reactions (eyes, laugh) carry no label.
    """
    bots = {b.lower() for b in bot_logins}
    latest: dict[str, tuple[LabelName, Reaction]] = {}
    for r in reactions:
        if r.user.lower() in bots or r.user_type == "Bot":
            continue
        label = reaction_label(r.content)
        if label is None:
            continue
        seen = latest.get(r.user)
        if seen is None or (r.created_at, r.id) > (seen[1].created_at, seen[1].id):
            latest[r.user] = (label, r)
    return latest


# --------------------------------------------------------------------------- replies

_DISMISS_PATTERNS = [
    r"@reviewbot\s+ignore\b",
    r"\bfalse[\s-]+positive\b",
    r"\bwon'?t\s+fix\b",
    r"\bwont\s+fix\b",
    r"\bwill\s+not\s+fix\b",
    r"\bnot\s+an?\s+(?:real\s+)?(?:issue|problem|bug)\b",
    r"\bworking\s+as\s+intended\b",
    r"\bby\s+design\b",
]
_ACCEPT_PATTERNS = [
    r"\bfixed\b",
    r"\bgood\s+catch\b",
    r"\bnice\s+catch\b",
    r"\bgreat\s+catch\b",
    r"^\s*done\b",  # only at the start of a sentence: "done, thanks" but not "what's done here"
    r"\bthanks?,?\s+updated\b",
    r"\bupdated,?\s+thanks?\b",
    r"\baddressed\s+in\b",
]
# A negation shortly before the phrase, in the same clause, voids it ("not fixed", "hasn't been
# fixed", "no false positive here"); so does a future or obligation ("will be fixed", "needs to be
# fixed"): the reply says what should happen, not what did.
_NEGATION = re.compile(
    r"\b(?:not|no|never|isn'?t|wasn'?t|aren'?t|hasn'?t|haven'?t|didn'?t|doesn'?t|don'?t|nothing)"
    r"\b[\w\s']{0,14}$"
)
_NOT_YET = re.compile(
    r"\b(?:will|would|should|could|can|must|gonna|going\s+to|to)\s+(?:be\s+|get\s+|been\s+)?$"
)
_QUOTE_OR_CODE = re.compile(r"```.*?```|`[^`]*`", re.S)


def _sentences(text: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith(">")]
    body = _QUOTE_OR_CODE.sub(" ", "\n".join(lines)).lower().replace("\u2019", "'")
    return [s for s in re.split(r"(?<=[.!?;\n])\s*", body) if s.strip()]


def _hits(sentence: str, patterns: Sequence[str]) -> bool:
    for pat in patterns:
        for m in re.finditer(pat, sentence):
            if sentence.rstrip().endswith("?"):
                continue  # "is this fixed?" asks, it does not tell
            clause = re.split(r",|\bbut\b|\bthough\b", sentence[: m.start()])[-1]
            if _NEGATION.search(clause) or _NOT_YET.search(clause):
                continue
            return True
    return False


def classify_reply(text: str) -> LabelName | None:
    """A reply to a bot comment -> 'accepted', 'dismissed', or None when it is not clear.

    Quoted lines and code are ignored; a phrase after a negation or a future tense ("not fixed",
    "will be fixed later") does not count; a reply with both kinds of phrase stays unlabelled.
    """
    accept = dismiss = False
    for sentence in _sentences(text):
        # "not an issue" is itself a dismissal, so negation is only checked before the phrase.
        if _hits(sentence, _DISMISS_PATTERNS):
            dismiss = True
        if _hits(sentence, _ACCEPT_PATTERNS):
            accept = True
    if accept == dismiss:
        return None
    return "accepted" if accept else "dismissed"


# --------------------------------------------------------------------------- code changes


def _lines(text: str) -> list[str]:
    return [ln.rstrip() for ln in text.replace("\r\n", "\n").split("\n")]


def lines_changed(old_text: str, new_text: str | None, start: int, end: int | None = None) -> bool:
    """Whether lines start..end (1-based, inclusive) of `old_text` were edited in `new_text`.

    An edit, a deletion, or a line inserted inside or right next to the range counts; edits
    elsewhere in the file do not. A deleted file (`new_text` None) counts as changed: the code the
    comment pointed at is gone.
    """
    end = start if end is None else end
    if start < 1 or end < start:
        raise FeedbackError(f"bad line range {start}..{end}")
    if new_text is None:
        return True
    old, new = _lines(old_text), _lines(new_text)
    lo, hi = start - 1, end  # old[lo:hi] is the commented range
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if i1 == i2:  # pure insertion before old[i1]
            if lo <= i1 <= hi:
                return True
        elif i1 < hi and i2 > lo:
            return True
    return False


_SUGGESTION = re.compile(r"```suggestion[^\n]*\n(.*?)```", re.S)


def extract_suggestion(body: str) -> str | None:
    """The replacement text of the first ```suggestion block in a comment body, if any."""
    m = _SUGGESTION.search(body.replace("\r\n", "\n"))
    if m is None:
        return None
    return m.group(1)


def without_suggestion(body: str) -> str:
    """The comment text alone: what the model scored before the suggestion block was added."""
    return _SUGGESTION.sub("", body.replace("\r\n", "\n")).rstrip()


def suggestion_applied(
    old_text: str, new_text: str | None, start: int, end: int | None, suggestion: str
) -> bool:
    """Whether the new code is what applying the suggestion to lines start..end would give.

    Exact application (the file equals old with the range replaced) always counts; so does the
    suggestion's text appearing, changed from before, near where the range was, since people
    often apply a suggestion and then edit elsewhere in the same file.
    """
    end = start if end is None else end
    if new_text is None or start < 1 or end < start:
        return False
    old, new = _lines(old_text), _lines(new_text)
    sugg = _lines(suggestion.rstrip("\n")) if suggestion.strip() else []
    expected = old[: start - 1] + sugg + old[end:]
    if _strip_tail(expected) == _strip_tail(new):
        return True
    if not sugg or sugg == old[start - 1 : end]:
        return False
    n = len(sugg)
    window = range(max(0, start - 1 - 50), min(len(new) - n, start - 1 + 50) + 1)
    return any(new[i : i + n] == sugg for i in window)


def _strip_tail(lines: list[str]) -> list[str]:
    out = list(lines)
    while out and out[-1] == "":
        out.pop()
    return out


# --------------------------------------------------------------------------- threads, closing


def thread_label(resolved: bool, code_changed: bool) -> tuple[LabelName, float] | None:
    """A review thread's state -> (label, weight); None (no label) for an unresolved thread."""
    if not resolved:
        return None
    if code_changed:
        return ("accepted", 1.0)
    return ("weak_dismissed", THREAD_WEAK_WEIGHT)


def untouched_label(finding_id: int, *, merged: bool, pr: int, at: str) -> LabelEvent:
    """A posted comment nobody reacted to, replied to, resolved or addressed when its PR closed.

    A weak dismissal (weight UNTOUCHED_WEIGHT; see docs/feedback.md), and the lowest-priority
    source: any later reaction, reply or commit on the comment overrides it.
    """
    return LabelEvent(
        finding_id=finding_id,
        label="weak_dismissed",
        source="untouched",
        provenance={"pr": pr, "merged": merged},
        weight=UNTOUCHED_WEIGHT,
        at=at,
    )


# --------------------------------------------------------------------------- combining


@dataclass(frozen=True, slots=True)
class Outcome:
    """The single verdict on a finding after combining its labels."""

    label: Literal["accepted", "dismissed"]
    weight: float
    source: str
    at: str


def silences(outcome: Outcome | None) -> bool:
    """The one dismissal policy: a posted finding is not raised again once the team clearly said
    no (a full-weight dismissal: a thumbs-down, a "false positive" reply). Weak signals (a thread
    resolved with the lines unchanged, silence at close) only train the model with their weight:
    they are too ambiguous to silence a finding forever (docs/feedback.md)."""
    return outcome is not None and outcome.label == "dismissed" and outcome.weight >= 1.0


def resolve_outcome(
    labels: Iterable[tuple[str, str, float, str]], *, include_untouched: bool = True
) -> Outcome | None:
    """(label, source, weight, at) rows of one finding -> one Outcome, or None.

    The most direct source present decides (SOURCE_PRIORITY); within it, weighted votes (several
    users' reactions) decide and a tie stays unlabelled. `weak_dismissed` is a dismissal with its
    (lower) weight. `suppressed_followup` never counts; `untouched` counts unless excluded
    (stats show it on its own rather than as a dismissal).
    """
    skip = set(NOT_FOR_TRAINING) | (set() if include_untouched else {"untouched"})
    by_source: dict[str, list[tuple[str, float, str]]] = {}
    for name, source, weight, at in labels:
        if source in skip or source not in SOURCE_PRIORITY:
            continue
        by_source.setdefault(source, []).append((name, float(weight), at))
    if not by_source:
        return None
    source = min(by_source, key=lambda s: SOURCE_PRIORITY[s])
    votes = by_source[source]
    pos = sum(w for lab, w, _ in votes if lab == "accepted")
    neg = sum(w for lab, w, _ in votes if lab != "accepted")
    if pos == neg:
        return None
    label: Literal["accepted", "dismissed"] = "accepted" if pos > neg else "dismissed"
    winners = [(w, at) for lab, w, at in votes if (lab == "accepted") == (label == "accepted")]
    weight = max(w for w, _ in winners)
    at = max(at for _, at in winners)
    return Outcome(label=label, weight=weight, source=source, at=at)
