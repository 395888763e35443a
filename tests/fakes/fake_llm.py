"""FakeLLM: a real OpenAI-compatible HTTP server on 127.0.0.1 for tests.

Production code talks to it through the real `openai` client, so retries, timeouts, headers and
JSON handling are exercised end to end. Usage::

    with FakeLLM() as llm:                       # starts on a random port
        llm.enqueue_json({"findings": []})       # next reply's message content (dumped to JSON)
        llm.enqueue("not json at all")           # raw message content
        llm.enqueue_fault(status=429, retry_after=1)   # HTTP 429 with a Retry-After header
        llm.enqueue_fault(status=500)
        llm.delay(5, content='{"findings": []}') # sleep 5 s before answering (client-timeout tests)
        llm.enqueue_malformed()                  # HTTP 200 whose body is not JSON
        llm.enqueue_reset()                      # connection closed without an answer
        llm.enqueue_truncated()                  # HTTP 200 whose body stops halfway
        client = LLMClient(base_url=llm.base_url, api_key="test", model="fake-model", ...)
        ...
        llm.requests          # every chat request body received, in order
        llm.received          # every HTTP request: method, path, headers, body, arrival time, status
        llm.max_in_flight     # most chat requests answered at once (client concurrency checks)

Each queued action answers exactly one POST /v1/chat/completions. When the queue is empty the
`responder(request_json) -> str | dict | list` callback answers (dict/list are dumped to JSON),
else `default_reply` (an empty findings object). `reject_response_format=True` answers 400 to any
request carrying `response_format` (like vLLM/Ollama versions without structured output); pass a
set such as {"json_schema"} to reject only those types. `reject_params={"temperature"}` answers 400
"Unsupported parameter" (like OpenAI reasoning models) to requests carrying those keys. Rejected
requests do not consume the queue.
`latency` adds a delay to every request. GET /v1/models lists `model`.

Real servers' behaviours, each with the error body that server documents or sends (see the
comments at each one): `context_window` (prompt + requested output over it: 400
context_length_exceeded, worded per `error_style` "openai" | "azure" | "vllm"; "ollama" instead
drops the start of the prompt silently, unless the request's `options.num_ctx` is big enough),
`max_output` (an output limit above it: 400 "supports at most N completion tokens"; a reply longer
than the limit a request sends is cut there with finish_reason "length"), `reasoning_tokens` (spent
out of the output limit before any visible text, like OpenAI's reasoning models), `reject_roles`
({"system"}: 400 like o1-mini), `quota_exhausted` (429 insufficient_quota), `api_key` (401 for any
other key), `azure_api_version` (serves /openai/deployments/{model}/chat/completions?api-version=
with the `api-key` header instead). `FakeLLM.reasoning_model(...)` combines them like a reasoning
model behind a small window. A responder may return `Fault(status, body)` to fail one request.

Helpers for responders: `prompt_text(request_json)` and `diff_lines(request_json)` (the diff
blocks of a reviewbot prompt, as {path: [(side, line, code), ...]}).

Verification requests (reviewbot.review.verify) have a lane of their own: they never consume the queue
nor reach the responder, are recorded in `verify_requests` (not `requests`), and are answered by
`verifier(item) -> "confirmed" | "refuted" | "unsure" | dict` once per finding of the request
(`verify_items(request_json)` shows what an item holds); without a verifier every finding is
"unsure". `reply_delay(request_json, content) -> seconds` delays any answer by what it returns
(a latency model: time to first token plus decoding).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(slots=True)
class Fault:
    """A responder's answer that fails this one request (status, OpenAI-shaped error body)."""

    status: int
    message: str = "error"
    code: str | int | None = None
    headers: dict[str, str] = field(default_factory=dict)


Reply = str | dict | list | Fault
Responder = Callable[[dict[str, Any]], Reply]


