"""`reviewbot filter`: replay the noise filter offline on JSONL candidates and history.

The I/O edge of the filter: it parses and validates JSONL, trains each repo's model from the
history (backed by its org's layer and the shipped prior), runs `filter_review` per review
(same repo and pr) and prints one JSON object per candidate in input order.
"""

from __future__ import annotations

import gc
import json
import json.scanner
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import typer

from reviewbot.core.domain import Candidate, Verdict

if TYPE_CHECKING:
    from reviewbot.filter.acceptance import AcceptanceModel, HistoryRow
    from reviewbot.filter.noise import FilterSettings

# The filter's modules (numpy, scipy, scikit-learn) are imported where the filter runs, so
# `reviewbot --help`, `reviewbot filter --help` and a bad-input error start fast.


class InputError(ValueError):
    """A JSONL line that does not follow the contract; carries its line number."""

    def __init__(self, line_no: int, message: str) -> None:
        super().__init__(f"line {line_no}: {message}")
        self.line_no = line_no


def _opt(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], line_no: int) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(line_no, f"field {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


#: The contract's optional fields and the JSON types each accepts (a bool is never a number).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "pr": (int,),
    "path": (str,),
    "line": (int,),
    "end_line": (int,),
    "title": (str,),
    "severity": (str,),
    "category": (str,),
    "confidence": (int, float),
    "source": (str,),
    "rule_id": (str,),
    "symbol": (str,),
    "language": (str,),
    "hunk_size": (int,),
    "rank": (int,),
    "reply_size": (int,),
    "on_added_line": (bool,),
    "quote_verified": (bool,),
    "verdict": (str,),
    "verify_probability": (int, float),
}
_VERDICTS = frozenset(get_args(Verdict))


def parse_candidate(obj: Any, line_no: int) -> Candidate:
    """One contract object -> Candidate; raises InputError naming the bad field."""
    fast = _valid_candidate(obj) if type(obj) is dict else None
    return fast if fast is not None else _checked_candidate(obj, line_no)


def _valid_candidate(obj: dict[str, Any]) -> Candidate | None:
    """The Candidate of a valid object, looking only at the keys it has; None when anything is
    off, and then `_checked_candidate` names the first bad field. Why: checking every optional
    field by name was most of the parse of a 100,000-row history, where nearly all are absent."""
    cid, repo, body = obj.get("id"), obj.get("repo"), obj.get("body")
    if type(cid) is not str or not cid or type(repo) is not str or not repo or type(body) is not str:
        return None
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        kinds = _FIELD_TYPES.get(key)
        if kinds is None or value is None:
            continue
        if type(value) not in kinds:
            return None
        fields[key] = value
    for key in ("confidence", "verify_probability"):
        value = fields.get(key)
        if value is not None:
            if not 0 <= value <= 1:
                return None
            fields[key] = float(value)
    if fields.get("verdict", "unsure") not in _VERDICTS:
        return None
    fields["source"] = fields.get("source") or "unknown"
    fields["title"] = fields.get("title") or ""
    path, line = fields.pop("path", None), fields.pop("line", None)
    return Candidate(id=cid, repo=repo, path=path, line=line, body=body, **fields)


def _checked_candidate(obj: Any, line_no: int) -> Candidate:
    """`parse_candidate` field by field, in the contract's order: the first bad field named."""
    if not isinstance(obj, dict):
        raise InputError(line_no, "expected a JSON object")
    cid = obj.get("id")
    if not isinstance(cid, str) or not cid:
        raise InputError(line_no, "field 'id' must be a non-empty string")
    repo = obj.get("repo")
    if not isinstance(repo, str) or not repo:
        raise InputError(line_no, "field 'repo' must be a string like 'owner/name'")
    body = obj.get("body")
    if not isinstance(body, str):
        raise InputError(line_no, "field 'body' must be a string")
    confidence = _opt(obj, "confidence", (int, float), line_no)
    if confidence is not None and not 0 <= confidence <= 1:
        raise InputError(line_no, f"field 'confidence' must be in [0, 1], got {confidence!r}")
    severity = _opt(obj, "severity", str, line_no)
    category = _opt(obj, "category", str, line_no)
    source = _opt(obj, "source", str, line_no)
    return Candidate(
        id=cid,
        repo=repo,
        pr=_opt(obj, "pr", int, line_no),
        path=_opt(obj, "path", str, line_no),
        line=_opt(obj, "line", int, line_no),
        end_line=_opt(obj, "end_line", int, line_no),
        body=body,
        title=_opt(obj, "title", str, line_no) or "",
        severity=severity,
        category=category,
        confidence=None if confidence is None else float(confidence),
        source=source or "unknown",
        rule_id=_opt(obj, "rule_id", str, line_no),
        symbol=_opt(obj, "symbol", str, line_no),
        language=_opt(obj, "language", str, line_no),
        hunk_size=_opt(obj, "hunk_size", int, line_no),
        rank=_opt(obj, "rank", int, line_no),
        reply_size=_opt(obj, "reply_size", int, line_no),
        on_added_line=_opt_bool(obj, "on_added_line", line_no),
        quote_verified=_opt_bool(obj, "quote_verified", line_no),
        verdict=_verdict(obj, line_no),
        verify_probability=_probability(obj, "verify_probability", line_no),
    )


