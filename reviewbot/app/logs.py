"""Structured logs: one JSON object per line, carrying the delivery, job, repo and PR in scope.

The ids travel in contextvars, so a handler deep in the pipeline logs with the job's context
without passing it around; asyncio tasks each get their own copy. A redaction filter masks
configured secrets (webhook secret, tokens, keys) should one ever reach a message or a traceback.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

CONTEXT_FIELDS = ("delivery_id", "job_id", "repo", "pr")
_vars: dict[str, contextvars.ContextVar[Any]] = {
    name: contextvars.ContextVar(f"reviewbot_{name}", default=None) for name in CONTEXT_FIELDS
}
REDACTED = "[REDACTED]"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured duplicate of msg
}


def current_context() -> dict[str, Any]:
    return {name: var.get() for name, var in _vars.items() if var.get() is not None}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Set some of delivery_id, job_id, repo, pr for the code inside the block."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context fields: {sorted(unknown)}")
    tokens = [(_vars[name], _vars[name].set(value)) for name, value in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class JsonFormatter(logging.Formatter):
    """ts, level, logger, msg, the context fields, then any `extra=` fields; exceptions as `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(current_context())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


class RedactSecrets(logging.Filter):
    """Replace every configured secret in the message, `extra=` strings and tracebacks."""

    def __init__(self, secrets: Iterable[str | bytes | None] = ()) -> None:
        super().__init__()
        values = []
        for s in secrets:
            if s is None:
                continue
            text = s.decode("utf-8", "replace") if isinstance(s, bytes) else str(s)
            if len(text) >= 4:  # masking 'a' everywhere would destroy the log without protecting anything
                values.append(text)
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted(set(values), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep what we have rather than lose the record
            message = f"{record.msg} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


def configure_logging(
    level: str | int = "INFO",
    stream: TextIO | None = None,
    *,
    secrets: Iterable[str | bytes | None] = (),
) -> logging.Handler:
    """Send every log record (ours, uvicorn's, libraries') as JSON lines to `stream` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_reviewbot", False):
            root.removeHandler(old)
    handler._reviewbot = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    return handler
