"""Decisions -> the text GitHub shows: comment bodies, the review summary, the check run.

Pure: data in, strings out. Every comment carries a hidden fingerprint marker so the bot can
recognise its own findings on a PR even when its database is lost (reposting stays idempotent).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from reviewbot.core.domain import SEVERITIES, Decision, ReviewResult, Side

#: `<!-- reviewbot:fp=<hex> -->`; the hex is the UTF-8 fingerprint, so any fingerprint round-trips
#: and nothing in it can close the HTML comment early.
FINGERPRINT_MARKER = "<!-- reviewbot:fp={hex} -->"
_MARKER_RE = re.compile(r"<!-- reviewbot:fp=([0-9a-f]+) -->")
#: GitHub rejects check-run output.summary / output.text longer than this.
CHECK_OUTPUT_LIMIT = 65535


@dataclass(frozen=True, slots=True)
class ReviewComment:
    """One inline comment of a review, in the shape GitHub's create-review API takes."""

    path: str
    line: int
    side: Side
    body: str
    fingerprint: str
    start_line: int | None = None
    start_side: Side | None = None

    def as_api(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "line": self.line, "side": self.side, "body": self.body}
        if self.start_line is not None:
            out["start_line"] = self.start_line
            out["start_side"] = self.start_side or self.side
        return out


def fingerprint_marker(fingerprint: str) -> str:
    return FINGERPRINT_MARKER.format(hex=fingerprint.encode("utf-8").hex())


def parse_fingerprint(body: str | None) -> str | None:
    """The fingerprint in a comment body's marker (the last one wins), or None."""
    if not body:
        return None
    found = _MARKER_RE.findall(body)
    if not found:
        return None
    try:
        return bytes.fromhex(found[-1]).decode("utf-8")
    except ValueError:
        return None


def _clean(text: str) -> str:
    """Drop HTML comments from model output so it cannot forge (or hide) a marker, and defuse its
    @mentions so it cannot make the bot notify people or teams."""
    return _defuse_mentions(_drop_html_comments(text or "").replace("<!--", "&lt;!--").strip())


def _drop_html_comments(text: str) -> str:
    """`re.sub(r"<!--.*?-->", "", text, flags=re.S)` in linear time: that regex rescanned to the end
    from every unclosed `<!--` (quadratic on a flood of them); past the last `-->` nothing closes."""
    out: list[str] = []
    i = 0
    while (start := text.find("<!--", i)) != -1 and (end := text.find("-->", start + 4)) != -1:
        out.append(text[i:start])
        i = end + 3
    out.append(text[i:])
    return "".join(out)


_MENTION_RE = re.compile(r"(?<![\w@`/])@(?=[A-Za-z0-9])")
_FENCE_LINE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_BACKTICKS_RE = re.compile(r"`+")


def _defuse_mentions(text: str) -> str:
    """'@user' -> '@\u200buser' outside code: shown the same, but no longer a mention."""
    out: list[str] = []
    pos = 0
    for start, end in _code_spans(text):
        out += [_MENTION_RE.sub("@\u200b", text[pos:start]), text[start:end]]
        pos = end
    out.append(_MENTION_RE.sub("@\u200b", text[pos:]))
    return "".join(out)


def _opens_fence(match: re.Match[str] | None) -> bool:
    return match is not None and not (match.group(1)[0] == "`" and "`" in match.group(2))


def _closes_fence(match: re.Match[str] | None, opened: str) -> bool:
    return (
        match is not None
        and match.group(1)[0] == opened[0]
        and len(match.group(1)) >= len(opened)
        and not match.group(2).strip()
    )


