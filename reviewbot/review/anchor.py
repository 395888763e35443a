"""Anchor raw LLM findings to positions GitHub accepts, or drop them with a recorded reason.

Pure. LLMs misnumber lines and invent paths; a review comment on a line outside the diff makes
GitHub reject the whole review (422). So every candidate is checked against the FileDiff: a line
outside the diff is moved to where its quoted code actually is (in the nearest hunk first), and
anything that cannot be placed is dropped — never posted, never silently lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reviewbot.core.domain import Candidate, DiffLine, Dropped, FileDiff, Hunk, Side
from reviewbot.review.prompt import unneutralise

_MIN_EXACT = 3  # a quote shorter than this ("}", ")") matches too many lines to anchor anything
_MIN_SUBSTRING = 6


def _norm(text: str) -> str:
    return " ".join(unneutralise(text).split())


def _clean(value: Any) -> str | None:
    """Text the model copied from the prompt, without our tag defusing (it must not reach code)."""
    return unneutralise(value) if isinstance(value, str) else None


def _quote_lines(quoted: str | None) -> list[str]:
    if not quoted:
        return []
    return [q for q in (_norm(x) for x in quoted.splitlines()) if q]


def resolve_path(path: str | None, files: Mapping[str, FileDiff]) -> str | None:
    """The diff path the model meant: exact, or after stripping './', '/', 'a/' or 'b/'."""
    if not path:
        return None
    if path in files:
        return path
    cand = path.strip()
    for _ in range(3):
        for prefix in ("./", "/", "a/", "b/"):
            if cand.startswith(prefix):
                cand = cand[len(prefix) :]
                if cand in files:
                    return cand
    # the old path of a renamed file
    for fd in files.values():
        if fd.old_path and fd.old_path in (path, cand) and fd.status == "renamed":
            return fd.path
    return None


def _positions(hunk: Hunk) -> list[tuple[Side, int, DiffLine]]:
    """Every commentable position of a hunk: RIGHT for added/context lines, LEFT for deleted ones."""
    out: list[tuple[Side, int, DiffLine]] = []
    for ln in hunk.lines:
        if ln.kind == "deleted" and ln.old_no is not None:
            out.append(("LEFT", ln.old_no, ln))
        elif ln.new_no is not None:
            out.append(("RIGHT", ln.new_no, ln))
    return out


def _hunk_distance(hunk: Hunk, line: int, side: Side) -> int:
    start = hunk.new_start if side == "RIGHT" else hunk.old_start
    length = hunk.new_len if side == "RIGHT" else hunk.old_len
    if start <= line <= start + max(length - 1, 0):
        return 0
    return min(abs(line - start), abs(line - (start + max(length - 1, 0))))


def _search(quote: list[str], hunks: list[Hunk], line: int | None) -> tuple[Side, int, Hunk] | None:
    """Find the quoted code's first line in `hunks`: exact (normalised) match, then substring.

    Several matches: the one nearest to the claimed line wins (first one when no line was given).
    """
    if not quote:
        return None
    first = quote[0]
    for mode in ("exact", "substring"):
        if mode == "exact" and len(first) < _MIN_EXACT:
            continue
        if mode == "substring" and len(first) < _MIN_SUBSTRING:
            continue
        matches: list[tuple[Side, int, Hunk]] = []
        for hunk in hunks:
            for side, number, ln in _positions(hunk):
                text = _norm(ln.text)
                if not text:
                    continue
                if (mode == "exact" and text == first) or (
                    mode == "substring" and (first in text or (len(text) >= _MIN_SUBSTRING and text in first))
                ):
                    matches.append((side, number, hunk))
        if matches:
            if line is None:
                return matches[0]
            return min(matches, key=lambda m: abs(m[1] - line))
    return None


def _line_text(hunk: Hunk, line: int, side: Side) -> str | None:
    """The code at (line, side) of `hunk`: a new-file line on RIGHT, an old-file line on LEFT."""
    for ln in hunk.lines:
        if side == "RIGHT" and ln.kind != "deleted" and ln.new_no == line:
            return ln.text
        if side == "LEFT" and ln.kind != "added" and ln.old_no == line:
            return ln.text
    return None


def _matches(text: str | None, quote: list[str]) -> bool:
    if text is None or not quote:
        return False
    t = _norm(text)
    return t == quote[0] or (len(quote[0]) >= _MIN_SUBSTRING and quote[0] in t)


def anchor_candidates(
    raw: list[dict[str, Any]],
    files: Mapping[str, FileDiff],
    *,
    source: str,
    id_prefix: str | None = None,
) -> tuple[list[Candidate], list[Dropped]]:
    """Validated findings (parse_reply output) -> candidates on lines GitHub accepts, plus drops.

    Candidate ids are f"{id_prefix or source}:{index in raw}"; `source` is stored on each
    Candidate ("llm", "rules", ...). Drop reasons are stable keys for the funnel: "unknown path",
    "line outside the diff", "no line", "file has no hunks". Every returned candidate satisfies
    `files[c.path].accepts(c.line, c.side)` and, when end_line is set,
    `accepts_range(c.line, c.end_line, c.side)`.
    """
    prefix = id_prefix or source
    kept: list[Candidate] = []
    dropped: list[Dropped] = []
    for index, item in enumerate(raw):
        line = item.get("line") if isinstance(item.get("line"), int) else None
        end_line = item.get("end_line") if isinstance(item.get("end_line"), int) else None
        side: Side = "LEFT" if item.get("side") == "LEFT" else "RIGHT"
        cand = Candidate(
            id=f"{prefix}:{index}",
            path=item.get("path") if isinstance(item.get("path"), str) else None,
            line=line,
            body=str(item.get("body") or ""),
            title=str(item.get("title") or ""),
            end_line=end_line,
            side=side,
            severity=item.get("severity"),
            category=item.get("category"),
            confidence=item.get("confidence"),
            suggestion=_clean(item.get("suggestion")),
            quoted_code=_clean(item.get("quoted_code")),
            source=source,
            rank=index,
            reply_size=len(raw),
        )
        path = resolve_path(cand.path, files)
        if path is None:
            dropped.append(Dropped(cand, "anchor", "unknown path"))
            continue
        fd = files[path]
        cand.path = path
        cand.language = fd.language
        if not fd.hunks:
            dropped.append(Dropped(cand, "anchor", "file has no hunks"))
            continue
        quote = _quote_lines(cand.quoted_code)
        placed: tuple[Side, int, Hunk] | None = None
        hunk = fd.hunk_for(line, side) if line is not None else None  # None: GitHub rejects it
        if line is not None and hunk is not None:
            placed = (side, line, hunk)
            # Off-by-a-few: the line is in the diff but the quoted code is elsewhere in the same hunk.
            if quote and not _matches(_line_text(hunk, line, side), quote):
                moved = _search(quote, [hunk], line)
                if moved is not None and (moved[0], moved[1]) != (side, line):
                    placed = moved
        else:
            order = sorted(fd.hunks, key=lambda h: _hunk_distance(h, line or 0, side))
            placed = _search(quote, order[:1], line) or _search(quote, order, line)
            if placed is None:
                reason = "line outside the diff" if line is not None else "no line"
                dropped.append(Dropped(cand, "anchor", reason))
                continue
        new_side, new_line, hunk = placed
        if end_line is not None and line is not None and new_line != line:
            # keep the range's length when moved on the same side; across sides it means nothing
            end_line = end_line + (new_line - line) if new_side == side else None
        cand.side, cand.line = new_side, new_line
        if end_line is not None and not fd.accepts_range(new_line, end_line, new_side):
            end_line = None
        cand.end_line = end_line
        if cand.side == "LEFT":
            cand.suggestion = None  # suggestions replace new-file lines only
        cand.hunk_size = len(hunk.lines)
        cand.on_added_line = new_side == "RIGHT" and any(
            ln.kind == "added" and ln.new_no == new_line for ln in hunk.lines
        )
        cand.quote_verified = _matches(_line_text(hunk, new_line, new_side), quote) if quote else None
        kept.append(cand)
    return kept, dropped
