"""The LLM's reply read back into findings: tolerant JSON, one validation per finding.

Pure: text in, data out. Models slip (trailing commas, prose around the JSON, fenced blocks,
severities in their own words); each slip is repaired or the finding is rejected with a reason,
never raised.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from reviewbot.core.vocabulary import normalise_category, normalise_severity


def _strip_trailing_commas(text: str) -> str:
    """Remove commas directly before } or ] outside strings (a common LLM JSON slip)."""
    out: list[str] = []
    in_str = escape = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_str:
            out.append(ch)
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            out.append(ch)
        elif ch == ",":
            j = i + 1
            while j < len(text) and text[j] in " \t\r\n":
                j += 1
            if j < len(text) and text[j] in "}]":
                i += 1
                continue
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


_FENCE_LANG = re.compile(r"[ \t]*([A-Za-z0-9_-]*)")


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each ```lang ... ``` block, leftmost first, in one pass: the regex
    `'```[ \\t]*(lang)[^\\n]*\\n(.*?)```'` it replaces was quadratic on a flood of backticks."""
    blocks: list[tuple[str, str]] = []
    pos = 0
    while (start := text.find("```", pos)) != -1:
        newline = text.find("\n", start + 3)
        if newline == -1:
            break  # no opening line ends after here
        end = text.find("```", newline + 1)
        if end == -1:
            break  # nothing after here closes
        lang = _FENCE_LANG.match(text, start + 3, newline)
        blocks.append((lang.group(1) if lang else "", text[newline + 1 : end]))
        pos = end + 3
    return blocks


def _loads_lenient(text: str) -> tuple[Any, bool]:
    """(value, ok): JSON anywhere in `text` — whole, fenced, or embedded in prose."""
    decoder = json.JSONDecoder()
    candidates: list[str] = [text]
    fences = _fenced_blocks(text)
    candidates += [body for lang, body in fences if lang.lower() in ("json", "")]
    candidates += [body for lang, body in fences if lang.lower() not in ("json", "")]
    for cand in candidates:
        try:
            return json.loads(cand), True
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python allows
            pass
        stripped = _strip_trailing_commas(cand)
        if stripped != cand:
            try:
                return json.loads(stripped), True
            except (ValueError, RecursionError):
                pass
    # JSON embedded in prose: try each { or [ as a start and decode the longest value from there.
    # Bounded: every failed attempt costs O(position) (the error locates itself), so a reply that
    # is a flood of brackets would otherwise take quadratic time.
    cleaned = _strip_trailing_commas(text)
    for n, m in enumerate(re.finditer(r"[\[{]", cleaned)):
        if n >= _MAX_JSON_STARTS:
            break
        try:
            value, _end = decoder.raw_decode(cleaned, m.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict | list) and value:
            return value, True
    return None, False


#: How many '{' / '[' positions of a prose reply are tried as the start of its JSON.
_MAX_JSON_STARTS = 200


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*[LR]?(\d+)\s*", value)
        if m:
            return int(m.group(1))
    return None


