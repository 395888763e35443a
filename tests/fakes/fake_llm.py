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

Helpers for responders: `prompt_text(request_json)` and `diff_lines(request_json)` (the diff
blocks of a reviewbot prompt, as {path: [(side, line, code), ...]}).
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

Reply = str | dict | list
Responder = Callable[[dict[str, Any]], Reply]


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


def _dump(reply: Reply) -> str:
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
    ) -> None:
        self.model = model
        self.responder = responder
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
            return _dump(self.responder(request_json))
        return _dump(self.default_reply)

    def _completion(self, request_json: dict[str, Any], content: str) -> dict[str, Any]:
        with self._lock:
            self._counter += 1
            n = self._counter
        prompt_tokens = _tokens(prompt_text(request_json))
        completion_tokens = _tokens(content)
        return {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request_json.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


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
        if self.path.rstrip("/") != "/v1/chat/completions":
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
        fake.requests.append(body)
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
        for param in sorted(fake.reject_params & set(body)):
            msg = f"Unsupported parameter: '{param}' is not supported with this model."
            error = {
                "message": msg,
                "type": "invalid_request_error",
                "param": param,
                "code": "unsupported_parameter",
            }
            self._send(400, json.dumps({"error": error}))
            return
        rf = body.get("response_format")
        if isinstance(rf, dict) and rf.get("type") in fake.reject_response_format:
            # The shape vLLM / older Ollama use for an unsupported parameter.
            msg = f"response_format of type '{rf.get('type')}' is not supported by this server"
            self._send(
                400,
                json.dumps(
                    {
                        "object": "error",
                        "message": msg,
                        "type": "BadRequestError",
                        "param": "response_format",
                        "code": 400,
                    }
                ),
            )
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
            except Exception as exc:  # a broken responder is a test bug: make it loud
                self._send(500, json.dumps({"error": {"message": f"responder raised {exc!r}", "code": 500}}))
                raise
            self._send(200, json.dumps(fake._completion(body, content)))
