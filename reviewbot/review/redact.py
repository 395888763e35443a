"""Mask secrets in text the App publishes or stores: review comments, summaries, check runs, reports.

Why here and not only in the logs: LLM output is attacker-influenced (the diff it reads is written by
the PR author), so a finding's body may carry a secret the model saw or was told to repeat. Two
layers: the configured secret values (webhook secret, LLM key, private key and its lines, admin
token) and well-known credential shapes (GitHub tokens, including installation tokens we never
configure; OpenAI-style keys; PEM private-key blocks), masked even when no value is configured.

Pure: text in, text out. `redact_result` applies it to every text of a ReviewResult in place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from reviewbot.core.domain import Candidate, ReviewResult

REDACTED = "[REDACTED]"
#: Shorter configured values are not masked: masking 'abc' everywhere would mangle code and
#: protect nothing (a 3-character secret is no secret).
MIN_SECRET_LENGTH = 6

_PATTERNS = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)"  # PEM keys
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"  # GitHub PAT / OAuth / user-to-server / installation / refresh
    r"|\bgithub_pat_[A-Za-z0-9_]{40,}"  # fine-grained PAT
    r"|\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"  # OpenAI-style API keys
    r"|\bv1\.[0-9a-f]{40}\b",  # legacy GitHub App installation tokens
    re.DOTALL,
)


def secret_values(values: Iterable[str | bytes | None]) -> list[str]:
    """The values worth masking, longest first (so a secret containing another is masked whole).

    A multi-line value (a PEM key) also contributes each long line, so a key quoted one line at a
    time is still masked."""
    out: set[str] = set()
    for value in values:
        if value is None:
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        text = text.strip()
        if len(text) >= MIN_SECRET_LENGTH:
            out.add(text)
        if "\n" in text:
            out.update(ln.strip() for ln in text.splitlines() if len(ln.strip()) >= 24 and "-----" not in ln)
    return sorted(out, key=len, reverse=True)


def redact(text: str | None, secrets: Iterable[str | bytes | None] = ()) -> str | None:
    """`text` with every configured secret and every credential-shaped token replaced by [REDACTED]."""
    if not text:
        return text
    for secret in secret_values(secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _PATTERNS.sub(REDACTED, text)


def _redact_candidate(c: Candidate, secrets: list[str]) -> None:
    c.title = redact(c.title, secrets) or ""
    c.body = redact(c.body, secrets) or ""
    if c.suggestion is not None and redact(c.suggestion, secrets) != c.suggestion:
        c.suggestion = None  # accepting a masked suggestion would write [REDACTED] into the code
    c.quoted_code = redact(c.quoted_code, secrets)


def redact_result(result: ReviewResult, secrets: Iterable[str | bytes | None] = ()) -> ReviewResult:
    """Mask secrets in every text of `result` (posted, suppressed and dropped candidates, notes,
    reasons for files not reviewed), in place; returns `result` for chaining."""
    values = secret_values(secrets)
    for decision in [*result.posted, *result.suppressed]:
        _redact_candidate(decision.candidate, values)
    for dropped in result.dropped:
        _redact_candidate(dropped.candidate, values)
    result.notes = [redact(n, values) or "" for n in result.notes]
    result.silence = redact(result.silence, values)
    result.files_not_reviewed = {
        path: redact(why, values) or "" for path, why in result.files_not_reviewed.items()
    }
    return result
