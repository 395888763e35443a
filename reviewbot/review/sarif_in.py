"""A team's own linters as candidate sources: SARIF (and check-run annotations) -> Candidates.

ruff, eslint, semgrep, golangci-lint and most other tools write SARIF 2.1.0. Their findings enter
the review as candidates like the rules' and the LLM's, so the same severity, dedup and acceptance
model decide what is posted: a team's existing tools get the noise filter too.

Pure: text or JSON in, candidates out. `anchor` keeps only findings on lines the change adds (a
linter reports the whole file; what was there before is not this PR's business) and says why
every other finding was dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from reviewbot.core.domain import CATEGORIES, Candidate, Dropped, FileDiff

#: SARIF `level` -> our severity, when the tool gives no `security-severity`.
LEVEL_SEVERITY: dict[str, str] = {"error": "high", "warning": "medium", "note": "low", "none": "nit"}
#: Check-run annotation level -> SARIF level.
ANNOTATION_LEVEL: dict[str, str] = {"failure": "error", "warning": "warning", "notice": "note"}
#: Results of these kinds are not problems (SARIF 3.27.9): a passed check, not applicable, info.
_NOT_PROBLEMS = frozenset({"pass", "notApplicable", "informational"})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class SarifError(ValueError):
    """The text is not a SARIF log we can read (not JSON, no `runs`)."""


@dataclass(slots=True)
class Imported:
    """The candidates one SARIF log yields, and the results skipped on reading, with why."""

    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)


def tool_slug(name: str) -> str:
    """A tool name as a source/rule-id prefix: 'Semgrep OSS' -> 'semgrep-oss'."""
    return _SAFE_NAME.sub("-", name.strip().lower()).strip("-") or "sarif"


def severity_for(level: str | None, security_severity: Any = None) -> str:
    """Our severity for a SARIF result: GitHub's `security-severity` (a CVSS score) when present,
    else the result's level (error high, warning medium, note low, none nit)."""
    try:
        score = float(security_severity) if security_severity is not None else None
    except (TypeError, ValueError):
        score = None
    if score is not None:
        if score >= 9.0:
            return "critical"
        if score >= 7.0:
            return "high"
        if score >= 4.0:
            return "medium"
        return "low"
    return LEVEL_SEVERITY.get((level or "warning").lower(), "medium")


_SECURITY_WORDS = re.compile(r"\b(?:security|insecure|vulnerab\w*|inject\w*|cwe-\d+)\b", re.IGNORECASE)


def _category(tags: Iterable[Any], security: bool, text: str = "") -> str | None:
    """A security finding by its tags, its security-severity or its own words ('security issue',
    'insecure'); another category only when a tag names it."""
    words = {str(t).strip().lower() for t in tags}
    if security or "security" in words or any(w.startswith(("cwe-", "external/cwe")) for w in words):
        return "security"
    if _SECURITY_WORDS.search(text):
        return "security"
    for cat in CATEGORIES:
        if cat in words:
            return cat
    return None  # left to the severity stage's classifier, from the text


def _text(message: Any, rule: Mapping[str, Any]) -> str:
    if isinstance(message, Mapping):
        text = message.get("text") or message.get("markdown")
        if isinstance(text, str) and text.strip():
            args = message.get("arguments") or []
            for i, arg in enumerate(args if isinstance(args, list) else []):
                text = text.replace("{" + str(i) + "}", str(arg))
            return text.strip()
        msg_id = message.get("id")
        strings = rule.get("messageStrings") or {}
        if isinstance(msg_id, str) and isinstance(strings.get(msg_id), Mapping):
            return str(strings[msg_id].get("text") or "").strip()
    for key in ("fullDescription", "shortDescription"):
        desc = rule.get(key)
        if isinstance(desc, Mapping) and desc.get("text"):
            return str(desc["text"]).strip()
    return ""


def _uri(location: Mapping[str, Any], bases: Mapping[str, str]) -> str | None:
    art = ((location.get("physicalLocation") or {}).get("artifactLocation")) or {}
    uri = art.get("uri")
    if not isinstance(uri, str) or not uri:
        return None
    base = art.get("uriBaseId")
    if isinstance(base, str) and base in bases and not urlparse(uri).scheme:
        uri = bases[base].rstrip("/") + "/" + uri.lstrip("/")
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return unquote(uri)