def _code_spans(text: str) -> list[tuple[int, int]]:
    """Where GitHub links no mention: fenced blocks (an unclosed one runs to the end) and inline
    code spans (a backtick run closed by the next run of the same length, on its line). One pass;
    the regex it replaces was quadratic on a flood of backticks."""
    spans: list[tuple[int, int]] = []
    opened: str | None = None
    block_start = 0
    offset = 0
    for line in text.split("\n"):
        match = _FENCE_LINE_RE.match(line)
        if opened is None and _opens_fence(match):
            assert match is not None
            opened, block_start = match.group(1), offset
        elif opened is None:
            spans += [(offset + a, offset + b) for a, b in _inline_spans(line)]
        elif _closes_fence(match, opened):
            spans.append((block_start, offset + len(line)))
            opened = None
        offset += len(line) + 1
    if opened is not None:
        spans.append((block_start, len(text)))
    return spans


def _inline_spans(line: str) -> list[tuple[int, int]]:
    runs = [(m.start(), m.end()) for m in _BACKTICKS_RE.finditer(line)]
    by_length: dict[int, list[int]] = {}
    for index, (a, b) in enumerate(runs):
        by_length.setdefault(b - a, []).append(index)
    cursor = dict.fromkeys(by_length, 0)
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(runs):
        length = runs[i][1] - runs[i][0]
        same, k = by_length[length], cursor[length]
        while k < len(same) and same[k] <= i:
            k += 1
        cursor[length] = k
        if k == len(same):
            i += 1
            continue
        j = same[k]
        spans.append((runs[i][0], runs[j][1]))
        i = j + 1
    return spans


def _close_fences(text: str) -> str:
    """Close a fenced block the text leaves open (CommonMark's rules), so it cannot swallow what
    follows: an open fence in a model's body turned our suggestion block into plain text."""
    opened: str | None = None
    for line in text.split("\n"):
        match = _FENCE_LINE_RE.match(line)
        if opened is None and _opens_fence(match):
            assert match is not None
            opened = match.group(1)
        elif opened is not None and _closes_fence(match, opened):
            opened = None
    return text if opened is None else f"{text}\n{opened}"


def _fence(code: str) -> str:
    """A backtick fence longer than any run of backticks inside `code`."""
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def suggestion_block(suggestion: str) -> str:
    """The ```suggestion block GitHub offers to apply; also stored with the finding, where
    feedback reads it back to tell an applied suggestion from any fixing commit."""
    code = suggestion[:-1] if suggestion.endswith("\n") else suggestion
    fence = _fence(code)
    return f"{fence}suggestion\n{code}\n{fence}"


def render_comment(decision: Decision) -> str:
    """Bold title, body, an optional ```suggestion block, a badge line, the hidden marker."""
    c = decision.candidate
    parts: list[str] = []
    title = _clean(c.title).replace("\n", " ")
    if title:
        parts.append(f"**{title}**")
    body = _close_fences(_clean(c.body))
    if body:
        parts.append(body)
    if c.suggestion is not None:
        parts.append(suggestion_block(c.suggestion))
    badges = [f"`{decision.severity}`", f"`{decision.category}`"]
    if c.rule_id:
        badges.append(f"rule `{c.rule_id}`")
    parts.append("<sub>reviewbot · " + " · ".join(badges) + "</sub>")
    parts.append(fingerprint_marker(decision.fingerprint))
    return "\n\n".join(parts)


def to_review_comment(decision: Decision) -> ReviewComment:
    """The inline comment for a decision; a multi-line candidate becomes start_line..line."""
    c = decision.candidate
    if c.path is None or c.line is None:
        raise ValueError(f"candidate {c.id} has no anchor (path={c.path!r}, line={c.line!r})")
    start, end = c.line, c.line
    if c.end_line is not None and c.end_line != c.line:
        start, end = min(c.line, c.end_line), max(c.line, c.end_line)
    return ReviewComment(
        path=c.path,
        line=end,
        side=c.side,
        body=render_comment(decision),
        fingerprint=decision.fingerprint,
        start_line=start if start != end else None,
        start_side=c.side if start != end else None,
    )