def _openai_error(message: str, type_: str, code: str | int | None, param: str | None = None) -> str:
    # The shape of OpenAI's (and Azure OpenAI's) error bodies:
    # https://platform.openai.com/docs/guides/error-codes/api-errors
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def _vllm_error(message: str, code: int = 400) -> str:
    # vLLM's OpenAI-compatible server (vllm/entrypoints/openai/protocol.py ErrorResponse).
    return json.dumps(
        {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": code}
    )


@dataclass(slots=True)
class _Action:
    kind: str  # "reply" | "fault" | "malformed" | "reset" | "truncate"
    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    delay: float = 0.0


@dataclass(slots=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    at: float  # time.monotonic() on arrival
    status: int = 0  # what the fake answered (0 when the client went away first)
    answered: float | None = None  # time.monotonic() when the answer was sent


def _dump(reply: Reply) -> str:
    assert not isinstance(reply, Fault)
    return reply if isinstance(reply, str) else json.dumps(reply)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def prompt_text(request_json: dict[str, Any]) -> str:
    """All message contents of a chat request, joined by blank lines."""
    parts = []
    for msg in request_json.get("messages", []):
        content = msg.get("content")
        if isinstance(content, list):  # content parts
            content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(str(content or ""))
    return "\n\n".join(parts)


_DIFF_OPEN = re.compile(r'^<diff-([0-9a-f]+) path="([^"]*)"')
_LINE = re.compile(r"^\s*(old )?(\d+) ([+ -]) ?(.*)$")


def diff_lines(request_json: dict[str, Any]) -> dict[str, list[tuple[str, int, str]]]:
    """The diff blocks of a reviewbot prompt: {path: [(side, line, code), ...]} in prompt order.

    side is "RIGHT" for added/context lines (new-file number) and "LEFT" for deleted lines.
    """
    import html

    out: dict[str, list[tuple[str, int, str]]] = {}
    current: str | None = None
    nonce = ""
    for raw in prompt_text(request_json).splitlines():
        m = _DIFF_OPEN.match(raw)
        if m:
            nonce, current = m.group(1), html.unescape(m.group(2))
            out.setdefault(current, [])
            continue
        if current is None:
            continue
        if raw == f"</diff-{nonce}>":
            current = None
            continue
        lm = _LINE.match(raw)
        if lm:
            out[current].append(("LEFT" if lm.group(1) else "RIGHT", int(lm.group(2)), lm.group(4)))
    return out


def flag_added(
    request_json: dict[str, Any], flagged: Callable[[str, str], bool], *, title: str, body: str
) -> dict[str, Any]:
    """A scripted reviewer's answer: one high-severity bug (confidence 0.9) on every added (RIGHT)
    line for which `flagged(path, code)` holds, quoting it; `body` may name it as `{code}`."""
    findings = []
    for path, lines in diff_lines(request_json).items():
        for side, line, code in lines:
            if side == "RIGHT" and flagged(path, code):
                findings.append(
                    {
                        "path": path,
                        "line": line,
                        "end_line": None,
                        "side": "RIGHT",
                        "severity": "high",
                        "category": "bug",
                        "confidence": 0.9,
                        "title": title,
                        "body": body.format(code=code.strip()),
                        "suggestion": None,
                        "quoted_code": code,
                    }
                )
    return {"findings": findings}


_FINDING = re.compile(
    r'<finding-([0-9a-f]+) id="([^"]*)" path="([^"]*)"(?: line="(\d+)")?>\n(.*?)\n</finding-\1>', re.DOTALL
)
_CODE = re.compile(r'<code-([0-9a-f]+) id="([^"]*)"[^>]*>\n(.*?)\n</code-\1>', re.DOTALL)
_CODE_ROW = re.compile(r"^(>>|  ) +(?:old )?(\d+) (?:\||[+ -]) ?(.*)$")


def is_verification(request_json: dict[str, Any]) -> bool:
    """Whether a chat request is one of reviewbot's verification requests."""
    return "<finding-" in prompt_text(request_json)


def verify_items(request_json: dict[str, Any]) -> list[dict[str, Any]]:
    """The findings of a verification request: id, path, line, claim, and code as
    [(line number, text, marked as the finding's own line)]."""
    import html

    text = prompt_text(request_json)
    codes: dict[str, list[tuple[int, str, bool]]] = {}
    for _nonce, key, body in _CODE.findall(text):
        rows = [_CODE_ROW.match(row) for row in body.split("\n")]
        codes[key] = [(int(m.group(2)), m.group(3), m.group(1) == ">>") for m in rows if m]
    return [
        {
            "id": key,
            "path": html.unescape(path),
            "line": int(line) if line else None,
            "claim": claim,
            "code": codes.get(key, []),
        }
        for _nonce, key, path, line, claim in _FINDING.findall(text)
    ]


def verdicts(request_json: dict[str, Any], verifier: Callable[[dict[str, Any]], Any] | None = None) -> str:
    """The reply to a verification request: `verifier(item)` per finding, "unsure" without one."""
    out = []
    for item in verify_items(request_json):
        answer = verifier(item) if verifier is not None else "unsure"
        if isinstance(answer, str):
            answer = {"verdict": answer}
        marked = [n for n, _text, mine in item["code"] if mine]
        out.append(
            {
                "id": item["id"],
                "verdict": "unsure",
                "probability": 0.5,
                "line": marked[0] if marked else item["line"],
                "why": "",
                **answer,
            }
        )
    return json.dumps({"verdicts": out})


class _FaultRaised(Exception):
    def __init__(self, fault: Fault) -> None:
        self.fault = fault


class FakeLLM:
    """An OpenAI-compatible chat-completions server with queued replies and fault injection."""

    def __init__(
        self,
        *,
        model: str = "fake-model",
        responder: Responder | None = None,
        reject_response_format: bool | Iterable[str] = False,
        latency: float = 0.0,
        default_reply: Reply | None = None,
        reject_params: Iterable[str] = (),
        context_window: int | None = None,
        error_style: str = "openai",
        max_output: int | None = None,
        reasoning_tokens: int = 0,
        reject_roles: Iterable[str] = (),
        quota_exhausted: bool = False,
        api_key: str | None = None,
        azure_api_version: str | None = None,
        verifier: Callable[[dict[str, Any]], str | dict[str, Any]] | None = None,
        reply_delay: Callable[[dict[str, Any], str], float] | None = None,
    ) -> None:
        self.model = model
        self.context_window = context_window
        self.error_style = error_style
        self.max_output = max_output
        self.reasoning_tokens = reasoning_tokens
        self.reject_roles = set(reject_roles)
        self.quota_exhausted = quota_exhausted
        self.api_key = api_key
        self.azure_api_version = azure_api_version
        self.truncated_prompts = 0  # Ollama style: prompts whose start was dropped silently
        self.refused: list[tuple[int, str]] = []  # (status, error body) of every refusal sent
        self.responder = responder
        self.verifier = verifier
        self.reply_delay = reply_delay
        self.verify_requests: list[dict[str, Any]] = []  # verification request bodies, in order
        if reject_response_format is True:
            self.reject_response_format: set[str] = {"json_schema", "json_object", "text"}
        elif reject_response_format is False:
            self.reject_response_format = set()
        else:
            self.reject_response_format = set(reject_response_format)
        self.latency = latency
        self.reject_params = set(reject_params)  # e.g. {"temperature"}: 400 like OpenAI reasoning models
        self.default_reply: Reply = {"findings": []} if default_reply is None else default_reply
        self.requests: list[dict[str, Any]] = []  # chat-completion request bodies, in arrival order
        self.received: list[Received] = []  # every request, with headers, timing and our status
        self._queue: deque[_Action] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0
        self.in_flight = 0  # chat requests being answered right now
        self.max_in_flight = 0  # the most answered at once (to check client concurrency limits)

    @classmethod
    def reasoning_model(cls, *, context_window: int = 3000, **kw: Any) -> FakeLLM:
        """Like an OpenAI reasoning model (o1-mini) behind a small window: refuses temperature,
        max_tokens and the system role, spends output tokens on reasoning, cuts long replies."""
        kw.setdefault("model", "fake-reasoner")
        kw.setdefault("max_output", 2000)
        kw.setdefault("reasoning_tokens", 150)
        return cls(
            context_window=context_window,
            reject_params={"temperature", "max_tokens"},
            reject_roles={"system"},
            **kw,
        )

    # ------------------------------------------------------------------ queue
    def enqueue(self, content: str, *, delay: float = 0.0) -> FakeLLM:
        """Queue a successful reply whose assistant message content is `content`."""
        with self._lock:
            self._queue.append(_Action("reply", content=content, delay=delay))
        return self

    def enqueue_json(self, obj: Any, *, delay: float = 0.0) -> FakeLLM:
        """Queue a successful reply whose content is `obj` dumped to JSON."""
        return self.enqueue(json.dumps(obj), delay=delay)

    def enqueue_fault(
        self,
        status: int = 500,
        *,
        retry_after: float | str | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> FakeLLM:
        """Queue an HTTP error (OpenAI error body); `retry_after` sets the Retry-After header."""
        hdrs = dict(headers or {})
        if retry_after is not None:
            ra = retry_after
            hdrs["Retry-After"] = str(int(ra)) if isinstance(ra, float) and ra.is_integer() else str(ra)
        msg = message or {429: "Rate limit reached", 500: "The server had an error"}.get(status, "error")
        body = json.dumps({"error": {"message": msg, "type": "fake_error", "param": None, "code": status}})
        with self._lock:
            self._queue.append(_Action("fault", status=status, headers=hdrs, body=body, delay=delay))
        return self

    def delay(self, seconds: float, content: Reply | None = None) -> FakeLLM:
        """Queue a reply that arrives after `seconds` (responder/default content when None)."""
        with self._lock:
            self._queue.append(
                _Action("reply", content=None if content is None else _dump(content), delay=seconds)
            )
        return self

    def enqueue_malformed(self, body: str = "<html>upstream hiccup", *, status: int = 200) -> FakeLLM:
        """Queue a response whose HTTP body is not JSON at all (a broken proxy, a crashed server)."""
        with self._lock:
            self._queue.append(_Action("malformed", status=status, body=body))
        return self

    def enqueue_reset(self) -> FakeLLM:
        """Queue a connection closed without any answer (a reset: proxy restart, crashed server)."""
        with self._lock:
            self._queue.append(_Action("reset"))
        return self

    def enqueue_truncated(self, content: Reply | None = None) -> FakeLLM:
        """Queue a 200 whose body stops halfway (Content-Length promises the whole body)."""
        with self._lock:
            self._queue.append(_Action("truncate", content=None if content is None else _dump(content)))
        return self

    def pending(self) -> int:
        """How many queued actions have not been consumed yet."""
        with self._lock:
            return len(self._queue)

    # -------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeLLM is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeLLM:
        handler = type("_Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeLLM", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()  # wakes delayed handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- serving
    def _next_action(self, request_json: dict[str, Any]) -> _Action:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return _Action("reply", content=None)

    def _content_for(self, action: _Action, request_json: dict[str, Any]) -> str:
        if action.content is not None:
            return action.content
        if self.responder is not None:
            reply = self.responder(request_json)
            if isinstance(reply, Fault):
                raise _FaultRaised(reply)
            return _dump(reply)
        return _dump(self.default_reply)

    def _verdicts(self, request_json: dict[str, Any]) -> str:
        return verdicts(request_json, self.verifier)

    def _completion(self, request_json: dict[str, Any], content: str) -> dict[str, Any]:
        with self._lock:
            self._counter += 1
            n = self._counter
        prompt_tokens = _tokens(prompt_text(request_json))
        limit = request_json.get("max_completion_tokens", request_json.get("max_tokens"))
        finish = "stop"
        reasoning = self.reasoning_tokens
        if isinstance(limit, int):
            room = max(0, limit - reasoning)
            if _tokens(content) > room:  # cut at the output limit, as servers do (finish_reason length)
                content, finish = content[: room * 4], "length"
                reasoning = min(reasoning, limit)
        completion_tokens = (_tokens(content) if content else 0) + reasoning
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        return {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request_json.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }

    def refusal(self, body: dict[str, Any], headers: dict[str, str], path: str) -> tuple[int, str] | None:
        """The error a real server would answer this request with, or None when it would serve it."""
        if self.api_key is not None:
            sent = headers.get("api-key") if self.azure_api_version else None
            auth = headers.get("Authorization") or headers.get("authorization") or ""
            sent = sent or auth.removeprefix("Bearer ").strip()
            if sent != self.api_key:
                # OpenAI's 401 body (https://platform.openai.com/docs/guides/error-codes/api-errors).
                return 401, _openai_error(
                    "Incorrect API key provided: sk-***. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    "invalid_api_key",
                )
        if self.quota_exhausted:
            # OpenAI's 429 for an account without credit: not a rate limit, retrying cannot help.
            return 429, _openai_error(
                "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: "
                "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "insufficient_quota",
                "insufficient_quota",
            )
        for param in sorted(self.reject_params & set(body)):
            if param == "temperature":
                # What o1/o3 answer to any temperature but the default.
                msg = (
                    f"Unsupported value: 'temperature' does not support {body['temperature']} with this "
                    "model. Only the default (1) value is supported."
                )
                return 400, _openai_error(msg, "invalid_request_error", "unsupported_value", "temperature")
            hint = " Use 'max_completion_tokens' instead." if param == "max_tokens" else ""
            msg = f"Unsupported parameter: '{param}' is not supported with this model.{hint}"
            return 400, _openai_error(msg, "invalid_request_error", "unsupported_parameter", param)
        messages = body.get("messages") or []
        for i, msg in enumerate(messages):
            role = msg.get("role") if isinstance(msg, dict) else None
            if role in self.reject_roles:
                # o1-mini / o1-preview on a system (or developer) message.
                text = f"Unsupported value: 'messages[{i}].role' does not support '{role}' with this model."
                param = f"messages[{i}].role"
                return 400, _openai_error(text, "invalid_request_error", "unsupported_value", param)
        rf = body.get("response_format")
        if isinstance(rf, dict) and rf.get("type") in self.reject_response_format:
            # The shape vLLM / older Ollama use for an unsupported parameter.
            msg = f"response_format of type '{rf.get('type')}' is not supported by this server"
            return 400, json.dumps(
                {
                    "object": "error",
                    "message": msg,
                    "type": "BadRequestError",
                    "param": "response_format",
                    "code": 400,
                }
            )
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if self.max_output is not None and isinstance(limit, int) and limit > self.max_output:
            name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
            msg = (
                f"{name} is too large: {limit}. This model supports at most {self.max_output} completion "
                f"tokens, whereas you provided {limit}."
            )
            return 400, _openai_error(msg, "invalid_request_error", "invalid_value", name)
        window = self.context_window
        if window is None:
            return None
        prompt = _tokens(prompt_text(body))
        if self.error_style == "ollama":
            options = body.get("options") if isinstance(body.get("options"), dict) else {}
            num_ctx = options.get("num_ctx") if isinstance(options.get("num_ctx"), int) else window
            if prompt > num_ctx:  # Ollama keeps the end of the prompt and says nothing
                with self._lock:
                    self.truncated_prompts += 1
            return None
        wanted = prompt + (limit if isinstance(limit, int) else 0)
        if wanted <= window:
            return None
        completion = limit if isinstance(limit, int) else 0
        msg = (
            f"This model's maximum context length is {window} tokens. However, you requested {wanted} "
            f"tokens ({prompt} in the messages, {completion} in the completion). Please reduce the "
            f"length of the messages or completion."
        )
        if self.error_style == "vllm":
            return 400, _vllm_error(msg)
        # OpenAI and Azure OpenAI: code context_length_exceeded, param messages.
        return 400, _openai_error(msg, "invalid_request_error", "context_length_exceeded", "messages")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLM
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections end eventually

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet test output

    def _send(
        self,
        status: int,
        body: str,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (timeout): nothing to do
            return
        if self._record is not None:
            self._record.status = status
            self._record.answered = time.monotonic()

    _record: Received | None = None

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        fake = self.fake
        self._record = Received("GET", self.path, dict(self.headers), None, time.monotonic())
        fake.received.append(self._record)
        if self.path.rstrip("/") == "/v1/models":
            body = {
                "object": "list",
                "data": [{"id": fake.model, "object": "model", "created": 0, "owned_by": "reviewbot-tests"}],
            }
            self._send(200, json.dumps(body))
        else:
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}", "code": 404}}))

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        self._record = Received("POST", self.path, dict(self.headers), body, time.monotonic())
        fake.received.append(self._record)
        route, _, query = self.path.partition("?")
        if fake.azure_api_version is not None:
            # Azure OpenAI: /openai/deployments/{deployment}/chat/completions?api-version=...
            m = re.fullmatch(r"/openai/deployments/([^/]+)/chat/completions", route)
            if m is None or f"api-version={fake.azure_api_version}" not in query:
                self._send(404, json.dumps({"error": {"code": "404", "message": "Resource not found"}}))
                return
            if m.group(1) != fake.model:
                msg = (
                    "The API deployment for this resource does not exist. If you created the deployment "
                    "within the last 5 minutes, please wait a moment and try again."
                )
                self._send(404, json.dumps({"error": {"code": "DeploymentNotFound", "message": msg}}))
                return
        elif route.rstrip("/") != "/v1/chat/completions":
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}", "code": 404}}))
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._send(
                400,
                json.dumps(
                    {
                        "error": {
                            "message": "body must be JSON with 'messages'",
                            "type": "invalid_request_error",
                            "code": 400,
                        }
                    }
                ),
            )
            return
        (fake.verify_requests if is_verification(body) else fake.requests).append(body)
        with fake._lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            self._answer(body)
        finally:
            with fake._lock:
                fake.in_flight -= 1

    def _answer(self, body: dict[str, Any]) -> None:
        fake = self.fake
        if fake.latency and fake._stop.wait(fake.latency):
            return
        refused = fake.refusal(body, dict(self.headers), self.path)
        if refused is not None:
            with fake._lock:
                fake.refused.append(refused)
            self._send(*refused)
            return
        if is_verification(body):
            try:
                content = fake._verdicts(body)
            except Exception as exc:  # a raising verifier answers 500 (and stays loud in the log)
                self._send(500, json.dumps({"error": {"message": f"verifier raised {exc!r}", "code": 500}}))
                raise
            if fake.reply_delay is not None and fake._stop.wait(fake.reply_delay(body, content)):
                return
            self._send(200, json.dumps(fake._completion(body, content)))
            return
        action = fake._next_action(body)
        if action.delay and fake._stop.wait(action.delay):
            return
        if action.kind == "reset":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        elif action.kind == "truncate":
            data = json.dumps(fake._completion(body, fake._content_for(action, body))).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True
        elif action.kind == "fault":
            self._send(action.status, action.body or "{}", action.headers)
        elif action.kind == "malformed":
            self._send(action.status, action.body or "", content_type="text/html")
        else:
            try:
                content = fake._content_for(action, body)
            except _FaultRaised as fault:
                f = fault.fault
                self._send(f.status, _openai_error(f.message, "fake_error", f.code), f.headers)
                return
            except Exception as exc:  # a broken responder is a test bug: make it loud
                self._send(500, json.dumps({"error": {"message": f"responder raised {exc!r}", "code": 500}}))
                raise
            if fake.reply_delay is not None and fake._stop.wait(fake.reply_delay(body, content)):
                return
            self._send(200, json.dumps(fake._completion(body, content)))