def _bases(run: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, loc in (run.get("originalUriBaseIds") or {}).items():
        if isinstance(loc, Mapping) and isinstance(loc.get("uri"), str):
            out[str(name)] = loc["uri"]
    return out


def _rules(run: Mapping[str, Any]) -> tuple[dict[str, Mapping[str, Any]], list[Mapping[str, Any]]]:
    driver = (run.get("tool") or {}).get("driver") or {}
    listed = [r for r in driver.get("rules") or [] if isinstance(r, Mapping)]
    for ext in (run.get("tool") or {}).get("extensions") or []:
        if isinstance(ext, Mapping):
            listed.extend(r for r in ext.get("rules") or [] if isinstance(r, Mapping))
    return {str(r.get("id")): r for r in listed if r.get("id")}, listed


def parse_sarif(text: str | bytes, *, origin: str = "sarif") -> Imported:
    """Every problem result of every run of a SARIF log, as candidates (not yet anchored).

    A result's source is `sarif:<tool>` and its rule id `<tool>/<ruleId>`, so the acceptance model
    learns per tool and per rule, and `rules.disable` / `rules.severity` apply to them. Results the
    tool itself marks as suppressed, absent from the baseline, or not a problem are skipped.
    """
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SarifError(f"{origin}: not JSON ({exc})") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("runs"), list):
        raise SarifError(f"{origin}: not a SARIF log (no 'runs' list)")
    out = Imported()
    for run_no, run in enumerate(doc["runs"]):
        if not isinstance(run, Mapping):
            continue
        driver = (run.get("tool") or {}).get("driver") or {}
        tool = tool_slug(str(driver.get("name") or "sarif"))
        by_id, listed = _rules(run)
        bases = _bases(run)
        results = [r for r in run.get("results") or [] if isinstance(r, Mapping)]
        graded = _grades(listed, results)
        for n, res in enumerate(results):
            cand, why = _candidate(res, tool, by_id, listed, bases, f"sarif:{tool}:{run_no}.{n}")
            if cand is None:
                out.skipped.append((f"{tool} result {n}", why))
                continue
            if not graded and cand.category != "security":
                # The tool gives every rule one level (ruff: all "error"): the level says nothing,
                # so the severity stage grades the finding from its text, as it does the LLM's.
                cand.severity = None
            out.candidates.append(cand)
    return out


