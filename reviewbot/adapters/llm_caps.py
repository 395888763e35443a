"""What a model accepts: sampling temperature, the name of its output-limit parameter, the system
role, its context window and output limit, structured output.

Known families (OpenAI's reasoning models) start from the right defaults; settings override them;
what a server refuses with a 400 is learned once and remembered by a `CapsBook` shared by every
client of the process (the App keeps one across jobs), so a refusal costs one extra round trip per
process, not one per request or per review. Learning is race-free: a request retries whenever
the server refused something the request *sent*, whichever request taught it first.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace
from typing import Literal

ResponseMode = Literal["json_schema", "json_object", "none"]
TokenParam = Literal["max_tokens", "max_completion_tokens"]
SystemRole = Literal["system", "developer", "user"]

#: Output limit when nothing else is known: room for the findings cap (8) with suggestions.
DEFAULT_OUTPUT_TOKENS = 2048
#: Reasoning models spend output tokens thinking before they write: give them room.
REASONING_OUTPUT_TOKENS = 16384

# OpenAI's reasoning families (o1, o3, o4-mini, gpt-5...), also behind a provider prefix
# ("openai/o3-mini" on LiteLLM/OpenRouter): no temperature, max_completion_tokens, developer role.
_REASONING = re.compile(r"(?:^|/)(?:o1|o3|o4|gpt-5)(?:[-.:_]|$)", re.IGNORECASE)
# o1-mini and o1-preview accept neither a system nor a developer message.
_NO_SYSTEM = re.compile(r"(?:^|/)o1-(?:mini|preview)(?:[-.:_]|$)", re.IGNORECASE)
# Documented context windows of common families (prefix match on the name after any provider/).
_WINDOWS: tuple[tuple[str, int], ...] = (
    ("gpt-5", 400_000),
    ("o1-mini", 128_000),
    ("o1-preview", 128_000),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4", 200_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("gpt-4-turbo", 128_000),
    ("gpt-3.5-turbo", 16_385),
)


@dataclass(frozen=True, slots=True)
class ModelCaps:
    """What one model accepts. `context_window` None: unknown (only the repo's budget applies)."""

    temperature: bool = True
    token_param: TokenParam = "max_tokens"
    system_role: SystemRole = "system"
    context_window: int | None = None
    max_output_tokens: int = DEFAULT_OUTPUT_TOKENS
    response_mode: ResponseMode = "json_schema"

    def output_limit(self) -> int:
        """The output limit to send: at most a third of a known window (the prompt needs room)."""
        if self.context_window is None:
            return self.max_output_tokens
        return max(256, min(self.max_output_tokens, self.context_window // 3))


def family_caps(model: str) -> ModelCaps:
    """The defaults of the model's family (reasoning models differ from chat models)."""
    name = model.strip()
    short = name.rsplit("/", 1)[-1].lower()
    window = next((w for prefix, w in _WINDOWS if short.startswith(prefix)), None)
    if _REASONING.search(name):
        role: SystemRole = "user" if _NO_SYSTEM.search(name) else "developer"
        return ModelCaps(
            temperature=False,
            token_param="max_completion_tokens",
            system_role=role,
            context_window=window,
            max_output_tokens=REASONING_OUTPUT_TOKENS,
        )
    return ModelCaps(context_window=window)


@dataclass(frozen=True, slots=True)
class CapsOverrides:
    """Operator settings that override the family defaults (None: keep the default)."""

    temperature: bool | None = None
    token_param: TokenParam | None = None
    system_role: SystemRole | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None

    def apply(self, caps: ModelCaps) -> ModelCaps:
        changes = {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}
        return replace(caps, **changes)


@dataclass(slots=True)
class CapsBook:
    """Model capabilities per (server, model): defaults, overrides, and what servers taught us.

    Thread-safe; one per process (the App's worker keeps it across jobs, a CLI run has its own).
    """

    overrides: CapsOverrides = field(default_factory=CapsOverrides)
    _caps: dict[tuple[str, str], ModelCaps] = field(default_factory=dict)
    _learned: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, server: str, model: str) -> ModelCaps:
        key = (server, model)
        with self._lock:
            caps = self._caps.get(key)
            if caps is None:
                caps = self._caps[key] = self.overrides.apply(family_caps(model))
            return caps

    def learn(self, server: str, model: str, what: str, **changes: object) -> bool:
        """Apply `changes` to the model's caps; True when that changed anything (first to learn)."""
        key = (server, model)
        current = self.get(server, model)
        with self._lock:
            current = self._caps[key]
            updated = replace(current, **changes)  # type: ignore[arg-type]
            if updated == current:
                return False
            self._caps[key] = updated
            self._learned.setdefault(key, []).append(what)
            return True

    def learned(self, server: str, model: str) -> list[str]:
        """What servers taught us about the model, in order (for the report and the logs)."""
        with self._lock:
            return list(self._learned.get((server, model), []))


# ------------------------------------------------------------------------ reading servers' errors

# OpenAI / Azure: "This model's maximum context length is 8192 tokens. However, your messages
# resulted in 9000 tokens." (code context_length_exceeded). vLLM: "This model's maximum context
# length is 2048 tokens. However, you requested 2100 tokens (1900 in the messages, 200 in the
# completion)." or "...maximum context length is 3000 tokens and your request has 3500 input
# tokens". llama.cpp: "the request exceeds the available context size (4096 tokens)".
_WINDOW_NUMBER = re.compile(
    r"(?:maximum context length is|context (?:size|window|length)(?: is| of)?|available context size)\s*"
    r"\(?\s*(\d[\d,]*)\s*tokens",
    re.IGNORECASE,
)
_CONTEXT_WORDS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "exceeds the available context size",
    "exceed_context_size",
    "prompt is too long",
    "input is too long",
    "too many tokens",
)
# OpenAI: "max_tokens is too large: 20000. This model supports at most 16384 completion tokens,
# whereas you provided 20000." vLLM: "'max_tokens' or 'max_completion_tokens' is too large: 4096."
_OUTPUT_AT_MOST = re.compile(r"supports at most (\d[\d,]*) completion tokens", re.IGNORECASE)
_OUTPUT_TOO_LARGE = re.compile(
    r"max_(?:completion_)?tokens'? (?:or '?max_completion_tokens'? )?is too large", re.IGNORECASE
)


def context_window_in(text: str) -> int | None:
    """The window size a context-length error names, if it names one."""
    m = _WINDOW_NUMBER.search(text)
    return int(m.group(1).replace(",", "")) if m else None


def is_context_overflow(text: str, code: str | None) -> bool:
    """A refusal because the request (prompt plus output limit) is longer than the window."""
    if code in ("context_length_exceeded", "string_above_max_length"):
        return True
    low = text.lower()
    return any(w in low for w in _CONTEXT_WORDS) and not is_output_too_large(text)


def is_output_too_large(text: str) -> bool:
    """A refusal because the output limit we sent is more than the model can produce."""
    return bool(_OUTPUT_AT_MOST.search(text) or _OUTPUT_TOO_LARGE.search(text))


def output_limit_in(text: str) -> int | None:
    m = _OUTPUT_AT_MOST.search(text)
    return int(m.group(1).replace(",", "")) if m else None


def describe(caps: ModelCaps) -> str:
    """One line for logs and reports: what we send this model."""
    window = f"{caps.context_window} tokens" if caps.context_window else "unknown"
    return (
        f"temperature {'sent' if caps.temperature else 'not sent'}, output limit {caps.output_limit()} "
        f"as {caps.token_param}, instructions as {caps.system_role} message, context window {window}, "
        f"response format {caps.response_mode}"
    )