def _severity_counts(decisions: list[Decision]) -> str:
    counts = Counter(d.severity for d in decisions)
    order = [s for s in SEVERITIES if counts[s]] + sorted(s for s in counts if s not in SEVERITIES)
    return ", ".join(f"{counts[s]} {s}" for s in order)


def held_back(result: ReviewResult) -> int:
    """Findings the filter held back: suppressed ones that are not a copy of another (a duplicate
    or one already posted). Dropped candidates (lines outside the diff, invented files) are not
    findings at all."""
    return sum(1 for d in result.suppressed if not d.reason.startswith(("duplicate", "already posted")))


def render_review_summary(result: ReviewResult) -> str:
    """The review body: one or two lines; the details live in the check run."""
    n = len(result.posted)
    if n:
        lines = [f"reviewbot left {n} comment{'s' if n != 1 else ''} ({_severity_counts(result.posted)})."]
    else:
        lines = ["reviewbot found nothing worth a comment."]
    held = held_back(result)
    if held:
        plural = "s" if held != 1 else ""
        lines.append(f"{held} lower-value finding{plural} held back; see the `reviewbot` check.")
    if result.files_not_reviewed:
        k = len(result.files_not_reviewed)
        lines.append(f"{k} file{'s' if k != 1 else ''} not reviewed; see the `reviewbot` check.")
    return " ".join(lines)


def _funnel(result: ReviewResult) -> tuple[int, int, dict[str, int]]:
    """(candidates, posted, dropped per reason): the pipeline's funnel, or counted from the lists."""
    f = result.funnel
    if f.candidates or f.posted or f.dropped:
        return f.candidates, f.posted, dict(f.dropped)
    reasons: Counter[str] = Counter(d.reason for d in result.suppressed)
    reasons.update(d.reason for d in result.dropped)
    posted = len(result.posted)
    return posted + sum(reasons.values()), posted, dict(reasons)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _limit(text: str) -> str:
    if len(text) <= CHECK_OUTPUT_LIMIT:
        return text
    note = "\n\n… (truncated)"
    return text[: CHECK_OUTPUT_LIMIT - len(note)] + note


def render_check_run(result: ReviewResult) -> tuple[str, str, str]:
    """(title, summary, text) for the `reviewbot` check run: the funnel and what was not reviewed."""
    candidates, posted, dropped = _funnel(result)
    title = f"{posted} comment{'s' if posted != 1 else ''} posted from {candidates} candidate" + (
        "s" if candidates != 1 else ""
    )
    if result.files_not_reviewed:
        title += f"; {len(result.files_not_reviewed)} file(s) not reviewed"
    summary = [f"**Funnel:** {candidates} candidates → {posted} posted"]
    if result.usage.stopped_by:  # the operator's cost cap ended the LLM review early: say which
        title += "; stopped by a cost cap"
        summary += ["", f"**Stopped by the operator's cost cap:** {_cell(result.usage.stopped_by)}"]
    if result.silence:
        summary += ["", result.silence]
    if dropped:
        summary += ["", "| Held back because | Count |", "| --- | ---: |"]
        ranked = sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))
        summary += [f"| {_cell(r)} | {n} |" for r, n in ranked]
    if result.posted:
        summary += ["", f"**Posted by severity:** {_severity_counts(result.posted)}"]
    if result.learned:  # the model in force and the kinds this repo's feedback holds back
        summary += ["", "**Learned from this repo's feedback:**", ""]
        summary += [f"- {_cell(x)}" for x in result.learned]
    text: list[str] = []
    if result.files_not_reviewed:
        text += ["### Files not reviewed", "", "| File | Why |", "| --- | --- |"]
        text += [f"| `{_cell(p)}` | {_cell(why)} |" for p, why in sorted(result.files_not_reviewed.items())]
    else:
        text.append("Every changed file was reviewed.")
    if result.notes:
        text += ["", "### Notes", ""] + [f"- {_cell(n)}" for n in result.notes]
    return title[:255], _limit("\n".join(summary)), _limit("\n".join(text))
