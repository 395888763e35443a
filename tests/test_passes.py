"""Diverse LLM passes: plans, shuffled prompts, and a multi-pass review through the fake server."""

from __future__ import annotations

import asyncio
from typing import Any

from reviewbot.adapters.llm import LLMClient
from reviewbot.core.config import load_config
from reviewbot.core.config_schema import DIVERSE_TEMPERATURE, LLMPass
from reviewbot.core.domain import Candidate, ReviewResult
from reviewbot.filter.acceptance import load_prior
from reviewbot.review import context as ctx
from reviewbot.review.diff import parse_diff
from reviewbot.review.passes import PassPlan, plan_passes, shuffled, tag
from reviewbot.review.pipeline import Change, review_change
from reviewbot.review.rule_selection import ruleset_from_config
from tests.fakes.fake_llm import FakeLLM, diff_lines, flag_added
from tests.test_verify import unified

FILES = [f"svc/mod_{i}.py" for i in range(6)]
FILLER = "".join(f"def keep_{k}(v):\n    return v * {k}\n\n\n" for k in range(6))
BASE = {p: f"def first(xs):\n    return xs\n\n\n{FILLER}def last(xs):\n    return xs\n" for p in FILES}
HEAD = {
    p: f"def first(xs):\n    return xs[{i}]\n\n\n{FILLER}def last(xs):\n    return sorted(xs)[{i}]\n"
    for i, p in enumerate(FILES)
}


def index_error(request_json: dict[str, Any]) -> dict[str, Any]:
    """Every pass flags the first file's `xs[0]` the same way: the passes agree on one issue."""
    return flag_added(
        request_json,
        lambda path, code: path == FILES[0] and "xs[0]" in code,
        title="IndexError on an empty list",
        body="`{code}` raises IndexError when xs is empty.",
    )


def review(fake: FakeLLM, config_text: str) -> ReviewResult:
    config = load_config(config_text)

    async def go() -> ReviewResult:  # the client carries llm.temperature, as the App and CLI make it
        async with LLMClient(
            base_url=fake.base_url, api_key="k", model="fake-model", temperature=config.llm.temperature
        ) as client:
            return await review_change(
                Change(unified(BASE, HEAD), HEAD.get, repo="acme/svc", pr=3),
                config=config,
                rules=ruleset_from_config(config.rules),
                model=load_prior(),
                llm=client,
            )

    return asyncio.run(go())


def test_each_pass_differs_in_order_temperature_model_and_focus() -> None:
    config = (
        "min_acceptance: 0.0\nverify: false\nllm:\n  temperature: 0.1\n  passes:\n"
        "    - {}\n    - {model: local-coder, focus: 'security: injection and secrets'}\n"
        "    - {temperature: 1.1}\n"
    )
    with FakeLLM(responder=index_error) as fake:
        result = review(fake, config)
    assert len(fake.requests) == 3  # the small PR fits one request per pass
    by_model = sorted((r["model"], r["temperature"]) for r in fake.requests)
    assert by_model == [("fake-model", 0.1), ("fake-model", 1.1), ("local-coder", DIVERSE_TEMPERATURE)]
    orders = [list(diff_lines(r)) for r in fake.requests]
    assert all(sorted(o) == sorted(FILES) for o in orders)
    assert len({tuple(o) for o in orders}) == 3  # three different file orders
    focus = [r for r in fake.requests if r["model"] == "local-coder"][0]["messages"][0]["content"]
    assert focus.endswith("Focus of this review pass: security: injection and secrets")
    assert all(
        "Focus of this review pass" not in r["messages"][0]["content"]
        for r in fake.requests
        if r["model"] == "fake-model"
    )
    # the same issue from three passes: three distinct sources, one comment
    raised = [d for d in result.posted + result.suppressed if d.candidate.title.startswith("IndexError")]
    assert sorted(d.candidate.source for d in raised) == ["llm:pass1", "llm:pass2", "llm:pass3"]
    assert len({d.candidate.line for d in raised}) == 1
    assert [d.decision for d in raised].count("post") == 1
    assert result.usage.requests == 3


