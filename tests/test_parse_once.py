"""A review parses each head file once: the context stage, the rules and verification share one
tree (a second parse would cost as much again as everything else the pipeline does to a file)."""

from __future__ import annotations

import asyncio
import difflib
from typing import Any

import pytest
from tree_sitter import Language, Parser, Tree

from reviewbot.adapters.llm import LLMClient
from reviewbot.core import languages
from reviewbot.core.config import load_config
from reviewbot.core.domain import ReviewResult
from reviewbot.filter.acceptance import load_prior
from reviewbot.review.pipeline import Change, review_change
from reviewbot.review.rule_selection import ruleset_from_config
from tests.fakes.fake_llm import FakeLLM, flag_added

BASE = {
    "app/store.py": "def load(path):\n    return open(path).read()\n",
    "app/util.py": "class Cache:\n    def get(self, key):\n        return None\n",
    "web/view.js": "function show(items) {\n  return items.length;\n}\n",
}
HEAD = {
    "app/store.py": "def load(path, seen=[]):\n    seen.append(path)\n    data = open(path).read()\n"
    "    return data / len(seen)\n",
    "app/util.py": "class Cache:\n    def get(self, key, hits={}):\n        hits[key] = 1\n"
    "        return 1 / len(hits)\n",
    "web/view.js": "function show(items) {\n  const n = items.length;\n  return 100 / len(items);\n}\n",
}


class CountingParser:
    """A real tree-sitter parser that records every source it parses (tree_sitter.Parser cannot
    be subclassed, so this one wraps it); it stands in for reviewbot.core.languages.Parser."""

    def __init__(self, language: Language, parsed: list[bytes]) -> None:
        self._parser = Parser(language)
        self._parsed = parsed

    def parse(self, source: bytes, *args: Any, **kwargs: Any) -> Tree:
        self._parsed.append(source)
        return self._parser.parse(source, *args, **kwargs)


def unified(base: dict[str, str], head: dict[str, str]) -> str:
    out = []
    for path in sorted(head):
        a, b = base[path].splitlines(True), head[path].splitlines(True)
        out.append(
            f"diff --git a/{path} b/{path}\n" + "".join(difflib.unified_diff(a, b, f"a/{path}", f"b/{path}"))
        )
    return "".join(out)


def divisions(request_json: dict[str, Any]) -> dict[str, Any]:
    return flag_added(
        request_json,
        lambda _path, code: "/ len(" in code,
        title="Division by zero",
        body="`{code}` raises when the list is empty.",
    )


def test_each_head_file_is_parsed_once_per_review(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(None)
    rules = ruleset_from_config(config.rules)  # compiling the rules parses their examples: not counted
    parsed: list[bytes] = []
    monkeypatch.setattr(languages, "Parser", lambda language: CountingParser(language, parsed))

    async def go(fake: FakeLLM) -> ReviewResult:
        async with LLMClient(base_url=fake.base_url, api_key="k", model="fake-model") as client:
            return await review_change(
                Change(unified(BASE, HEAD), HEAD.get, repo="acme/app", pr=3),
                config=config,
                rules=rules,
                model=load_prior(),
                llm=client,
            )

    with FakeLLM(responder=divisions) as fake:
        result = asyncio.run(go(fake))
        verification_requests = len(fake.verify_requests)

    assert sorted(parsed) == sorted(text.encode() for text in HEAD.values())
    # ...and every stage that reads the tree ran on it: the context (symbols of the LLM's
    # findings), the rules (mutable defaults) and verification (a request was sent)
    found = result.posted + result.suppressed
    assert {d.candidate.symbol for d in found if d.candidate.source == "llm"} >= {"load", "get", "show"}
    assert any(d.candidate.rule_id for d in found)
    assert verification_requests >= 1
