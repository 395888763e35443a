"""LLM adapter: OpenAI-compatible chat completions with retries, fallbacks and bounded concurrency.

Everything comes in as explicit arguments (base URL, key, model, timeouts, limits) — never from the
environment. What the model accepts (temperature, the output-limit parameter, the system role,
structured output, its context window) comes from a shared `CapsBook` and is learned from the
server's 400s once per process, race-free. Transient failures (429 rate limits, 5xx, timeouts,
connection errors, garbled bodies) are retried with exponential backoff and jitter, honouring
Retry-After, without holding a concurrency slot while waiting. An exhausted quota or a refused key
fails every request at once with one clear line. The client returns replies; turning them into
findings is the pipeline's job (reviewbot.review.replies).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import openai

from reviewbot.adapters.llm_caps import (
    CapsBook,
    CapsOverrides,
    ModelCaps,
    ResponseMode,
    context_window_in,
    describe,
    is_context_overflow,
    is_output_too_large,
    output_limit_in,
)
from reviewbot.review.llm_port import _FAILURE_SCOPE, ContextOverflow, LLMError, LLMReply
from reviewbot.review.prompt import (
    PromptRequest,
    estimate_tokens,
    response_format_json_object,
    response_format_json_schema,
)

if TYPE_CHECKING:
    from reviewbot.core.settings import Settings

log = logging.getLogger("reviewbot.adapters.llm")

_DOWNGRADE: dict[ResponseMode, ResponseMode] = {"json_schema": "json_object", "json_object": "none"}


#: Used when no base URL is configured (explicitly here, so the environment is never consulted).
OPENAI_BASE_URL = "https://api.openai.com/v1"


class _Transient(Exception):
    """A failure worth retrying that the openai client does not raise itself (garbled 200 body)."""


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


def _error_code(exc: openai.APIStatusError) -> str | None:
    """The `code` (or `type`) of an OpenAI-shaped error body, if any."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("code", "type"):
                value = inner.get(key)
                if isinstance(value, str):
                    return value
    return getattr(exc, "code", None) if isinstance(getattr(exc, "code", None), str) else None


def _error_text(exc: openai.APIStatusError) -> str:
    return f"{exc.message} {json.dumps(exc.body) if exc.body is not None else ''}"


def _fatal_reason(exc: BaseException) -> str | None:
    """One line saying why no request can succeed, or None when this failure is per-request."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    code = _error_code(exc)
    # OpenAI's 429 insufficient_quota: retrying does not refill an account
    # (https://platform.openai.com/docs/guides/error-codes/api-errors).
    if exc.status_code == 429 and (code == "insufficient_quota" or "quota" in exc.message.lower()):
        return f"the LLM account is out of quota (HTTP 429 {code or 'quota'}): check its plan and billing"
    if exc.status_code == 401:
        return "the LLM server refused the API key (HTTP 401): check REVIEWBOT_LLM_API_KEY"
    if exc.status_code == 403:
        return f"the LLM server denied access (HTTP 403: {exc.message[:120]}): check the key's permissions"
    if exc.status_code == 404 and ("model" in exc.message.lower() or code == "model_not_found"):
        return f"the LLM server does not know this model (HTTP 404: {exc.message[:120]})"
    if exc.status_code == 404 and "deployment" in exc.message.lower():  # Azure DeploymentNotFound
        return f"the Azure deployment does not exist (HTTP 404: {exc.message[:120]})"
    return None


def _is_retryable(exc: BaseException) -> bool:
    if _fatal_reason(exc) is not None:
        return False
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


def _refusal(exc: BaseException) -> str | None:
    """The lower-cased text of a 400/422 (a server refusing something in the request), else None."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
        return None
    return _error_text(exc).lower()


def _rejects_response_format(text: str) -> bool:
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


def _rejects_param(text: str, name: str) -> bool:
    """The refusal says request parameter `name` is unsupported (OpenAI reasoning models...)."""
    if is_output_too_large(text) or is_context_overflow(text, None):
        return False
    return (
        f"'{name}'" in text
        or f'"{name}"' in text
        or f"param: {name}" in text
        or (name in text and any(k in text for k in ("unsupported", "not supported", "does not support")))
    )


def _rejects_role(text: str, role: str) -> bool:
    """OpenAI (o1-mini): "Unsupported value: 'messages[0].role' does not support 'system' with this
    model."; servers without the developer role: "Unexpected role 'developer'" / "invalid role"."""
    return (
        f"'{role}'" in text
        and ("role" in text)
        and any(
            k in text for k in ("does not support", "unsupported", "unexpected", "invalid", "not supported")
        )
    )