def test_one_pass_is_the_plain_review() -> None:
    with FakeLLM(responder=index_error) as fake:
        result = review(fake, "min_acceptance: 0.0\nverify: false\n")
    assert len(fake.requests) == 1 and fake.requests[0]["temperature"] == 0.0
    assert list(diff_lines(fake.requests[0])) == FILES  # diff order
    assert {d.candidate.source for d in result.posted} == {"llm"}


def test_plan_passes_warms_every_pass_after_the_first_unless_its_entry_says_otherwise() -> None:
    plans = plan_passes([LLMPass(), LLMPass(), LLMPass(temperature=0.0), LLMPass(model="m", focus="x")], 0.2)
    assert [(p.seed, p.temperature, p.model) for p in plans] == [
        (None, None, None),
        (2, DIVERSE_TEMPERATURE, None),
        (3, 0.0, None),
        (4, DIVERSE_TEMPERATURE, "m"),
    ]
    assert plan_passes([LLMPass(), LLMPass()], 1.5)[1].temperature == 1.5
    assert plans[3].system_extra() == "Focus of this review pass: x" and plans[0].system_extra() == ""


def test_shuffled_keeps_every_hunk_with_its_own_context_and_is_reproducible() -> None:
    files = parse_diff(unified(BASE, HEAD))
    contexts = {f.path: ctx.hunk_contexts(f, HEAD[f.path]) for f in files}
    assert all(len(f.hunks) == 2 for f in files)
    out_files, out_ctx = shuffled(files, contexts, 5)
    assert sorted(f.path for f in out_files) == sorted(FILES)
    assert [f.path for f in out_files] != FILES
    swapped = 0
    for f in out_files:
        original = next(o for o in files if o.path == f.path)
        assert sorted(id(h) for h in f.hunks) == sorted(id(h) for h in original.hunks)
        assert [c.hunk_index for c in out_ctx[f.path]] == list(range(len(f.hunks)))
        for hunk, c in zip(f.hunks, out_ctx[f.path], strict=True):  # each context follows its hunk
            added = [ln.text for ln in hunk.lines if ln.kind == "added"]
            assert added and all(text in c.snippet.split("\n") for text in added)
        swapped += f.hunks[0] is not original.hunks[0]
        assert original.hunks[0].new_start < original.hunks[1].new_start  # originals untouched
    assert swapped  # some file's hunks are in another order
    again, _ = shuffled(files, contexts, 5)
    assert [(f.path, [h.new_start for h in f.hunks]) for f in again] == [
        (f.path, [h.new_start for h in f.hunks]) for f in out_files
    ]
    assert shuffled(files, contexts, None) == (files, contexts)


def test_tag_marks_the_pass_only_in_a_multi_pass_review() -> None:
    one = [Candidate(id="llm:0:0", path="a.py", line=1, body="b")]
    assert tag(one, PassPlan(1, None, None), 1)[0].source == "llm"
    two = tag([Candidate(id="llm:0:0", path="a.py", line=1, body="b")], PassPlan(2, 2, 0.7), 2)
    assert (two[0].source, two[0].id) == ("llm:pass2", "llm:0:0#pass2")


def test_rank_and_review_size_describe_the_reply_that_listed_a_finding() -> None:
    """An LLM orders each reply on its own: a review of several requests has several first
    places, so a finding's review size is its reply's count, not every LLM finding of the PR
    (which the acceptance model would read as one long review with many first remarks)."""

    def every_added_line(request_json: dict[str, Any]) -> dict[str, Any]:
        return flag_added(request_json, lambda _p, _c: True, title="Index", body="`{code}` fails on []")

    config = "min_acceptance: 0.0\nverify: false\nllm:\n  max_tokens_per_request: 3500\n"
    with FakeLLM(responder=every_added_line) as fake:
        result = review(fake, config)
    assert len(fake.requests) > 1
    decided = [d for d in result.posted + result.suppressed if d.candidate.source == "llm"]
    by_reply: dict[str, list[int]] = {}
    for d in decided:
        by_reply.setdefault(d.candidate.id.rsplit(":", 1)[0], []).append(d.candidate.rank or 0)
    assert len(by_reply) == len(fake.requests)
    for d in decided:
        ranks = by_reply[d.candidate.id.rsplit(":", 1)[0]]
        assert d.review_size == d.candidate.reply_size == len(ranks) < len(decided)
        assert sorted(ranks) == list(range(len(ranks)))
