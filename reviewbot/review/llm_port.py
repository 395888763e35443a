"""What the review asks of an LLM client, without the client: its reply and its errors.

Why a module of its own: the pure review stages (asking, verify, the pipeline) handle replies and
failures but must not import the HTTP adapter (`llm.py`, which pulls in the openai client).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

#: Where a review's requests share what makes all of them fail (see `failure_scope`).
_FAILURE_SCOPE: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "reviewbot_llm_failure_scope", default=None
)


@contextlib.contextmanager
def failure_scope() -> Iterator[None]:
    """Requests sent inside (and in tasks started inside) share fatal failures: after one exhausted
    quota or refused key, the others fail at once without a round trip. One per review, so a
    client shared by the App's jobs tries again on the next review."""
    token = _FAILURE_SCOPE.set({})
    try:
        yield
    finally:
        _FAILURE_SCOPE.reset(token)


class LLMError(Exception):
    """A request the LLM server refused or that kept failing after every retry.

    `fatal`: no request of this client can succeed (quota exhausted, key refused, unknown model);
    the message is then the one line that says why, the same for every request.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool = False, fatal: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.fatal = fatal


class ContextOverflow(LLMError):
    """The server refused the request as longer than the model's window: split it and retry."""

    def __init__(self, message: str, *, window: int | None) -> None:
        super().__init__(message, status=400)
        self.window = window


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

    @property
    def truncated(self) -> bool:
        """The server cut the reply at the output limit (its JSON is likely unfinished)."""
        return self.finish_reason == "length"
