"""Rendering a ReviewResult for people (text), programs (JSON) and code scanning (SARIF 2.1.0)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from reviewbot import __version__
from reviewbot.core.domain import SEVERITIES, Decision, ReviewResult, severity_rank

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "nit": "note"}


def decision_dict(decision: Decision) -> dict[str, Any]:
    cand = decision.candidate
    return {
        "id": cand.id,
        "path": cand.path,
        "line": cand.line,
        "end_line": cand.end_line,
        "side": cand.side,
        "severity": decision.severity,
        "category": decision.category,
        "title": cand.title,
        "body": cand.body,
        "suggestion": cand.suggestion,
        "source": cand.source,
        "rule_id": cand.rule_id,
        "score": round(decision.score, 4),
        "decision": decision.decision,
        "reason": decision.reason,
        "cluster": decision.cluster,
        "fingerprint": decision.fingerprint,
        "explore": decision.explore,
        "verdict": cand.verdict,
        "verify_probability": cand.verify_probability,
    }


def to_json(result: ReviewResult, *, include_suppressed: bool = True) -> str:
    doc: dict[str, Any] = {
        "findings": [decision_dict(d) for d in result.posted],
        "funnel": result.funnel.as_dict(),
        "files_not_reviewed": result.files_not_reviewed,
        "usage": {
            "requests": result.usage.requests,
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "errors": result.usage.errors,
            "stopped_by": result.usage.stopped_by,  # the operator's cap that held requests back
        },
        "notes": result.notes,
        "silence": result.silence,
    }
    if include_suppressed:
        doc["suppressed"] = [decision_dict(d) for d in result.suppressed]
        doc["dropped"] = [
            {
                "id": d.candidate.id,
                "path": d.candidate.path,
                "line": d.candidate.line,
                "stage": d.stage,
                "reason": d.reason,
            }
            for d in result.dropped
        ]
    return json.dumps(doc, indent=2, sort_keys=False)


def to_sarif(result: ReviewResult) -> str:
    """SARIF 2.1.0 that GitHub code scanning accepts: one run, one rule per rule id / category."""
    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    for decision in result.posted:
        cand = decision.candidate
        rule_id = cand.rule_id or f"llm/{decision.category}"
        if rule_id not in rules:
            rules[rule_id] = {
                "id": rule_id,
                "name": rule_id.replace("-", " ").replace("/", " "),
                "shortDescription": {"text": cand.title or rule_id},
                "defaultConfiguration": {"level": _SARIF_LEVEL.get(decision.severity, "warning")},
                "properties": {"tags": [decision.category]},
            }
        region: dict[str, Any] = {"startLine": max(cand.line or 1, 1)}
        if cand.end_line and cand.end_line > region["startLine"]:
            region["endLine"] = cand.end_line
        entry: dict[str, Any] = {
            "ruleId": rule_id,
            "level": _SARIF_LEVEL.get(decision.severity, "warning"),
            "message": {"text": f"{cand.title}\n\n{cand.body}".strip() if cand.title else cand.body},
            "locations": [
                {"physicalLocation": {"artifactLocation": {"uri": cand.path or ""}, "region": region}}
            ],
            "partialFingerprints": {"reviewbot/v1": decision.fingerprint},
            "properties": {"severity": decision.severity, "score": round(decision.score, 4)},
        }
        results.append(entry)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "reviewbot",
                        "version": __version__,
                        "informationUri": "https://github.com/reviewbot/reviewbot",
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2)


#: Up to this many files not reviewed are listed one per line; more are counted per reason.
LIST_NOT_REVIEWED_MAX = 10


def to_text(result: ReviewResult, *, scope: str | None = None, verbose: bool = False) -> str:
    """A terminal report: what was reviewed (`scope`), each finding as file:line, severity, title,
    body; then the funnel. It stays one screen for a large range: the files not reviewed are
    counted per reason unless there are few of them or `verbose` asks for the list."""
    lines: list[str] = []
    if scope:
        lines += [f"Reviewed {scope}", ""]
    ordered = sorted(
        result.posted,
        key=lambda d: (d.candidate.path or "", d.candidate.line or 0, severity_rank(d.severity)),
    )
    for decision in ordered:
        cand = decision.candidate
        where = f"{cand.path}:{cand.line}" + (f"-{cand.end_line}" if cand.end_line else "")
        lines.append(f"{where}  [{decision.severity}/{decision.category}]  {cand.title or cand.body[:80]}")
        for body_line in cand.body.strip().splitlines():
            lines.append(f"    {body_line}")
        if cand.suggestion:
            lines.append("    suggestion:")
            lines.extend(f"      {s}" for s in cand.suggestion.splitlines())
        lines.append(f"    ({cand.source}, score {decision.score:.2f})")
        lines.append("")
    if not ordered:
        lines.append("No findings worth posting.")
        if result.silence:
            lines.append(result.silence)
        lines.append("")
    funnel = result.funnel
    lines.append(f"Funnel: {funnel.candidates} candidates -> {funnel.posted} posted")
    for reason, count in sorted(funnel.dropped.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {count:>4}  {reason}")
    by_severity = {s: sum(1 for d in result.posted if d.severity == s) for s in SEVERITIES}
    if any(by_severity.values()):
        lines.append("Posted by severity: " + ", ".join(f"{s} {n}" for s, n in by_severity.items() if n))
    lines.extend(_not_reviewed(result.files_not_reviewed, verbose=verbose))
    if result.usage.requests:
        lines.append(
            f"LLM: {result.usage.requests} requests, {result.usage.prompt_tokens} prompt + "
            f"{result.usage.completion_tokens} completion tokens, {result.usage.errors} errors"
        )
    lines.extend(f"Note: {n}" for n in result.notes)
    return "\n".join(lines).rstrip() + "\n"


def _not_reviewed(files: dict[str, str], *, verbose: bool) -> list[str]:
    if not files:
        return []
    if verbose or len(files) <= LIST_NOT_REVIEWED_MAX:
        return ["Files not reviewed:", *(f"  {path}: {why}" for path, why in sorted(files.items()))]
    per_reason = Counter(files.values())
    out = [f"Files not reviewed: {len(files)} (-v lists them)"]
    out += [f"  {n:>4}  {why}" for why, n in sorted(per_reason.items(), key=lambda kv: (-kv[1], kv[0]))]
    return out