def adapt_messages(messages: list[dict[str, str]], role: str) -> list[dict[str, str]]:
    """The messages with the system message sent as `role` (user: prepended to the first user turn)."""
    if role == "system" or not messages or messages[0].get("role") != "system":
        return messages
    if role == "developer":
        return [{"role": "developer", "content": messages[0]["content"]}, *messages[1:]]
    rest = list(messages[1:])
    if rest and rest[0].get("role") == "user":
        rest[0] = {"role": "user", "content": messages[0]["content"] + "\n\n" + rest[0]["content"]}
        return rest
    return [{"role": "user", "content": messages[0]["content"]}, *rest]


class LLMClient:
    """Sends prompts to one model of one OpenAI-compatible endpoint and returns the replies.

    `timeout` bounds one HTTP attempt, `total_timeout` bounds a request including retries and
    waits; `max_attempts` counts the first try. `caps` is the process's CapsBook (what each model
    accepts; a fresh one when None). `extra_body` is merged into every request body (Ollama
    `options.num_ctx`, vLLM guided-decoding options). `api_version` switches to Azure OpenAI's
    deployment URLs and `api-key` header. Use `async with` or call `aclose()`. One client per event
    loop (its HTTP pool and semaphore belong to the loop that first uses them). After an exhausted
    quota or a refused key, requests fail at once without a round trip for `fatal_cooldown` s.
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
        response_mode: ResponseMode | None = None,
        caps: CapsBook | None = None,
        extra_body: dict[str, Any] | None = None,
        api_version: str | None = None,
        fatal_cooldown: float = 60.0,
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
        self.extra_body = dict(extra_body or {})
        self.server = (base_url or OPENAI_BASE_URL) + (f"?api-version={api_version}" if api_version else "")
        self.book = caps if caps is not None else CapsBook()
        if response_mode is not None:
            self.book.learn(
                self.server,
                model,
                f"response format {response_mode} (configured)",
                response_mode=response_mode,
            )
        self.max_concurrency = max_concurrency
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._fatal: str | None = None
        self._fatal_at = 0.0
        self.fatal_cooldown = fatal_cooldown
        # Keyless local servers (Ollama, llama.cpp) ignore the header; the client insists on a key.
        self._client: openai.AsyncOpenAI
        if api_version:
            # Azure: /openai/deployments/{model}/chat/completions?api-version=..., `api-key` header.
            self._client = openai.AsyncAzureOpenAI(
                azure_endpoint=base_url or "",
                api_version=api_version,
                api_key=api_key or "no-key",
                timeout=timeout,
                max_retries=0,
            )
        else:
            self._client = openai.AsyncOpenAI(
                base_url=base_url or OPENAI_BASE_URL,
                api_key=api_key or "no-key",
                organization=None,
                project=None,
                timeout=timeout,
                max_retries=0,
            )

    def _fatal_now(self) -> str | None:
        """The fatal failure every request meets right now: within a `failure_scope` (one review),
        for the rest of it; outside one, for `fatal_cooldown` seconds. A long-lived App process
        tries again on the next review (a topped-up quota, a rotated key)."""
        scope = _FAILURE_SCOPE.get()
        if scope is not None:
            return scope.get("fatal")
        if self._fatal is not None and time.monotonic() - self._fatal_at > self.fatal_cooldown:
            self._fatal = None
        return self._fatal

    def _set_fatal(self, fatal: str) -> None:
        scope = _FAILURE_SCOPE.get()
        if scope is not None:
            scope["fatal"] = fatal
        else:
            self._fatal, self._fatal_at = fatal, time.monotonic()

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---------------------------------------------------------------------------- capabilities
    @property
    def caps(self) -> ModelCaps:
        """What this model accepts, as known right now."""
        return self.book.get(self.server, self.model)

    @property
    def response_mode(self) -> ResponseMode:
        return self.caps.response_mode

    def output_limit(self, caps: ModelCaps | None = None) -> int:
        limit = (caps or self.caps).output_limit()
        return min(limit, self.max_output_tokens) if self.max_output_tokens is not None else limit

    def prompt_budget(self, configured: int) -> int:
        """Prompt tokens a request may carry: `configured` (prompt + completion) and the model's
        window, each minus the output limit we send."""
        caps = self.caps
        out = self.output_limit(caps)
        budget = configured - min(out, configured // 2)  # the output limit counts, up to half
        if caps.context_window is not None:
            budget = min(budget, caps.context_window - out)
        return max(1, budget)

    def learned(self) -> list[str]:
        """What the server taught us about the model (this process), in order."""
        return self.book.learned(self.server, self.model)

    def describe_model(self) -> str:
        return f"{self.model}: {describe(self.caps)}"

    # ------------------------------------------------------------------------- one request
    def _payload(self, request: PromptRequest, caps: ModelCaps) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": adapt_messages(request.messages, caps.system_role),
        }
        temperature = self.temperature if request.temperature is None else request.temperature
        if temperature is not None and caps.temperature:
            kwargs["temperature"] = temperature
        kwargs[caps.token_param] = self.output_limit(caps)
        if caps.response_mode == "json_schema":
            kwargs["response_format"] = response_format_json_schema(schema=request.schema)
        elif caps.response_mode == "json_object":
            kwargs["response_format"] = response_format_json_object()
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        return kwargs

    def _learn(self, what: str, label: str, why: str, **changes: Any) -> None:
        if self.book.learn(self.server, self.model, what, **changes):
            log.warning("LLM %s: %s (%s); remembered for this model", label, what, why[:200])

    def _adapt(self, exc: openai.APIStatusError, sent: dict[str, Any], caps: ModelCaps, label: str) -> bool:
        """Learn from a refusal of something this request sent; True when a retry can succeed.

        Race-free: whichever concurrent request hears the refusal first updates the shared caps,
        and every request whose payload carried the refused thing retries with the current caps.
        """
        text = _refusal(exc)
        if text is None:
            return False
        why = _describe(exc)
        overflow = is_context_overflow(text, None)
        if "response_format" in sent and _rejects_response_format(text) and not overflow:
            mode = caps.response_mode
            nxt = _DOWNGRADE[mode] if mode != "none" else "none"
            self._learn(f"no response_format {mode}: using {nxt}", label, why, response_mode=nxt)
            return True
        if "temperature" in sent and _rejects_param(text, "temperature"):
            self._learn("temperature not supported: not sent", label, why, temperature=False)
            return True
        if "max_tokens" in sent and _rejects_param(text, "max_tokens"):
            self._learn(
                "max_tokens not supported: using max_completion_tokens",
                label,
                why,
                token_param="max_completion_tokens",
            )
            return True
        if "max_completion_tokens" in sent and _rejects_param(text, "max_completion_tokens"):
            self._learn(
                "max_completion_tokens not supported: using max_tokens", label, why, token_param="max_tokens"
            )
            return True
        role = sent["messages"][0].get("role") if sent.get("messages") else None
        if role in ("system", "developer") and _rejects_role(text, role):
            fallback = "user"
            self._learn(
                f"no {role} role: instructions sent in the user message", label, why, system_role=fallback
            )
            return True
        if is_output_too_large(text):
            sent_limit = int(sent.get(caps.token_param) or caps.max_output_tokens)
            limit = output_limit_in(text) or max(256, sent_limit // 2)
            window = context_window_in(text)
            if window is not None and window != caps.context_window:
                self._learn(f"context window {window} tokens", label, why, context_window=window)
            if limit < sent_limit:
                self._learn(f"output limit {limit} tokens", label, why, max_output_tokens=limit)
            return self.output_limit() < sent_limit
        return False

    async def _send(self, request: PromptRequest, label: str) -> Any:
        """One answered HTTP call, adapting to what the server refuses (at most a few times)."""
        for _ in range(8):
            try:
                async with self._semaphore:
                    fatal = self._fatal_now()
                    if fatal is not None:  # learned while this request waited for a slot
                        raise LLMError(fatal, fatal=True)
                    caps = self.caps  # read once the slot is ours: what others learned meanwhile
                    payload = self._payload(request, caps)
                    resp = await self._client.chat.completions.create(**payload)
            except openai.APIStatusError as exc:
                if self._adapt(exc, payload, caps, label):
                    continue
                text = _refusal(exc)
                if text is not None and is_context_overflow(text, _error_code(exc)):
                    window = context_window_in(_error_text(exc))
                    if window is not None and window != caps.context_window:
                        self._learn(
                            f"context window {window} tokens", label, _describe(exc), context_window=window
                        )
                    if window is not None and request.estimated_tokens + self.output_limit() <= window:
                        continue  # a smaller output limit makes it fit: same request again
                    raise ContextOverflow(
                        f"{label} is longer than the model's context window: {_describe(exc)}",
                        window=window,
                    ) from exc
                raise
            if isinstance(resp, str) or not getattr(resp, "choices", None):
                body = resp if isinstance(resp, str) else repr(resp)
                raise _Transient(f"malformed response body (not a chat completion): {body[:120]!r}")
            return resp
        raise LLMError(f"{label}: the server kept refusing the request's parameters", status=400)

    def _wait_for(self, exc: BaseException, attempt: int) -> tuple[float, bool]:
        """(seconds to wait before the next attempt, whether Retry-After said so)."""
        retry_after = _retry_after_of(exc, datetime.now(UTC))
        if retry_after is not None:
            return retry_after, True
        cap = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return cap / 2 + random.uniform(0, cap / 2), False  # exponential, jittered in [cap/2, cap]

    async def complete(self, request: PromptRequest, *, label: str = "request") -> LLMReply:
        """Send one prompt; retry transient failures; raise LLMError when it cannot be answered.

        Raises ContextOverflow when the request is longer than the model's window (the caller
        splits it). Waits between attempts hold no concurrency slot.
        """
        fatal = self._fatal_now()
        if fatal is not None:
            raise LLMError(fatal, fatal=True)
        attempts = 0
        started = time.monotonic()
        while True:
            attempts += 1
            try:
                resp = await self._send(request, label)
                break
            except LLMError:
                raise
            except (openai.APIStatusError, openai.APIConnectionError, _Transient) as exc:
                fatal = _fatal_reason(exc)
                if fatal is not None:
                    if self._fatal_now() is None:
                        self._set_fatal(fatal)
                        log.error("LLM: %s (%s)", fatal, _describe(exc))
                    raise LLMError(fatal, status=getattr(exc, "status_code", None), fatal=True) from exc
                retryable = _is_retryable(exc)
                elapsed = time.monotonic() - started
                status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
                if not retryable or attempts >= self.max_attempts:
                    raise LLMError(
                        f"{label} failed after {attempts} attempt(s) in {elapsed:.1f} s: {_describe(exc)}",
                        status=status,
                        retryable=retryable,
                    ) from exc
                wait, honoured = self._wait_for(exc, attempts)
                if elapsed + wait > self.total_timeout:
                    why = (
                        f" (Retry-After {wait:.0f} s exceeds the {self.total_timeout:.0f} s time budget)"
                        if honoured
                        else f" (the {self.total_timeout:.0f} s time budget is spent)"
                    )
                    raise LLMError(
                        f"{label} failed after {attempts} attempt(s) in {elapsed:.1f} s: "
                        f"{_describe(exc)}{why}",
                        status=status,
                        retryable=True,
                    ) from exc
                log.warning(
                    "LLM %s: %s; retry %d/%d in %.2f s%s",
                    label,
                    _describe(exc),
                    attempts + 1,
                    self.max_attempts,
                    wait,
                    " (Retry-After honoured)" if honoured else "",
                )
                await asyncio.sleep(wait)  # no concurrency slot is held while waiting
            except openai.OpenAIError as exc:
                raise LLMError(f"{label} failed: {_describe(exc)}") from exc
        choice = resp.choices[0]
        text = choice.message.content or ""
        usage = getattr(resp, "usage", None)
        estimated = usage is None or usage.prompt_tokens is None
        if usage is None or usage.prompt_tokens is None:
            prompt_tokens, completion_tokens = request.estimated_tokens, estimate_tokens(text)
        else:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens or 0
        if choice.finish_reason == "length":
            log.warning("LLM %s: reply cut at the output limit (finish_reason=length)", label)
        return LLMReply(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=getattr(resp, "model", None) or self.model,
            attempts=attempts,
            usage_estimated=estimated,
            finish_reason=choice.finish_reason,
        )


def caps_overrides_from_settings(settings: Settings) -> CapsOverrides:
    """The operator's capability settings (None where the family default or learning decides)."""
    return CapsOverrides(
        temperature=settings.llm_send_temperature,
        token_param=settings.llm_token_param,
        system_role=settings.llm_system_role,
        context_window=settings.llm_context_window,
        max_output_tokens=settings.llm_max_output_tokens,
    )


def client_from_settings(
    settings: Settings, *, caps: CapsBook | None = None, **overrides: Any
) -> LLMClient | None:
    """The LLM client the settings describe, or None when no LLM is configured (rules only).

    Called once at the edge (CLI, worker); `caps` is the process's CapsBook (a new one built from
    the settings when None); `overrides` (e.g. max_attempts) go to LLMClient.
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
        "max_attempts": settings.llm_max_attempts,
        "total_timeout": settings.llm_retry_budget,
        "extra_body": settings.llm_extra_body,
        "api_version": settings.llm_api_version,
        "caps": caps if caps is not None else CapsBook(caps_overrides_from_settings(settings)),
    }
    args.update(overrides)
    return LLMClient(**args)