def validate_finding(item: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """One raw finding -> (normalised dict or None when unusable, problems)."""
    problems: list[str] = []
    if not isinstance(item, dict):
        return None, [f"not an object: {type(item).__name__}"]
    path = item.get("path") or item.get("file") or item.get("filename")
    if not isinstance(path, str) or not path.strip():
        return None, ["missing path"]
    line = _as_int(item.get("line", item.get("start_line")))
    if line is None or line < 1:
        return None, [f"invalid line {item.get('line')!r}"]
    end_line = item.get("end_line")
    end = _as_int(end_line) if end_line is not None else None
    if end_line is not None and end is None:
        problems.append(f"invalid end_line {end_line!r} ignored")
    side_raw = item.get("side", "RIGHT")
    side = side_raw.strip().upper() if isinstance(side_raw, str) else "RIGHT"
    if side not in ("RIGHT", "LEFT"):
        problems.append(f"unknown side {side_raw!r}, using RIGHT")
        side = "RIGHT"
    severity = normalise_severity(item.get("severity"))
    if severity is None:
        return None, [f"unknown severity {item.get('severity')!r}"]
    if severity != item.get("severity"):
        problems.append(f"severity {item.get('severity')!r} mapped to {severity!r}")
    category = normalise_category(item.get("category"))
    if category is None:
        return None, [f"unknown category {item.get('category')!r}"]
    if category != item.get("category"):
        problems.append(f"category {item.get('category')!r} mapped to {category!r}")
    conf_raw = item.get("confidence")
    confidence: float | None = None
    if isinstance(conf_raw, int | float) and not isinstance(conf_raw, bool):
        confidence = float(conf_raw)
    elif isinstance(conf_raw, str):
        try:
            confidence = float(conf_raw.strip().rstrip("%")) / (100 if conf_raw.strip().endswith("%") else 1)
        except ValueError:
            confidence = None
    if confidence is not None and 1 < confidence <= 100:
        confidence /= 100  # a percentage
    if confidence is not None and not 0 <= confidence <= 1:
        problems.append(f"confidence {conf_raw!r} out of range, clamped")
        confidence = min(1.0, max(0.0, confidence))
    if conf_raw is not None and confidence is None:
        problems.append(f"invalid confidence {conf_raw!r} ignored")
    title = item["title"] if isinstance(item.get("title"), str) else ""
    body = item["body"] if isinstance(item.get("body"), str) else ""
    if not body.strip() and not title.strip():
        return None, ["no title or body"]
    if not title.strip():
        first = re.split(r"(?<=[.!?])\s", body.strip(), maxsplit=1)[0]
        title = first[:100]
    suggestion = item.get("suggestion")
    if not isinstance(suggestion, str) or not suggestion.strip():
        suggestion = None
    quoted = item.get("quoted_code")
    if not isinstance(quoted, str) or not quoted.strip():
        quoted = None
    return (
        {
            "path": path.strip(),
            "line": line,
            "end_line": end,
            "side": side,
            "severity": severity,
            "category": category,
            "confidence": confidence,
            "title": title.strip(),
            "body": body.strip(),
            "suggestion": suggestion,
            "quoted_code": quoted,
        },
        problems,
    )


@dataclass(slots=True)
class ParsedReply:
    """parse_reply's detailed result: valid findings, problems, and the items rejected (with why)."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rejected: list[tuple[Any, str]] = field(default_factory=list)  # (raw item, stable reason)


def parse_reply_detailed(text: str) -> ParsedReply:
    """Like parse_reply, but keeps the rejected raw items so callers can record them as drops."""
    out = ParsedReply()
    if not isinstance(text, str) or not text.strip():
        out.problems.append("reply is not JSON: empty reply")
        return out
    value, ok = _loads_lenient(text)
    if not ok:
        snippet = " ".join(text.split())[:120]
        out.problems.append(f"reply is not JSON: {snippet!r}")
        return out
    if isinstance(value, dict):
        if isinstance(value.get("findings"), list):
            items = value["findings"]
        elif "path" in value and "line" in value:
            items = [value]
        elif value.get("findings") is None and "findings" in value:
            items = []
        else:
            out.problems.append(f"reply JSON has no 'findings' list (keys: {', '.join(map(str, value))})")
            return out
    elif isinstance(value, list):
        items = value
    else:
        out.problems.append(f"reply JSON is a {type(value).__name__}, not an object with 'findings'")
        return out
    for n, item in enumerate(items):
        finding, problems = validate_finding(item)
        if finding is None:
            detail = problems[0] if problems else "invalid finding"
            out.rejected.append((item, reject_reason(detail)))
            out.problems.append(f"finding {n} dropped: {detail}")
        else:
            out.findings.append(finding)
            out.problems.extend(f"finding {n}: {p}" for p in problems)
    return out


def parse_reply(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """LLM reply text -> (validated raw findings, problems). Never raises on garbage.

    Accepts pure JSON, JSON in ```json fences, JSON surrounded by prose, a top-level list instead
    of {"findings": [...]}, and trailing commas. Items with a missing path/line, an unknown
    severity or category (after mapping common synonyms) or no text are dropped with a reason.
    """
    parsed = parse_reply_detailed(text)
    return parsed.findings, parsed.problems


#: Stable reasons validate_finding rejects an item for (the start of its problem message).
REJECT_REASONS: tuple[str, ...] = (
    "not an object",
    "missing path",
    "invalid line",
    "unknown severity",
    "unknown category",
    "no title or body",
)


def reject_reason(problem: str) -> str:
    """The stable funnel key of a rejection message ('unknown severity' for "unknown severity 'x'")."""
    return next((r for r in REJECT_REASONS if problem.startswith(r)), "invalid finding")
