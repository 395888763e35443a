"""Real LLM servers' behaviours, reproduced by the fake with their own error bodies, at the DEFAULT
concurrency: reasoning models, small windows, output limits, quotas, keys, Azure, Ollama, retries."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from reviewbot.adapters.llm import LLMClient, client_from_settings
from reviewbot.adapters.llm_caps import CapsBook, family_caps
from reviewbot.core.config import load_config
from reviewbot.core.domain import FileDiff, ReviewResult
from reviewbot.core.settings import Settings
from reviewbot.filter.acceptance import load_prior
from reviewbot.review.pipeline import Change, review_change, review_requests
from reviewbot.review.prompt import build_requests
from reviewbot.review.rule_selection import ruleset_from_config
from tests.fakes.fake_llm import FakeLLM, Fault, diff_lines
from tests.test_anchor import make_file

#: LLMClient's and the settings' default concurrency: the tests must not hide races behind 1.
DEFAULT_CONCURRENCY = Settings.model_fields["llm_max_concurrency"].default


def flag_bugs(request_json: dict[str, Any]) -> dict[str, Any]:
    """The fake model: one finding per added line carrying `# BUG`."""
    findings = []
    for path, lines in diff_lines(request_json).items():
        for side, line, code in lines:
            if side == "RIGHT" and "# BUG" in code:
                findings.append(
                    {
                        "path": path,
                        "quoted_code": code,
                        "line": line,
                        "end_line": None,
                        "side": "RIGHT",
                        "body": "Divides by zero when the list is empty.",
                        "suggestion": None,
                        "severity": "high",
                        "category": "bug",
                        "confidence": 0.9,
                        "title": "Crash on empty input",
                    }
                )
    return {"findings": findings}


def new_file_diff(path: str, lines: list[str]) -> str:
    body = "".join(f"+{ln}\n" for ln in lines)
    return (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n"
        f"@@ -0,0 +1,{len(lines)} @@\n{body}"
    )


def big_change(files: int = 16, lines: int = 40) -> tuple[str, dict[str, str], set[tuple[str, int]]]:
    """A change of `files` new modules, each with planted bugs: (diff, head files, planted lines)."""
    diff, heads, planted = [], {}, set()
    for f in range(files):
        path = f"pkg/mod_{f:02d}.py"
        text = []
        for i in range(1, lines + 1):
            if i % 13 == 5:
                text.append(f"ratio_{f}_{i} = sum(values_{i}) / len(values_{i})  # BUG planted {f}.{i}")
                planted.add((path, i))
            else:
                text.append(f"value_{f}_{i} = compute_something(alpha_{i}, beta_{i}, gamma)")
        diff.append(new_file_diff(path, text))
        heads[path] = "\n".join(text) + "\n"
    return "".join(diff), heads, planted


def run_review(diff: str, heads: dict[str, str], make_llm: Any, config_text: str = "") -> ReviewResult:
    config = load_config(config_text or "min_acceptance: 0.0\nmax_comments: 200\n")

    async def go() -> ReviewResult:
        async with make_llm() as llm:
            assert llm.max_concurrency == DEFAULT_CONCURRENCY
            return await review_change(
                Change(diff_text=diff, read_head=heads.get, repo="acme/api", pr=7),
                config=config,
                rules=ruleset_from_config(config.rules),
                model=load_prior(),
                llm=llm,
            )

    return asyncio.run(go())


def reached_filter(result: ReviewResult) -> set[tuple[str, int]]:
    return {(d.candidate.path or "", d.candidate.line or 0) for d in [*result.posted, *result.suppressed]}


def client(fake: FakeLLM, **kw: Any) -> LLMClient:
    args: dict[str, Any] = {
        "base_url": fake.base_url,
        "api_key": "test-key",
        "model": fake.model,
        "timeout": 10.0,
        "backoff_base": 0.05,
        "backoff_max": 0.2,
    }
    args.update(kw)
    return LLMClient(**args)


def requests_for(files: list[FileDiff], budget: int = 12000):
    return build_requests(files, {}, instructions_for=lambda p: [], max_tokens_per_request=budget)


def many_files(n: int) -> dict[str, FileDiff]:
    return {
        f"m{i}.py": make_file(f"m{i}.py", (1, 1, [f"+total_{i} = sum(xs) / len(xs)  # BUG {i}", "+x = 1"]))
        for i in range(n)
    }


# ------------------------------------------------------------------------------- the must-show


def test_reasoning_model_with_a_3000_token_window_at_default_concurrency() -> None:
    """Every planted bug of a change much larger than the window reaches the filter, no request is
    left failed, and the report names what was learned about the model."""
    diff, heads, planted = big_change()
    with FakeLLM.reasoning_model(context_window=3000, responder=flag_bugs, latency=0.05) as fake:
        result = run_review(diff, heads, lambda: client(fake))
    assert sum(len(t) for t in heads.values()) // 4 > 3 * 3000  # the change is much larger
    assert planted <= reached_filter(result), sorted(planted - reached_filter(result))
    assert result.usage.errors == 0, result.notes
    assert fake.max_in_flight > 1  # requests really ran concurrently
    learned = next(n for n in result.notes if "learned from the server" in n)
    for fact in (
        "temperature not supported",
        "max_completion_tokens",
        "user message",
        "output limit 2000",
        "context window 3000",
    ):
        assert fact in learned, learned
    served = [r.body for r in fake.received if r.method == "POST" and r.status == 200]
    assert served and all(
        b["max_completion_tokens"] <= 1000
        and "temperature" not in b
        and "max_tokens" not in b
        and [m["role"] for m in b["messages"]] == ["user"]
        for b in served
    )
    # Each lesson is learned once: only requests already in flight meet the same refusal again.
    for lesson in ("'max_tokens'", "'temperature'", "does not support 'system'", "supports at most"):
        assert 1 <= sum(lesson in body for _, body in fake.refused) <= DEFAULT_CONCURRENCY, lesson
    assert not any("failed" in n for n in result.notes), result.notes


# ------------------------------------------------------------------------- capability learning


@pytest.mark.parametrize("param", ["temperature", "max_tokens"])
def test_a_refused_parameter_is_learned_race_free_at_default_concurrency(param: str) -> None:
    """The first 400 teaches every request in flight: none falls through to a failure."""
    files = many_files(12)
    reqs = [r for f in files.values() for r in requests_for([f])]
    with FakeLLM(reject_params={param}, responder=flag_bugs, latency=0.05) as fake:

        async def go() -> Any:
            async with client(fake) as llm:
                return await review_requests(llm, reqs, files), llm.learned()

        (cands, _, usage, problems), learned = asyncio.run(go())
    assert usage.errors == 0 and problems == [] and len(cands) == 12
    refused = [b for b in fake.requests if param in b]
    assert 1 <= len(refused) <= DEFAULT_CONCURRENCY  # only requests already in flight met the 400
    assert len(learned) == 1


def test_refused_system_role_sends_the_instructions_in_the_user_message() -> None:
    files = many_files(3)
    reqs = requests_for(list(files.values()))
    with FakeLLM(reject_roles={"system"}, responder=flag_bugs) as fake:

        async def go() -> Any:
            async with client(fake) as llm:
                return await review_requests(llm, reqs, files)

        cands, _, usage, _ = asyncio.run(go())
    assert usage.errors == 0 and len(cands) == 3
    last = fake.requests[-1]["messages"]
    assert [m["role"] for m in last] == ["user"] and "SECURITY" in last[0]["content"]


def test_reasoning_families_start_from_the_right_defaults() -> None:
    for name in ("o3-mini", "openai/o4-mini", "gpt-5", "o1"):
        caps = family_caps(name)
        assert (caps.temperature, caps.token_param, caps.system_role) == (
            False,
            "max_completion_tokens",
            "developer",
        ), name
    assert family_caps("o1-mini").system_role == "user"
    assert family_caps("gpt-4o-mini").temperature and family_caps("gpt-4o-mini").context_window == 128_000
    strict = {"reject_params": {"temperature", "max_tokens"}, "reject_roles": {"system"}}
    with FakeLLM(model="o3-mini", **strict) as fake:

        async def go() -> None:
            async with client(fake) as llm:
                await llm.complete(requests_for([make_file("a.py", (1, 1, ["+x = 1"]))])[0])

        asyncio.run(go())
    [body] = fake.requests  # right the first time: no 400 to learn from
    assert "temperature" not in body and body["max_completion_tokens"] > 0
    assert body["messages"][0]["role"] == "developer"


def test_output_limit_is_always_sent_and_a_too_large_one_is_learned() -> None:
    files = many_files(6)
    reqs = [r for f in files.values() for r in requests_for([f])]
    with FakeLLM(max_output=1500, responder=flag_bugs) as fake:

        async def go() -> Any:
            async with client(fake) as llm:
                return await review_requests(llm, reqs, files), llm.learned()

        (cands, _, usage, _), learned = asyncio.run(go())
    assert usage.errors == 0 and len(cands) == 6
    assert all(isinstance(b.get("max_tokens"), int) for b in fake.requests)
    assert fake.requests[-1]["max_tokens"] == 1500 and learned == ["output limit 1500 tokens"]
    assert "supports at most 1500 completion tokens" in fake.refused[0][1]


def test_capabilities_are_remembered_across_clients_sharing_a_book() -> None:
    """The App keeps one CapsBook across jobs: the second job sends what works straight away."""
    book = CapsBook()
    req = requests_for([make_file("a.py", (1, 1, ["+x = 1"]))])[0]
    with FakeLLM(reject_params={"temperature"}) as fake:

        async def go() -> None:
            for _ in range(2):
                async with client(fake, caps=book) as llm:
                    await llm.complete(req)

        asyncio.run(go())
    assert ["temperature" in b for b in fake.requests] == [True, False, False]


# ------------------------------------------------------------------- windows and output limits


@pytest.mark.parametrize("style", ["openai", "azure", "vllm"])
def test_context_length_exceeded_resplits_and_retries_the_halves(style: str) -> None:
    files = many_files(24)
    reqs = requests_for(list(files.values()))
    assert len(reqs) == 1
    with FakeLLM(context_window=2000, error_style=style, responder=flag_bugs) as fake:

        async def go() -> Any:
            async with client(fake, max_output_tokens=400) as llm:
                return await review_requests(llm, reqs, files), llm.learned()

        (cands, _, usage, problems), learned = asyncio.run(go())
    assert usage.errors == 0 and problems == []
    assert sorted(c.path for c in cands) == sorted(files)  # every hunk asked, every bug found
    assert "context window 2000 tokens" in learned
    status, body = fake.refused[0]
    assert status == 400 and "maximum context length is 2000 tokens" in body
    assert ('"code": "context_length_exceeded"' in body) == (style != "vllm")


def test_a_reply_flooding_past_the_findings_cap_is_cut_and_its_complete_findings_kept() -> None:
    """More findings than the prompt allows, cut at the output limit: the complete ones are kept and
    nothing more is asked (a flood must not multiply the requests)."""
    files = many_files(1)
    reqs = requests_for(list(files.values()))
    [(path, f)] = files.items()
    line = f.hunks[0].lines[0]

    def flood(body: dict[str, Any]) -> dict[str, Any]:
        one = flag_bugs(body)["findings"][0]
        return {"findings": [{**one, "title": f"Crash {i}"} for i in range(40)]}

    with FakeLLM(responder=flood) as fake:

        async def go() -> Any:
            async with client(fake, max_output_tokens=1200) as llm:
                return await review_requests(llm, reqs, files)

        cands, dropped, usage, problems = asyncio.run(go())
    assert usage.errors == 0 and len(fake.requests) == 1
    assert 8 <= len(cands) < 40 and {(c.path, c.line) for c in cands} == {(path, line.new_no)}
    assert not [d for d in dropped if d.stage == "parse"]


def test_a_reply_cut_before_any_finding_is_asked_again_in_halves() -> None:
    """A reasoning model can spend its whole output limit thinking: smaller requests fit."""
    files = many_files(8)
    reqs = requests_for(list(files.values()))

    def thinking(body: dict[str, Any]) -> dict[str, Any]:
        shown = diff_lines(body)
        return {"analysis": "Checking each file in turn. " * 12 * len(shown), **flag_bugs(body)}

    with FakeLLM(responder=thinking) as fake:

        async def go() -> Any:
            async with client(fake, max_output_tokens=400) as llm:
                return await review_requests(llm, reqs, files)

        cands, _, usage, problems = asyncio.run(go())
    assert usage.errors == 0 and len(fake.requests) > 2
    assert sorted(c.path for c in cands) == sorted(files)


# ---------------------------------------------------------------------------- servers as they are


def test_insufficient_quota_fails_fast_with_one_clear_line() -> None:
    files = many_files(10)
    reqs = [r for f in files.values() for r in requests_for([f])]
    with FakeLLM(quota_exhausted=True) as fake:

        async def go() -> Any:
            async with client(fake) as llm:
                return await review_requests(llm, reqs, files)

        started = time.monotonic()
        cands, _, usage, problems = asyncio.run(go())
        elapsed = time.monotonic() - started
    assert cands == [] and usage.errors == 10
    assert len(problems) == 1 and "out of quota" in problems[0] and "insufficient_quota" in problems[0]
    assert len(fake.requests) <= DEFAULT_CONCURRENCY  # no retries, the rest not even sent
    assert elapsed < 3


def test_a_refused_key_fails_fast_with_one_clear_line() -> None:
    files = many_files(6)
    reqs = [r for f in files.values() for r in requests_for([f])]
    with FakeLLM(api_key="the-right-key") as fake:

        async def go() -> Any:
            async with client(fake, api_key="a-wrong-key") as llm:
                return await review_requests(llm, reqs, files)

        _, _, usage, problems = asyncio.run(go())
    assert usage.errors == 6 and len(fake.requests) <= DEFAULT_CONCURRENCY
    assert problems == ["the LLM server refused the API key (HTTP 401): check REVIEWBOT_LLM_API_KEY"]


def test_retry_waits_release_the_concurrency_slot() -> None:
    """A 429 with Retry-After: 1 on the first request must not stall the others behind it."""
    files = many_files(4)
    reqs = [r for f in files.values() for r in requests_for([f])]
    with FakeLLM(responder=flag_bugs) as fake:
        fake.enqueue_fault(status=429, retry_after=1)

        async def go() -> Any:
            async with client(fake, max_concurrency=1) as llm:
                return await review_requests(llm, reqs, files)

        cands, _, usage, _ = asyncio.run(go())
        statuses = [r.status for r in fake.received]
    assert usage.errors == 0 and len(cands) == 4
    assert statuses == [429, 200, 200, 200, 200]  # the others were served during the wait


def test_azure_deployment_urls_with_api_version_and_api_key_header() -> None:
    files = many_files(2)
    reqs = requests_for(list(files.values()))
    with FakeLLM(
        model="my-deployment", azure_api_version="2024-10-21", api_key="azure-key", responder=flag_bugs
    ) as fake:
        settings = Settings(
            llm_base_url=fake.base_url.removesuffix("/v1"),
            llm_api_key="azure-key",
            llm_model="my-deployment",
            llm_api_version="2024-10-21",
        )

        async def go() -> Any:
            llm = client_from_settings(settings)
            assert llm is not None
            async with llm:
                return await review_requests(llm, reqs, files)

        cands, _, usage, _ = asyncio.run(go())
        [received] = [r for r in fake.received if r.method == "POST"]
    assert usage.errors == 0 and len(cands) == 2
    assert received.path == "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    assert received.headers.get("api-key") == "azure-key"


def test_ollama_drops_what_exceeds_num_ctx_unless_extra_body_sets_it() -> None:
    """Ollama keeps the end of a prompt longer than its context and says nothing (default 4k on
    most GPUs): REVIEWBOT_LLM_EXTRA_BODY passes options.num_ctx through."""
    files = many_files(30)
    reqs = requests_for(list(files.values()))
    with FakeLLM(context_window=1024, error_style="ollama", responder=flag_bugs) as fake:
        for extra in (None, {"options": {"num_ctx": 16384}}):

            async def go(extra: Any = extra) -> Any:
                async with client(fake, extra_body=extra) as llm:
                    return await review_requests(llm, reqs, files)

            asyncio.run(go())
        assert fake.truncated_prompts == 1  # the first run only
        assert fake.requests[-1]["options"] == {"num_ctx": 16384}
    env = Settings(llm_base_url="http://ollama:11434/v1", llm_extra_body='{"options": {"num_ctx": 8192}}')
    assert env.llm_extra_body == {"options": {"num_ctx": 8192}}


def test_extra_body_comes_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWBOT_LLM_EXTRA_BODY", '{"options": {"num_ctx": 16384}}')
    monkeypatch.setenv("REVIEWBOT_LLM_PRICES", '{"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}}')
    settings = Settings.from_env()
    assert settings.llm_extra_body == {"options": {"num_ctx": 16384}}
    assert settings.llm_prices == {"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}}


def test_timeout_and_retry_budget_come_from_the_settings() -> None:
    settings = Settings(
        llm_base_url="http://127.0.0.1:9/v1", llm_timeout=7, llm_max_attempts=2, llm_retry_budget=30
    )
    llm = client_from_settings(settings)
    assert llm is not None
    assert (llm.timeout, llm.max_attempts, llm.total_timeout) == (7, 2, 30)
    asyncio.run(llm.aclose())


def test_a_per_request_fault_from_the_responder_is_a_real_http_error() -> None:
    with FakeLLM(responder=lambda body: Fault(503, "overloaded")) as fake:

        async def go() -> Any:
            async with client(fake, max_attempts=2) as llm:
                return await review_requests(llm, requests_for([make_file("a.py", (1, 1, ["+x"]))]), {})

        _, _, usage, problems = asyncio.run(go())
    assert usage.errors == 1 and "HTTP 503" in problems[0]
    assert [r.status for r in fake.received] == [503, 503]


@pytest.mark.parametrize(
    ("text", "window", "overflow", "too_large"),
    [
        # OpenAI / Azure OpenAI (code context_length_exceeded)
        (
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 "
            "tokens. Please reduce the length of the messages.",
            8192,
            True,
            False,
        ),
        # vLLM, prompt + max_tokens over --max-model-len
        (
            "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens (1900 in "
            "the messages, 200 in the completion). Please reduce the length of the messages or completion.",
            2048,
            True,
            False,
        ),
        # llama.cpp server
        (
            "the request exceeds the available context size (4,096 tokens), try increasing it",
            4096,
            True,
            False,
        ),
        # OpenAI: an output limit above the model's
        (
            "max_tokens is too large: 20000. This model supports at most 16384 completion tokens, "
            "whereas you "
            "provided 20000.",
            None,
            False,
            True,
        ),
        # vLLM: an output limit that leaves no room in the window
        (
            "'max_tokens' or 'max_completion_tokens' is too large: 4096. "
            "This model's maximum context length is "
            "3000 tokens and your request has 1200 input tokens (4096 > 3000 - 1200).",
            3000,
            False,
            True,
        ),
        ("Invalid value for 'top_p'", None, False, False),
    ],
)
def test_servers_error_wordings_are_read(
    text: str, window: int | None, overflow: bool, too_large: bool
) -> None:
    from reviewbot.adapters.llm_caps import context_window_in, is_context_overflow, is_output_too_large

    assert context_window_in(text) == window
    assert is_context_overflow(text, None) == overflow
    assert is_output_too_large(text) == too_large


def test_every_setting_is_documented() -> None:
    from pathlib import Path

    from reviewbot.core.settings import env_var

    docs = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    missing = [env_var(name) for name in Settings.model_fields if f"`{env_var(name)}`" not in docs]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_a_fatal_failure_lasts_one_review_on_a_shared_client() -> None:
    """The App shares one client across jobs: a topped-up quota is noticed on the next review."""
    files = many_files(4)
    reqs = [r for f in files.values() for r in requests_for([f])]
    with FakeLLM(quota_exhausted=True, responder=flag_bugs) as fake:

        async def go() -> Any:
            async with client(fake) as llm:
                first = await review_requests(llm, reqs, files)
                fake.quota_exhausted = False  # the operator tops the account up
                return first, await review_requests(llm, reqs, files)

        (_, _, before, _), (cands, _, after, problems) = asyncio.run(go())
    assert before.errors == 4 and after.errors == 0 and len(cands) == 4 and problems == []
