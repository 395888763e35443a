"""What one review comment carries by itself, as numbers the acceptance model can weigh.

Why: an installation has one reviewer (its LLM passes and its rules), so agreement among many
tools is not available; the comment itself must say whether it is worth posting. A comment that
names an identifier or value, quotes the code it is about and sits on an added line is acted on
far more often than one that hedges about nothing in particular. Pure functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import astuple, dataclass

from reviewbot.core.domain import Candidate
from reviewbot.core.roles import ROLES, file_role
from reviewbot.core.vocabulary import normalise_severity

#: Candidate tokens for code named in prose: `backticked` spans and (dotted) words, with a call's "(".
#: A word of only [a-z0-9] that ends there (no ".", "_", "(" or other word character follows) is
#: plain lower-case prose and never code: the first branch consumes it with an empty group, so
#: `filter(None, ...)` drops it in C instead of every word of every history row reaching Python.
_TOKEN = re.compile(r"[a-z][a-z0-9]*(?![\w.(])|(`[^`\n]{1,120}`|[A-Za-z_][\w.]*\(?)")
#: A digit that starts a word: `\b\d` (a digit is a word character, so the boundary is before it),
#: written as a digit found first and the character before it checked after, because a pattern
#: that opens with an assertion gets no fast scan for its first character (2.4x slower per text).
_NUMBER = re.compile(r"\d(?<!\w\d)")
_VALUE_WORDS = frozenset({"null", "nil", "none", "undefined", "nan", "true", "false"})
_FENCE = re.compile(r"```")
_SUGGESTION = re.compile(r"```suggestion\b")
_WORDS = re.compile(r"[a-z]+")
#: A concrete failure named: one word, or a phrase (checked only when its first word occurs).
_FAILURE_WORDS = frozenset(
    [
        "panic",
        "panics",
        "crash",
        "crashes",
        "throw",
        "throws",
        "raise",
        "raises",
        "exception",
        "deadlock",
        "race",
        "leak",
        "leaks",
        "overflow",
        "undefined",
        "incorrect",
        "incorrectly",
        "wrong",
        "missing",
        "lost",
        "skipped",
        "ignored",
        "fail",
        "fails",
        "broken",
        "bypass",
        "injection",
    ]
)
_FAILURE_PHRASES: dict[str, tuple[str, ...]] = {
    "out": ("out of bounds",),
    "off": ("off by one",),
    "infinite": ("infinite loop",),
    "null": ("null pointer",),
    "nil": ("nil pointer",),
    "never": ("never called", "never closed", "never released", "never reached"),
    "always": ("always true", "always false"),
}


_PHRASE_STARTS = frozenset(_FAILURE_PHRASES)


def _code_refs(prose: str, at: int = 3) -> int:
    """How many identifiers, calls or backticked spans the prose names (counting up to `at`): a
    token with '(' or '_' or an inner '.', or mixed case that is not Title case (camelCase)."""
    n = 0
    for tok in filter(None, _TOKEN.findall(prose)):
        if (
            tok[0] == "`"
            or tok[-1] == "("
            or "_" in tok
            or "." in tok[1:-1]
            or not (tok.islower() or tok.isupper() or tok.istitle())
        ):
            n += 1
            if n >= at:
                break
    return n


def _failures(words: list[str]) -> int:
    """Distinct concrete failure terms among the lower-case `words` of the prose."""
    found = len(_FAILURE_WORDS.intersection(words))
    starts = _PHRASE_STARTS.intersection(words)
    if starts:
        joined = " " + " ".join(words) + " "
        found += sum(1 for w in starts for p in _FAILURE_PHRASES[w] if f" {p} " in joined)
    return found


#: Roles other than 'source', each a column (source is the baseline).
ROLE_COLUMNS: tuple[str, ...] = tuple(r for r in ROLES if r != "source")


@dataclass(frozen=True, slots=True)
class CommentSignals:
    """The features one comment carries; all in [0, 1] or [-1, 1], 0 meaning 'not known'."""

    names_code: float  # identifiers, calls or backticked code in the text (saturating)
    names_value: float  # a literal value (a number, null, true...) named in the text
    names_failure: float  # a concrete failure mode named (crash, leak, off-by-one, wrong result...)
    quotes_code: float  # quotes code (a quoted_code field or a fenced block)
    quote_verified: float  # +1 its quote is the code at its line, -1 it is not, 0 unknown
    on_added_line: float  # 1 on an added line, -1 on context/old lines, 0 unknown
    suggestion: float  # proposes replacement code
    stated_high: float  # the reviewer itself called it critical/high (not our re-assessment)
    stated_low: float  # the reviewer itself called it low/nit
    stated_confidence: float  # stated confidence - 0.5, 0 when none stated
    verified: float  # the verification step: +1 confirmed, -1 refuted, 0 unsure or not run
    verify_logit: float  # logit of the verification probability / 4 (clipped), 0 when not run
    role: str


def _saturate(n: int, at: int = 3) -> float:
    return min(n, at) / at


def comment_signals(c: Candidate) -> CommentSignals:
    """The signals of one candidate, from its text and the fields the pipeline filled in."""
    return CommentSignals(*_signal_values(c))


#: CommentSignals' fields as a tuple: twelve numbers and the role.
_Values = tuple[float, float, float, float, float, float, float, float, float, float, float, float, str]


def _signal_values(c: Candidate) -> _Values:
    """CommentSignals' fields in order: one computation for `comment_signals` and for
    `signal_values`, which skips the object (a frozen dataclass's 13 field sets per history row)."""
    text = f"{c.title}\n{c.body}"
    prose = _FENCE.split(text)[0] if "```" in text else text  # the words before any code block
    code_refs = _code_refs(prose)
    words = _WORDS.findall(prose.lower())  # "-" separates words as any non-letter does
    fenced = "```" in text
    quotes = 1.0 if (c.quoted_code or fenced) else 0.0
    stated = normalise_severity(c.severity)
    if c.verdict == "confirmed":
        verified = 1.0
    elif c.verdict == "refuted":
        verified = -1.0
    else:
        verified = 0.0
    if c.verify_probability is None:
        verify_logit = 0.0
    else:
        p = min(max(float(c.verify_probability), 0.02), 0.98)
        verify_logit = math.log(p / (1 - p)) / 4.0
    return (
        _saturate(code_refs),  # names_code
        1.0 if (not _VALUE_WORDS.isdisjoint(words) or _NUMBER.search(prose)) else 0.0,  # names_value
        _saturate(_failures(words), 2),  # names_failure
        quotes,  # quotes_code
        0.0 if c.quote_verified is None else (1.0 if c.quote_verified else -1.0),  # quote_verified
        0.0 if c.on_added_line is None else (1.0 if c.on_added_line else -1.0),  # on_added_line
        1.0 if (c.suggestion or (fenced and _SUGGESTION.search(text))) else 0.0,  # suggestion
        1.0 if stated in ("critical", "high") else 0.0,  # stated_high
        1.0 if stated in ("low", "nit") else 0.0,  # stated_low
        0.0 if c.confidence is None else float(c.confidence) - 0.5,  # stated_confidence
        verified,
        verify_logit,
        file_role(c.path),  # role
    )


#: The numeric columns `signal_columns` returns, in order.
SIGNAL_COLUMNS: tuple[str, ...] = (
    "names_code",
    "names_value",
    "names_failure",
    "quotes_code",
    "quote_verified",
    "on_added_line",
    "suggestion",
    "stated_high",
    "stated_low",
    "stated_confidence",
    "verified",
    "verify_logit",
    *(f"role_{r}" for r in ROLE_COLUMNS),
)


#: The role_* columns of each role ('source', the baseline, has none set).
_ROLE_ONE_HOT: dict[str, tuple[float, ...]] = {
    role: tuple(1.0 if role == r else 0.0 for r in ROLE_COLUMNS) for role in ROLES
}
_NO_ROLE = tuple(0.0 for _ in ROLE_COLUMNS)


def signal_columns(s: CommentSignals) -> list[float]:
    """The signals as the acceptance model's numeric columns (SIGNAL_COLUMNS order)."""
    return _columns(astuple(s))  # CommentSignals' fields are _signal_values' order


def signal_values(c: Candidate) -> list[float]:
    """`signal_columns(comment_signals(c))` without building the CommentSignals in between (the
    featurizer asks this of every history row it trains on)."""
    return _columns(_signal_values(c))


def _columns(values: _Values) -> list[float]:
    """The twelve numbers, then the role as its one-hot role_* columns."""
    *numbers, role = values
    numbers.extend(_ROLE_ONE_HOT.get(role, _NO_ROLE))
    return numbers


#: Candidate fields the acceptance model reads beyond the findings table's columns; stored in a
#: finding's `features` JSON so that retraining sees what scoring saw (no train/serve skew).
PERSISTED_FIELDS: tuple[str, ...] = (
    "on_added_line",
    "quote_verified",
    "rank",
    "verdict",
    "verify_probability",
    "quoted_code",
    "suggestion",
)
_MAX_PERSISTED_TEXT = 500


def persisted_signals(c: Candidate, review_size: int = 1) -> dict[str, object]:
    """The signal fields of `c` (and its review size) for a finding's features JSON."""
    out: dict[str, object] = {"review_size": review_size}
    for name in PERSISTED_FIELDS:
        value = getattr(c, name)
        if isinstance(value, str):
            value = value[:_MAX_PERSISTED_TEXT]
        if value is not None:
            out[name] = value
    return out


def restore_signals(c: Candidate, features: dict[str, object]) -> Candidate:
    """`c` with the signal fields read back from a finding's features JSON (in place)."""
    kinds: dict[str, tuple[type, ...]] = {
        "on_added_line": (bool,),
        "quote_verified": (bool,),
        "rank": (int,),
        "verdict": (str,),
        "verify_probability": (int, float),
        "quoted_code": (str,),
        "suggestion": (str,),
    }
    for name, kind in kinds.items():
        value = features.get(name)
        if isinstance(value, kind) and not (isinstance(value, bool) and bool not in kind):
            setattr(c, name, float(value) if name == "verify_probability" else value)  # type: ignore[arg-type]
    return c
