"""An LLM reply turned into candidates: parse, validate, anchor to the diff (pure apart from logs).

The LLM client only returns replies; the pipeline (and the benches) turn each into candidates here,
once. A reply cut at the output limit can be repaired: the findings written out completely before
the cut are kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from reviewbot.core.domain import Candidate, Dropped, FileDiff
from reviewbot.review.anchor import anchor_candidates
from reviewbot.review.prompt import PromptRequest
from reviewbot.review.reply_parse import parse_reply_detailed

log = logging.getLogger("reviewbot.adapters.llm")


def repair_truncated(text: str) -> tuple[str, int] | None:
    """(JSON of the complete findings before the cut, how many) for a reply cut mid-array, or None.

    Only whole finding objects are kept: a half-written one could point at the wrong line.
    """
    start = text.find('"findings"')
    if start < 0:
        return None
    bracket = text.find("[", start)
    if bracket < 0:
        return None
    decoder = json.JSONDecoder()
    items: list[Any] = []
    pos = bracket + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] != "{":
            break
        try:
            item, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        items.append(item)
    return json.dumps({"findings": items}), len(items)


def candidates_from_reply(
    text: str,
    request: PromptRequest,
    files: Mapping[str, FileDiff],
    *,
    source: str,
    prefix: str,
    label: str = "request",
) -> tuple[list[Candidate], list[Dropped], list[str]]:
    """Parse one reply and anchor its findings to the diff.

    Returns (candidates on valid diff positions, dropped ones with reasons, problems).
    """
    problems: list[str] = []
    parsed = parse_reply_detailed(text)
    for problem in parsed.problems:
        log.warning("LLM %s: %s", label, problem)
        problems.append(f"{label}: {problem}")
    dropped = [
        Dropped(
            Candidate(
                id=f"{prefix}:invalid:{n}",
                path=_str(item, "path"),
                line=None,
                body=_str(item, "body") or "",
                title=_str(item, "title") or "",
                source=source,
            ),
            "parse",
            reason,
        )
        for n, (item, reason) in enumerate(parsed.rejected)
    ]
    cands, drops = anchor_candidates(parsed.findings, files, source=source, id_prefix=prefix)
    in_request = set(request.paths)
    kept: list[Candidate] = []
    for cand in cands:
        if in_request and cand.path not in in_request:
            drops.append(Dropped(cand, "anchor", "path not in this request"))
            continue
        raw = parsed.findings[int(cand.id.rsplit(":", 1)[1])]
        if (cand.line, cand.side) != (raw.get("line"), raw.get("side")):
            log.info(
                "LLM %s: candidate %s re-anchored from %s:%s %s to line %s %s by its quoted code",
                label,
                cand.id,
                raw.get("path"),
                raw.get("line"),
                raw.get("side"),
                cand.line,
                cand.side,
            )
        kept.append(cand)
    for drop in drops:
        c = drop.candidate
        log.warning(
            "LLM %s: dropped candidate %s (%s:%s %s, quoted %r): %s",
            label,
            c.id,
            c.path,
            c.line,
            c.side,
            (c.quoted_code or "")[:60],
            drop.reason,
        )
    return kept, dropped + drops, problems


def _str(item: Any, key: str) -> str | None:
    value = item.get(key) if isinstance(item, dict) else None
    return value if isinstance(value, str) else None
