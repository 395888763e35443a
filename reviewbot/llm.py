"""LLM adapter: OpenAI-compatible chat completions with retries, fallbacks and bounded concurrency.

Everything comes in as explicit arguments (base URL, key, model, timeouts, limits) — never from the
environment. The client asks for strict JSON-Schema output first and, when a server (older vLLM,
Ollama, llama.cpp) answers 400 that it lacks `response_format`, falls back to `json_object` and
then to prompt-only JSON, remembering the downgrade for its lifetime. Transient failures (429,
5xx, timeouts, connection errors, garbled bodies) are retried with exponential backoff and jitter,
honouring Retry-After; a request that still fails is recorded and the rest of the review goes on.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from reviewbot.anchor import anchor_candidates
from reviewbot.models import Candidate, Dropped, FileDiff, LLMUsage
from reviewbot.prompt import (
    PromptRequest,
    estimate_tokens,
    parse_reply_detailed,
    response_format_json_object,
    response_format_json_schema,
)

if TYPE_CHECKING:
    from reviewbot.settings import Settings

log = logging.getLogger("reviewbot.llm")

ResponseMode = Literal["json_schema", "json_object", "none"]
_DOWNGRADE: dict[ResponseMode, ResponseMode] = {"json_schema": "json_object", "json_object": "none"}


#: Used when no base URL is configured (explicitly here, so the environment is never consulted).
OPENAI_BASE_URL = "https://api.openai.com/v1"


class LLMError(Exception):
    """A request the LLM server refused or that kept failing after every retry."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class _Transient(Exception):
    """A failure worth retrying that the openai client does not raise itself (garbled 200 body)."""


@dataclass(slots=True)
class LLMReply:
    """The assistant's text and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    attempts: int = 1
    usage_estimated: bool = False  # the server sent no usage; tokens are our estimate
    finish_reason: str | None = None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    if math.isnan(seconds) or seconds < 0:
        return None
    return seconds


def _retry_after_of(exc: BaseException, now: datetime) -> float | None:
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"), now)


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError | _Transient)  # includes APITimeoutError


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"[:300]
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {exc.__cause__ or exc}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


def _rejects_response_format(exc: BaseException) -> bool:
    """A 400/422 that says the server lacks response_format / json_schema support."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
        return False
    text = f"{exc.message} {exc.body}".lower()
    return any(
        k in text
        for k in (
            "response_format",
            "json_schema",
            "json_object",
            "structured output",
            "guided_json",
            "guided decoding",
        )
    )