def _opt_bool(obj: dict[str, Any], key: str, line_no: int) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InputError(line_no, f"field {key!r} must be true or false, got {value!r}")


def _verdict(obj: dict[str, Any], line_no: int) -> Verdict | None:
    value = _opt(obj, "verdict", str, line_no)
    if value is None:
        return None
    if value in _VERDICTS:
        return value  # one of Verdict's values
    raise InputError(line_no, f"field 'verdict' must be confirmed, refuted or unsure, got {value!r}")


def _probability(obj: dict[str, Any], key: str, line_no: int) -> float | None:
    value = _opt(obj, key, (int, float), line_no)
    if value is not None and not 0 <= value <= 1:
        raise InputError(line_no, f"field {key!r} must be in [0, 1], got {value!r}")
    return None if value is None else float(value)


def parse_history_row(obj: Any, line_no: int) -> HistoryRow:
    from reviewbot.filter.acceptance import HistoryRow

    cand = parse_candidate(obj, line_no)
    outcome = obj.get("outcome")
    if outcome not in ("accepted", "dismissed"):
        raise InputError(line_no, f"field 'outcome' must be 'accepted' or 'dismissed', got {outcome!r}")
    at = obj.get("at")
    return HistoryRow(cand, outcome == "accepted", "" if at is None else str(at))


@dataclass(slots=True)
class Parsed:
    items: list[Any]
    errors: list[str]


#: json's own scanner, called directly: what json.loads runs after its Python checks (type, BOM,
#: whitespace each side), which cost about a microsecond a line of a 100,000-line history.
_scan_value = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed: its context


def _loads(line: str) -> Any:
    """json.loads(line): the scanner's value when it reads the whole line from its first
    character; anything else (leading or trailing space, a BOM, an error) goes to json.loads,
    which gives the same value or the same error."""
    try:
        obj, end = _scan_value(line, 0)
    except (StopIteration, ValueError):
        return json.loads(line)
    return obj if end == len(line) else json.loads(line)


def parse_jsonl(text: str, parse: Any) -> Parsed:
    """Parse every line, collecting all errors (so one run reports every bad line)."""
    items: list[Any] = []
    errors: list[str] = []
    seen: set[str] = set()
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = _loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {line_no}: invalid JSON ({exc.msg})")
            continue
        try:
            item = parse(obj, line_no)
        except InputError as exc:
            errors.append(str(exc))
            continue
        cid = item.id if isinstance(item, Candidate) else None
        if cid is not None:
            if cid in seen:
                errors.append(f"line {line_no}: duplicate id {cid!r}")
                continue
            seen.add(cid)
        items.append(item)
    return Parsed(items, errors)


def settings_from_file(path: Path | None) -> FilterSettings:
    """FilterSettings from a repo config YAML through reviewbot.core.config (defaults with no file).

    A replay answers "what would the filter post", so exploration (random extra posts to gather
    labels) is off unless the file sets `exploration_rate` explicitly.
    """
    import yaml

    from reviewbot.core.config import load_config
    from reviewbot.filter.noise import FilterSettings

    text = None if path is None else path.read_text(encoding="utf-8")
    settings = FilterSettings.from_config(load_config(text, filename=str(path or ".reviewbot.yml")))
    raw = yaml.safe_load(text) if text else None
    if not (isinstance(raw, dict) and "exploration_rate" in raw):
        settings = replace(settings, exploration_rate=0.0)
    return settings