def _grades(rules: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a run's levels carry information: its rules (or results) use more than one level,
    or it scores security severity. A run with one rule is taken at its word."""
    levels = {str((r.get("defaultConfiguration") or {}).get("level") or "warning") for r in rules}
    levels |= {str(r["level"]) for r in results if r.get("level")}
    scored = any("security-severity" in (r.get("properties") or {}) for r in [*rules, *results])
    return scored or len(levels) > 1 or len(rules) <= 1


def _candidate(
    res: Mapping[str, Any],
    tool: str,
    by_id: Mapping[str, Mapping[str, Any]],
    listed: Sequence[Mapping[str, Any]],
    bases: Mapping[str, str],
    cand_id: str,
) -> tuple[Candidate | None, str]:
    if res.get("kind") in _NOT_PROBLEMS:
        return None, f"kind {res.get('kind')}: not a problem"
    if res.get("baselineState") == "absent":
        return None, "absent from the baseline (fixed)"
    if any(
        isinstance(s, Mapping) and s.get("status", "accepted") == "accepted"
        for s in res.get("suppressions") or []
    ):
        return None, "suppressed in the source"
    rule_id = res.get("ruleId") or (res.get("rule") or {}).get("id")
    rule: Mapping[str, Any] = by_id.get(str(rule_id), {}) if rule_id else {}
    index = res.get("ruleIndex", (res.get("rule") or {}).get("index"))
    if not rule and isinstance(index, int) and 0 <= index < len(listed):
        rule = listed[index]
        rule_id = rule_id or rule.get("id")
    locations = res.get("locations") or []
    if not locations or not isinstance(locations[0], Mapping):
        return None, "no location"
    path = _uri(locations[0], bases)
    region = (locations[0].get("physicalLocation") or {}).get("region") or {}
    line = region.get("startLine")
    if path is None or not isinstance(line, int):
        return None, "no file or line"
    end = region.get("endLine")
    props = {**(rule.get("properties") or {}), **(res.get("properties") or {})}
    level = res.get("level") or (rule.get("defaultConfiguration") or {}).get("level")
    security_severity = props.get("security-severity")
    body = _text(res.get("message"), rule)
    if not body:
        return None, "no message"
    name = str(rule_id or "result")
    title = f"{tool} {name}"  # (a rule's short description is generic, the message is specific)
    snippet = (region.get("snippet") or {}).get("text")
    return Candidate(
        id=cand_id,
        path=path,
        line=line,
        end_line=end if isinstance(end, int) and end > line else None,
        body=body,
        title=title[:200],
        severity=severity_for(level, security_severity),
        category=_category(props.get("tags") or [], security_severity is not None, body),
        quoted_code=snippet if isinstance(snippet, str) and snippet.strip() else None,
        source=f"sarif:{tool}",
        rule_id=f"{tool}/{name}",
    ), ""


def from_annotations(annotations: Iterable[Mapping[str, Any]], *, check_name: str) -> Imported:
    """Check-run annotations (what linters in Actions emit) as candidates: the same shape as SARIF
    results, source `sarif:<check name>`, rule id from the annotation title when it has one."""
    tool = tool_slug(check_name)
    out = Imported()
    annotations = list(annotations)
    levels = {str(a.get("annotation_level") or "warning") for a in annotations}
    titles = {str(a.get("title") or "") for a in annotations}
    graded = len(levels) > 1 or len(titles) <= 1  # one level for many rules says nothing
    for n, ann in enumerate(annotations):
        path, line = ann.get("path"), ann.get("start_line")
        message = str(ann.get("message") or "").strip()
        if not isinstance(path, str) or not isinstance(line, int) or not message:
            out.skipped.append((f"{tool} annotation {n}", "no file, line or message"))
            continue
        level = ANNOTATION_LEVEL.get(str(ann.get("annotation_level") or "warning"), "warning")
        title = str(ann.get("title") or "").strip()
        end = ann.get("end_line")
        out.candidates.append(
            Candidate(
                id=f"sarif:{tool}:a{n}",
                path=path,
                line=line,
                end_line=end if isinstance(end, int) and end > line else None,
                body=message,
                title=f"{tool} {title}".strip()[:200],
                severity=severity_for(level),
                category=_category([], False, message),
                source=f"sarif:{tool}",
                rule_id=f"{tool}/{_SAFE_NAME.sub('-', title)[:80] or 'annotation'}",
            )
        )
        if not graded and out.candidates[-1].category != "security":
            out.candidates[-1].severity = None
    return out


# --------------------------------------------------------------------------------------- anchoring


def _repo_path(path: str, known: Iterable[str]) -> str | None:
    """The diff path a tool's path names: itself, or the longest diff path it ends with at a '/'
    (tools write absolute paths from wherever they ran: /home/runner/work/x/x/src/a.py)."""
    clean = path.replace("\\", "/")
    while clean.startswith("./"):
        clean = clean[2:]
    known = list(known)
    if clean in known:
        return clean
    hits = [k for k in known if clean.endswith("/" + k)]
    return max(hits, key=len) if hits else None


def anchor(
    candidates: Iterable[Candidate],
    files: Mapping[str, FileDiff],
    *,
    not_reviewed: Mapping[str, str] | None = None,
    rule_enabled: Any = None,
    severity_override: Mapping[str, str] | None = None,
) -> tuple[list[Candidate], list[Dropped]]:
    """Imported candidates placed on the change: each kept one sits on a line the change adds
    (moved to the first added line of its range when its first line is context). Every other one
    is dropped with a reason. `rule_enabled(rule_id)` and `severity_override` are the repo's
    `rules.disable` / `rules.severity`, which name imported rules as `<tool>/<ruleId>`."""
    kept: list[Candidate] = []
    dropped: list[Dropped] = []
    skipped = dict(not_reviewed or {})
    overrides = dict(severity_override or {})
    for cand in map(replace, candidates):  # a copy: the caller's candidates stay as read
        if rule_enabled is not None and cand.rule_id and not rule_enabled(cand.rule_id):
            dropped.append(Dropped(cand, "sarif", "rule disabled by rules.disable"))
            continue
        path = _repo_path(cand.path or "", [*files, *skipped])
        if path is None:
            dropped.append(Dropped(cand, "sarif", "file not changed by this change"))
            continue
        cand.path = path
        if path not in files:
            dropped.append(Dropped(cand, "sarif", f"file not reviewed: {skipped.get(path, 'excluded')}"))
            continue
        file = files[path]
        added = file.added_line_numbers()
        start = cand.line or 0
        span = range(start, max(cand.end_line or start, start) + 1)
        on = [ln for ln in span if ln in added]
        if not on:
            dropped.append(Dropped(cand, "sarif", "not on a line this change adds (pre-existing)"))
            continue
        cand.line = on[0]
        last = on[-1]
        cand.end_line = last if last > cand.line and file.accepts_range(cand.line, last) else None
        cand.side = "RIGHT"
        if cand.rule_id in overrides:
            cand.severity = overrides[cand.rule_id]
        kept.append(cand)
    return kept, dropped


def read_sarif_files(paths: Iterable[str | Path]) -> Imported:
    """Candidates from SARIF files on disk (`reviewbot review --sarif-in`)."""
    out = Imported()
    for k, p in enumerate(paths):
        try:
            text = Path(p).read_bytes()
        except OSError as exc:
            raise SarifError(f"{p}: cannot read ({exc.strerror})") from None
        one = parse_sarif(text, origin=str(p))
        for cand in one.candidates:
            cand.id = f"{cand.id}@{k}"  # two files of one tool must not share candidate ids
        out.candidates.extend(one.candidates)
        out.skipped.extend(one.skipped)
    return out