def _rejects_param(exc: BaseException, name: str) -> bool:
    """A 400/422 saying the request parameter `name` is unsupported (OpenAI reasoning models...)."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
        return False
    text = f"{exc.message} {exc.body}".lower()
    return (
        f"'{name}'" in text
        or f'"{name}"' in text
        or f"param: {name}" in text
        or (name in text and any(k in text for k in ("unsupported", "not supported", "does not support")))
    )


class LLMClient:
    """Reviews prompts against one OpenAI-compatible endpoint.

    `timeout` bounds one HTTP attempt, `total_timeout` bounds a request including retries and
    waits; `max_attempts` counts the first try. Use `async with` or call `aclose()`. One client
    per event loop (its HTTP pool and semaphore belong to the loop that first uses them).
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str,
        timeout: float = 120.0,
        max_concurrency: int = 4,
        max_attempts: int = 4,
        total_timeout: float = 600.0,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        temperature: float | None = 0.0,
        max_output_tokens: int | None = None,
        response_mode: ResponseMode = "json_schema",
    ) -> None:
        if max_concurrency < 1 or max_attempts < 1:
            raise ValueError("max_concurrency and max_attempts must be >= 1")
        self.model = model
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.total_timeout = total_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.temperature = temperature
        self.max_output_tokens = max_output_tokens
        self.response_mode: ResponseMode = response_mode
        self._send_temperature = True
        self._max_tokens_param = "max_tokens"
        self.max_concurrency = max_concurrency
        self._semaphore = asyncio.Semaphore(max_concurrency)
        # Keyless local servers (Ollama, llama.cpp) ignore the header; the client insists on a key.
        self._client = openai.AsyncOpenAI(
            base_url=base_url or OPENAI_BASE_URL,
            api_key=api_key or "no-key",
            organization=None,
            project=None,
            timeout=timeout,
            max_retries=0,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------- one request
    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = _retry_after_of(exc, datetime.now(UTC)) if exc else None
        if retry_after is not None:
            return retry_after
        cap = min(self.backoff_max, self.backoff_base * (2 ** (state.attempt_number - 1)))
        return cap / 2 + random.uniform(0, cap / 2)  # exponential, jittered within [cap/2, cap]

    def _stop(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.max_attempts:
            return True
        elapsed = state.seconds_since_start or 0.0
        return elapsed + (state.upcoming_sleep or 0.0) > self.total_timeout

    def _before_sleep(self, label: str) -> Any:
        def hook(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            why = _describe(exc) if exc else "?"
            ra = _retry_after_of(exc, datetime.now(UTC)) if exc else None
            note = " (Retry-After honoured)" if ra is not None else ""
            log.warning(
                "LLM %s: %s; retry %d/%d in %.2f s%s",
                label,
                why,
                state.attempt_number + 1,
                self.max_attempts,
                state.upcoming_sleep,
                note,
            )

        return hook

    def _payload(self, request: PromptRequest, mode: ResponseMode) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": request.messages}
        if self.temperature is not None and self._send_temperature:
            kwargs["temperature"] = self.temperature
        if self.max_output_tokens is not None:
            kwargs[self._max_tokens_param] = self.max_output_tokens
        if mode == "json_schema":
            kwargs["response_format"] = response_format_json_schema()
        elif mode == "json_object":
            kwargs["response_format"] = response_format_json_object()
        return kwargs

    async def _attempt(self, request: PromptRequest, label: str) -> tuple[Any, int]:
        """One HTTP call, downgrading response_format on the spot when the server rejects it."""
        attempts = 0
        while True:
            mode = self.response_mode
            attempts += 1
            try:
                resp = await self._client.chat.completions.create(**self._payload(request, mode))
            except openai.APIStatusError as exc:
                if mode != "none" and _rejects_response_format(exc):
                    nxt = _DOWNGRADE[mode]
                    if self.response_mode == mode:  # first request to notice: downgrade for everyone
                        self.response_mode = nxt
                        log.warning(
                            "LLM %s: server rejected response_format=%s (%s); falling back to %s "
                            "for this client",
                            label,
                            mode,
                            _describe(exc),
                            nxt,
                        )
                    continue
                if self._drop_unsupported_param(exc, label):
                    continue
                raise
            if isinstance(resp, str) or not getattr(resp, "choices", None):
                body = resp if isinstance(resp, str) else repr(resp)
                raise _Transient(f"malformed response body (not a chat completion): {body[:120]!r}")
            return resp, attempts

    def _drop_unsupported_param(self, exc: openai.APIStatusError, label: str) -> bool:
        """Reasoning models refuse `temperature` and want `max_completion_tokens`: adapt once."""
        if self.temperature is not None and self._send_temperature and _rejects_param(exc, "temperature"):
            self._send_temperature = False
            log.warning(
                "LLM %s: server rejected temperature (%s); not sending it any more", label, _describe(exc)
            )
            return True
        if (
            self.max_output_tokens is not None
            and self._max_tokens_param == "max_tokens"
            and _rejects_param(exc, "max_tokens")
        ):
            self._max_tokens_param = "max_completion_tokens"
            log.warning(
                "LLM %s: server rejected max_tokens (%s); using max_completion_tokens", label, _describe(exc)
            )
            return True
        return False

    async def complete(self, request: PromptRequest, *, label: str = "request") -> LLMReply:
        """Send one prompt; retry transient failures; raise LLMError when it cannot be answered."""
        attempts = 0
        started = time.monotonic()
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_retryable),
            wait=self._wait,
            stop=self._stop,
            before_sleep=self._before_sleep(label),
            reraise=True,
        )
        try:
            async with self._semaphore:
                async for attempt in retrying:
                    with attempt:
                        attempts += 1
                        resp, _ = await self._attempt(request, label)
        except openai.APIStatusError as exc:
            retryable = _is_retryable(exc)
            retry_after = _retry_after_of(exc, datetime.now(UTC))
            why = ""
            if retryable and retry_after is not None and attempts < self.max_attempts:
                why = f" (Retry-After {retry_after:.0f} s exceeds the {self.total_timeout:.0f} s time budget)"
            raise LLMError(
                f"{label} failed after {attempts} attempt(s) in {time.monotonic() - started:.1f} s: "
                f"{_describe(exc)}{why}",
                status=exc.status_code,
                retryable=retryable,
            ) from exc
        except (openai.APIConnectionError, _Transient) as exc:
            raise LLMError(
                f"{label} failed after {attempts} attempt(s) in {time.monotonic() - started:.1f} s: "
                f"{_describe(exc)}",
                retryable=True,
            ) from exc
        except openai.OpenAIError as exc:
            raise LLMError(f"{label} failed: {_describe(exc)}") from exc
        choice = resp.choices[0]
        text = choice.message.content or ""
        usage = getattr(resp, "usage", None)
        estimated = usage is None or usage.prompt_tokens is None
        if estimated:
            prompt_tokens, completion_tokens = request.estimated_tokens, estimate_tokens(text)
        else:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens or 0
        if choice.finish_reason == "length":
            log.warning("LLM %s: reply truncated at the output token limit (finish_reason=length)", label)
        return LLMReply(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=getattr(resp, "model", None) or self.model,
            attempts=attempts,
            usage_estimated=estimated,
            finish_reason=choice.finish_reason,
        )

    # --------------------------------------------------------------------------- a whole PR
    async def review(
        self,
        requests: Sequence[PromptRequest],
        files: Mapping[str, FileDiff] | Sequence[FileDiff],
        *,
        source: str = "llm",
    ) -> tuple[list[Candidate], list[Dropped], LLMUsage, list[str]]:
        """Run every request concurrently (bounded), parse and anchor each reply.

        Candidate ids are f"{source}:{request index}:{finding index}"; Candidate.source = source.

        Returns (candidates on valid diff positions, dropped candidates with reasons, token usage
        summed over the PR, problems). A request that fails after its retries counts as an error
        in the usage and a problem; the other requests' candidates still count.
        """
        by_path = files if isinstance(files, Mapping) else {f.path: f for f in files}
        results = await asyncio.gather(
            *(self._review_one(i, req, by_path, source) for i, req in enumerate(requests))
        )
        candidates: list[Candidate] = []
        dropped: list[Dropped] = []
        usage = LLMUsage()
        problems: list[str] = []
        for cands, drops, use, probs in results:
            candidates += cands
            dropped += drops
            usage.add(use)
            problems += probs
        log.info(
            "LLM review: %d request(s), %d error(s), %d candidate(s), %d dropped, tokens %d+%d",
            usage.requests,
            usage.errors,
            len(candidates),
            len(dropped),
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        return candidates, dropped, usage, problems

    async def _review_one(
        self, index: int, request: PromptRequest, files: Mapping[str, FileDiff], source: str
    ) -> tuple[list[Candidate], list[Dropped], LLMUsage, list[str]]:
        shown = ", ".join(request.paths[:3]) + (
            f" +{len(request.paths) - 3} more" if len(request.paths) > 3 else ""
        )
        label = f"request {index + 1} ({shown})"
        usage = LLMUsage(requests=1)
        try:
            reply = await self.complete(request, label=label)
        except LLMError as exc:
            usage.errors = 1
            log.error("LLM %s", exc)
            return [], [], usage, [str(exc)]
        usage.prompt_tokens, usage.completion_tokens = reply.prompt_tokens, reply.completion_tokens
        kept, dropped, problems = candidates_from_reply(
            reply.text, request, files, source=source, prefix=f"{source}:{index}", label=label
        )
        return kept, dropped, usage, problems


def candidates_from_reply(
    text: str,
    request: PromptRequest,
    files: Mapping[str, FileDiff],
    *,
    source: str,
    prefix: str,
    label: str = "request",
) -> tuple[list[Candidate], list[Dropped], list[str]]:
    """Parse one reply and anchor its findings to the diff (pure apart from log lines).

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


def client_from_settings(settings: Settings, **overrides: Any) -> LLMClient | None:
    """The LLM client the settings describe, or None when no LLM is configured (rules only).

    Called once at the edge (CLI, worker); `overrides` (e.g. max_attempts) go to LLMClient.
    """
    if not settings.llm_configured:
        return None
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
    args: dict[str, Any] = {
        "base_url": settings.llm_base_url,
        "api_key": key,
        "model": settings.llm_model,
        "timeout": settings.llm_timeout,
        "max_concurrency": settings.llm_max_concurrency,
    }
    args.update(overrides)
    return LLMClient(**args)