def _known_fingerprints(
    history: list[HistoryRow],
    candidates: list[Candidate],
    reviews: dict[tuple[str | None, int | None], list[int]],
) -> tuple[dict[str | None, list[str]], dict[tuple[str | None, int | None], list[str]]]:
    """Fingerprints of the history's dismissed rows (per repo) and posted rows (per review).

    Only rows at a place (repo, path, symbol) some candidate has: a fingerprint matches, exactly
    or fuzzily, only one with the same path and symbol, so the others cannot change a decision,
    and a simhash per row of a 100,000-row history was a quarter of the command's time.
    """
    from reviewbot.filter.dedup import fingerprint

    places = {(c.repo, c.path or "", c.symbol or "") for c in candidates}
    dismissed: dict[str | None, list[str]] = {}
    posted: dict[tuple[str | None, int | None], list[str]] = {}
    for row in history:
        c = row.candidate
        if (c.repo, c.path or "", c.symbol or "") not in places:
            continue
        in_review = c.pr is not None and (c.repo, c.pr) in reviews
        if row.accepted and not in_review:
            continue
        fp = fingerprint(c)
        if not row.accepted:
            dismissed.setdefault(c.repo, []).append(fp)
        if in_review:
            posted.setdefault((c.repo, c.pr), []).append(fp)
    return dismissed, posted


def run_filter(
    candidates: list[Candidate],
    history: list[HistoryRow],
    settings: FilterSettings,
    *,
    prior: AcceptanceModel | None = None,
) -> list[dict[str, Any]]:
    """The whole replay: per-repo models from history, one filter run per review, input order."""
    from reviewbot.filter.acceptance import ModelBank, load_prior
    from reviewbot.filter.noise import decisions_as_rows, filter_review, prepare_history, threshold_for

    history = prepare_history(history, settings.dedup)
    bank = ModelBank(history, prior if prior is not None else load_prior())
    reviews: dict[tuple[str | None, int | None], list[int]] = {}
    for i, c in enumerate(candidates):
        reviews.setdefault((c.repo, c.pr), []).append(i)
    dismissed, posted = _known_fingerprints(history, candidates, reviews)
    rows: list[dict[str, Any] | None] = [None] * len(candidates)
    for (repo, pr), members in reviews.items():
        model = bank.for_repo(repo)
        threshold, origin = threshold_for(model, settings)
        decisions = filter_review(
            [candidates[i] for i in members],
            model=model,
            settings=settings,
            dismissed_fingerprints=dismissed.get(repo, ()),
            posted_fingerprints=posted.get((repo, pr), ()) if pr is not None else (),
        )
        for i, decided in zip(members, decisions_as_rows(decisions), strict=True):
            # which bar it was held to, and why that bar: a replay is never silently silent
            decided["threshold"] = round(threshold, 6)
            decided["threshold_from"] = origin
            rows[i] = decided
    return [r for r in rows if r is not None]


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused: a replay builds a few million small objects (rows,
    words, numbers) that reference counting frees, and each collector pass re-walked every live
    history row (about a tenth of a 100,000-row run). Nothing here builds cycles that matter in
    a process that exits when the replay is done."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def register(app: typer.Typer) -> None:
    @app.command("filter")
    def filter_command(
        candidates: Path = typer.Argument(..., help="CANDIDATES.jsonl: one candidate comment per line."),
        history: Path | None = typer.Option(
            None, "--history", help="HISTORY.jsonl: past findings with outcome accepted|dismissed."
        ),
        config: Path | None = typer.Option(None, "--config", help="Repo config YAML (.reviewbot.yml)."),
    ) -> None:
        """Replay the noise filter offline: one JSON decision per candidate, in input order.

        Each line is a JSON object: id, repo and body are required; optional are pr, path, line,
        end_line, title, severity, category, confidence (0 to 1), source, rule_id, symbol,
        language, hunk_size, rank (the comment's 0-based place in its reviewer's reply: the
        order is read), reply_size (how many findings that reply held; else the candidates of
        the same source, repo and pr are counted), on_added_line, quote_verified, verdict
        (confirmed, refuted or unsure) and verify_probability. A history line adds outcome
        (accepted or dismissed) and at (any sortable time).

        Example: reviewbot filter --history history.jsonl --config .reviewbot.yml candidates.jsonl
        """
        with no_cycle_collection():
            errors: list[str] = []
            hist_rows: list[HistoryRow] = []
            if history is not None:
                parsed_h = parse_jsonl(history.read_text(encoding="utf-8"), parse_history_row)
                hist_rows = parsed_h.items
                errors += [f"{history}: {e}" for e in parsed_h.errors]
            parsed_c = parse_jsonl(candidates.read_text(encoding="utf-8"), parse_candidate)
            errors += [f"{candidates}: {e}" for e in parsed_c.errors]
            if errors:
                for e in errors:
                    print(e, file=sys.stderr)
                raise typer.Exit(2)
            try:
                settings = settings_from_file(config)
            except Exception as exc:  # ConfigError, OSError: a bad config is bad input, exit 2
                print(f"{config}: {exc}", file=sys.stderr)
                raise typer.Exit(2) from exc
            for row in run_filter(parsed_c.items, hist_rows, settings):
                sys.stdout.write(json.dumps(row, sort_keys=False) + "\n")
