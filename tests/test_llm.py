"""llm.py through a real OpenAI-compatible HTTP server (FakeLLM): retries, fallbacks, anchoring.

Every scenario ends with zero invalid findings (each candidate passes FileDiff.accepts) and a log
line from "reviewbot.adapters.llm" that says what happened.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from reviewbot.adapters.llm import LLMClient, client_from_settings, parse_retry_after
from reviewbot.core.domain import FileDiff
from reviewbot.review.llm_port import LLMError
from reviewbot.review.pipeline import review_requests
from reviewbot.review.prompt import build_requests

try:  # tests/ as a package (tests/__init__.py) or as a plain directory on sys.path
    from tests.fakes.fake_llm import FakeLLM, Fault, diff_lines, prompt_text
    from tests.test_anchor import FILES, UTIL, make_file
except ModuleNotFoundError:
    from fakes.fake_llm import FakeLLM, Fault, diff_lines, prompt_text  # type: ignore[no-redef]
    from test_anchor import FILES, UTIL, make_file  # type: ignore[no-redef]

GOOD = {
    "path": "app/util.py",
    "line": 43,
    "end_line": None,
    "side": "RIGHT",
    "severity": "critical",
    "category": "security",
    "confidence": 0.95,
    "title": "eval on file contents",
    "body": "Arbitrary code execution: use json.loads or ast.literal_eval.",
    "suggestion": None,
    "quoted_code": "    return eval(data)",
}


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture
def caplog_llm(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="reviewbot.adapters.llm")
    return caplog


def client(fake: FakeLLM, **kw: Any) -> LLMClient:
    args: dict[str, Any] = {
        "base_url": fake.base_url,
        "api_key": "test-key",
        "model": "fake-model",
        "timeout": 5.0,
        "max_concurrency": 4,
        "backoff_base": 0.05,
        "backoff_max": 0.2,
    }
    args.update(kw)
    return LLMClient(**args)


def requests_for(files: list[FileDiff], **kw: Any):
    return build_requests(files, {}, instructions_for=lambda p: [], **kw)


def assert_valid(cands: list, files: dict[str, FileDiff] = FILES) -> None:
    for c in cands:
        assert files[c.path].accepts(c.line, c.side), c
        if c.end_line is not None:
            assert files[c.path].accepts_range(c.line, c.end_line, c.side), c


def logged(caplog: pytest.LogCaptureFixture, *needles: str) -> bool:
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "reviewbot.adapters.llm")
    return all(n in text for n in needles)


async def test_429_with_retry_after_is_honoured(fake: FakeLLM, caplog_llm) -> None:
    fake.enqueue_fault(status=429, retry_after=1).enqueue_json({"findings": [GOOD]})
    async with client(fake) as llm:
        cands, dropped, usage, problems = await review_requests(llm, requests_for([UTIL]), FILES)
    waited = fake.received[1].at - fake.received[0].at
    assert 1.0 <= waited < 3.0  # the header said 1 s; our own backoff would be <= 0.2 s
    assert [c.line for c in cands] == [43] and dropped == [] and problems == []
    assert usage.requests == 1 and usage.errors == 0 and usage.prompt_tokens > 0
    assert logged(caplog_llm, "HTTP 429", "retry 2/4 in 1.00 s", "Retry-After honoured")
    assert_valid(cands)


async def test_500_then_success(fake: FakeLLM, caplog_llm) -> None:
    fake.enqueue_fault(status=500).enqueue_fault(status=503).enqueue_json({"findings": [GOOD]})
    async with client(fake) as llm:
        cands, _, usage, problems = await review_requests(llm, requests_for([UTIL]), FILES)
    assert len(fake.requests) == 3 and len(cands) == 1 and problems == []
    assert logged(caplog_llm, "HTTP 500", "HTTP 503", "retry 3/4")
    assert_valid(cands)


async def test_timeout_then_success(fake: FakeLLM, caplog_llm) -> None:
    fake.delay(5).enqueue_json({"findings": [GOOD]})
    started = time.monotonic()
    async with client(fake, timeout=0.5) as llm:
        cands, _, usage, problems = await review_requests(llm, requests_for([UTIL]), FILES)
    assert time.monotonic() - started < 3.0  # did not wait for the slow reply
    assert len(cands) == 1 and usage.errors == 0 and problems == []
    assert logged(caplog_llm, "timeout; retry 2/4")
    assert_valid(cands)


async def test_malformed_http_body_is_retried(fake: FakeLLM, caplog_llm) -> None:
    fake.enqueue_malformed("<html>502 from a proxy</html>").enqueue_json({"findings": [GOOD]})
    async with client(fake) as llm:
        cands, _, _, problems = await review_requests(llm, requests_for([UTIL]), FILES)
    assert len(cands) == 1 and problems == []
    assert logged(caplog_llm, "malformed response body")
    assert_valid(cands)


async def test_retries_exhausted_is_recorded_and_others_still_count(fake: FakeLLM, caplog_llm) -> None:
    other = make_file("app/other.py", (1, 1, ["+import os", "+os.system(cmd)"]))
    files = {**FILES, "app/other.py": other}
    reqs = [*requests_for([UTIL]), *requests_for([other])]
    shell = {**GOOD, "path": "app/other.py", "line": 2, "quoted_code": "os.system(cmd)"}

    def responder(body: dict[str, Any]) -> Any:  # request 1 (util.py) always meets a 502
        if "app/util.py" in diff_lines(body):
            return Fault(502, "Bad gateway")
        return {"findings": [shell]}

    fake.responder = responder
    async with client(fake, max_attempts=2) as llm:
        cands, _, usage, problems = await review_requests(llm, reqs, files)
    assert usage.requests == 2 and usage.errors == 1
    assert len(problems) == 1 and "failed after 2 attempt(s)" in problems[0] and "HTTP 502" in problems[0]
    assert logged(caplog_llm, "request 1 (app/util.py) failed after 2 attempt(s)")
    assert [(c.id, c.path, c.line) for c in cands] == [("llm:1:0", "app/other.py", 2)]  # request 2 counts
    assert len([b for b in fake.requests if "app/util.py" in diff_lines(b)]) == 2
    assert_valid(cands, files)


async def test_non_retryable_4xx_raises_typed_error(fake: FakeLLM) -> None:
    fake.enqueue_fault(status=401, message="Incorrect API key provided")
    async with client(fake) as llm:
        with pytest.raises(LLMError) as err:
            await llm.complete(requests_for([UTIL])[0])
    assert err.value.status == 401 and not err.value.retryable
    assert len(fake.requests) == 1  # not retried


async def test_reply_that_is_not_json(fake: FakeLLM, caplog_llm) -> None:
    fake.enqueue("I'm sorry, I cannot review code today.")
    async with client(fake) as llm:
        cands, dropped, usage, problems = await review_requests(llm, requests_for([UTIL]), FILES)
    assert cands == [] and dropped == [] and usage.errors == 0 and usage.completion_tokens > 0
    assert len(problems) == 1 and "reply is not JSON" in problems[0]
    assert logged(caplog_llm, "reply is not JSON: \"I'm sorry")


async def test_candidate_outside_the_diff_is_reanchored_or_dropped(fake: FakeLLM, caplog_llm) -> None:
    moved = {**GOOD, "line": 7}  # wrong line, right quoted code
    lost = {**GOOD, "line": 300, "quoted_code": "nothing like this in the diff"}
    fake.enqueue_json({"findings": [moved, lost]})
    async with client(fake) as llm:
        cands, dropped, _, _ = await review_requests(llm, requests_for([UTIL]), FILES)
    assert [(c.id, c.line) for c in cands] == [("llm:0:0", 43)]
    assert [(d.stage, d.reason) for d in dropped] == [("anchor", "line outside the diff")]
    assert logged(
        caplog_llm,
        "re-anchored from app/util.py:7 RIGHT to line 43",
        "dropped candidate llm:0:1 (app/util.py:300 RIGHT",
        "): line outside the diff",
    )
    assert_valid(cands)


async def test_hallucinated_path_is_dropped(fake: FakeLLM, caplog_llm) -> None:
    fake.enqueue_json({"findings": [{**GOOD, "path": "app/imaginary.py"}, GOOD]})
    async with client(fake) as llm:
        cands, dropped, _, _ = await review_requests(llm, requests_for([UTIL]), FILES)
    assert [c.path for c in cands] == ["app/util.py"]
    assert [(d.stage, d.reason) for d in dropped] == [("anchor", "unknown path")]
    assert logged(
        caplog_llm,
        "dropped candidate llm:0:0 (app/imaginary.py:43 RIGHT, quoted '    return eval(data)'): unknown path",
    )
    assert_valid(cands)


async def test_invalid_items_become_parse_drops(fake: FakeLLM, caplog_llm) -> None:
    fake.enqueue_json({"findings": [{**GOOD, "severity": "apocalyptic"}, GOOD]})
    async with client(fake) as llm:
        cands, dropped, _, problems = await review_requests(llm, requests_for([UTIL]), FILES)
    assert len(cands) == 1
    assert [(d.stage, d.reason) for d in dropped] == [("parse", "unknown severity")]
    assert logged(caplog_llm, "finding 0 dropped: unknown severity 'apocalyptic'")
    assert_valid(cands)


@pytest.mark.parametrize(("rejected", "final_mode"), [({"json_schema"}, "json_object"), (True, "none")])
async def test_response_format_rejected_falls_back_and_is_remembered(
    caplog_llm: pytest.LogCaptureFixture, rejected: Any, final_mode: str
) -> None:
    with FakeLLM(reject_response_format=rejected, default_reply={"findings": [GOOD]}) as fake:
        async with client(fake, max_concurrency=1) as llm:
            reqs = requests_for([UTIL])
            cands, _, usage, problems = await review_requests(llm, reqs + reqs, FILES)
            assert llm.response_mode == final_mode
        kinds = [(b.get("response_format") or {}).get("type") for b in fake.requests]
    if final_mode == "none":
        assert kinds == ["json_schema", "json_object", None, None]
    else:  # the second request goes straight to the remembered fallback
        assert kinds == ["json_schema", "json_object", "json_object"]
    assert len(cands) == 2 and usage.errors == 0 and problems == []
    assert logged(caplog_llm, "no response_format json_schema: using json_object")
    if final_mode == "none":
        assert logged(caplog_llm, "no response_format json_object: using none")
    assert_valid(cands)


async def test_requests_run_concurrently_under_the_limit() -> None:
    files = [make_file(f"m{i}.py", (1, 1, [f"+x = {i}"])) for i in range(6)]
    reqs = [r for f in files for r in requests_for([f])]
    assert len(reqs) == 6
    with FakeLLM(latency=0.4) as fake:
        async with client(fake, max_concurrency=3) as llm:
            _, _, usage, _ = await review_requests(llm, reqs, files)
    assert fake.max_in_flight == 3
    assert usage.requests == 6 and usage.errors == 0


async def test_responder_answers_from_the_diff_and_usage_is_summed() -> None:
    a = make_file("a.py", (1, 1, ["+result = eval(user_input)", " pass"]))
    b = make_file("b.py", (5, 5, ["-old = 1", "+value = eval(text)"]))
    files = {"a.py": a, "b.py": b}

    def flag_eval(body: dict[str, Any]) -> dict[str, Any]:
        out = []
        for path, lines in diff_lines(body).items():
            for side, line, code in lines:
                if "eval(" in code and side == "RIGHT":
                    out.append({**GOOD, "path": path, "line": line, "quoted_code": code})
        return {"findings": out}

    with FakeLLM(responder=flag_eval) as fake:
        async with client(fake) as llm:
            reqs = [*requests_for([a]), *requests_for([b])]
            cands, dropped, usage, problems = await review_requests(llm, reqs, files)
            listed = await llm._client.models.list()
    assert sorted((c.path, c.line) for c in cands) == [("a.py", 1), ("b.py", 5)]
    assert dropped == [] and problems == []
    # usage is what the server reported, summed over the PR's requests
    assert usage.requests == 2
    assert usage.prompt_tokens == sum(max(1, len(prompt_text(b)) // 4) for b in fake.requests)
    assert usage.completion_tokens == sum(max(1, len(json.dumps(flag_eval(b))) // 4) for b in fake.requests)
    assert [m.id for m in listed.data] == ["fake-model"]
    assert_valid(cands, files)


async def test_retry_after_beyond_the_total_cap_gives_up_without_sleeping(fake: FakeLLM, caplog_llm) -> None:
    fake.enqueue_fault(status=429, retry_after=120)
    started = time.monotonic()
    async with client(fake, total_timeout=10) as llm:
        cands, _, usage, problems = await review_requests(llm, requests_for([UTIL]), FILES)
    assert time.monotonic() - started < 2.0
    assert cands == [] and usage.errors == 1 and "HTTP 429" in problems[0]
    assert logged(caplog_llm, "failed after 1 attempt(s)", "Retry-After 120 s exceeds the 10 s time budget")


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after("1.5", now) == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None
    assert parse_retry_after("-1", now) is None


async def test_client_uses_explicit_settings_only(fake: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # would fail if read
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    async with client(fake, api_key="explicit") as llm:
        await llm.complete(requests_for([UTIL])[0])
    sent = [r for r in fake.received if r.method == "POST"][0]
    assert sent.headers.get("authorization") == "Bearer explicit"
    assert sent.body["model"] == "fake-model" and sent.body["temperature"] == 0.0


async def test_demo_change_through_real_parse_diff_yields_only_valid_anchors(fixtures_dir) -> None:
    """parse_diff -> build_requests -> FakeLLM answering from the prompt (some lines wrong) -> review."""
    import difflib

    from reviewbot.review.diff import parse_diff

    demo = fixtures_dir / "demo"
    chunks = []
    for after in sorted((demo / "after").iterdir()):
        before = demo / "before" / after.name
        old = before.read_text().splitlines(keepends=True) if before.exists() else []
        chunks += difflib.unified_diff(
            old, after.read_text().splitlines(keepends=True), f"a/{after.name}", f"b/{after.name}", n=3
        )
    files = {f.path: f for f in parse_diff("".join(chunks))}
    assert files

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        out = []
        for path, lines in diff_lines(body).items():
            for n, (side, line, code) in enumerate(lines):
                if not code.strip():
                    continue
                wrong = line + 1000 if n % 3 == 0 else line  # a third claim a line far outside the diff
                out.append({**GOOD, "path": path, "line": wrong, "side": side, "quoted_code": code})
        out.append({**GOOD, "path": "not/in/the/diff.py"})
        return {"findings": out}

    with FakeLLM(responder=answer) as fake:
        async with client(fake) as llm:
            reqs = build_requests(
                list(files.values()), {}, instructions_for=lambda p: [], max_tokens_per_request=1400
            )
            cands, dropped, usage, problems = await review_requests(llm, reqs, files)
    assert len(reqs) >= 2 and usage.requests == len(reqs) and problems == []
    assert len(cands) > 10
    assert all(d.reason in ("unknown path", "line outside the diff") for d in dropped)
    assert sum(d.reason == "unknown path" for d in dropped) == len(reqs)
    assert_valid(cands, files)


async def test_client_from_settings(fake: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    from reviewbot.core.settings import Settings

    for var in ("OPENAI_API_KEY", "REVIEWBOT_LLM_API_KEY", "REVIEWBOT_LLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)

    assert client_from_settings(Settings(llm_base_url=None, llm_api_key=None)) is None
    settings = Settings(
        llm_base_url=fake.base_url, llm_api_key="from-settings", llm_model="m1", llm_timeout=3
    )
    llm = client_from_settings(settings, max_attempts=2)
    assert llm is not None and llm.max_attempts == 2 and llm.timeout == 3
    async with llm:
        reply = await llm.complete(requests_for([UTIL])[0])
    assert reply.model == "m1" and reply.usage_estimated is False
    sent = [r for r in fake.received if r.method == "POST"][0]
    assert sent.headers.get("authorization") == "Bearer from-settings" and sent.body["model"] == "m1"


async def test_unsupported_temperature_and_max_tokens_are_adapted_once(caplog_llm) -> None:
    with FakeLLM(reject_params={"temperature", "max_tokens"}, default_reply={"findings": [GOOD]}) as fake:
        async with client(fake, max_output_tokens=2000, max_concurrency=1) as llm:
            reqs = requests_for([UTIL])
            cands, _, usage, problems = await review_requests(llm, reqs + reqs, FILES)
        sent = [
            sorted(k for k in b if k in ("temperature", "max_tokens", "max_completion_tokens"))
            for b in fake.requests
        ]
    assert sent == [
        ["max_tokens", "temperature"],  # the fake complains about max_tokens first
        ["max_completion_tokens", "temperature"],
        ["max_completion_tokens"],
        ["max_completion_tokens"],  # the second request goes straight to what works
    ]
    assert len(cands) == 2 and usage.errors == 0 and problems == []
    assert logged(caplog_llm, "temperature not supported", "using max_completion_tokens")
    assert_valid(cands)
