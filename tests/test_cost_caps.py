"""Cost under the operator's control, through the App path (fake GitHub + fake LLM over HTTP): a
repo config cannot raise passes, pick another model or spend past the token caps; past a cap the
review is posted with what it has and the check run names the cap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reviewbot.core.config import load_config
from reviewbot.core.costs import OperatorLimits, Price, TokenCap, apply_limits, cost_of, token_cap
from reviewbot.core.domain import LLMUsage
from reviewbot.core.settings import Settings
from tests.test_app_e2e import INSTALLATION, REPO, World, module

REPO_CONFIG = (
    "min_acceptance: 0.01\nmax_comments: 50\npasses: 3\n"
    "llm:\n  model: gpt-expensive\n  max_tokens_per_request: 4000\n"
)
PER_PR = 5000


class CappedWorld(World):
    """The App with the operator's caps set."""

    caps: dict[str, Any] = {
        "llm_max_passes": 1,
        "llm_allowed_models": "fake-cheap",
        "llm_max_tokens_per_pr": PER_PR,
        "llm_prices": {"fake-model": {"prompt": 1.0, "completion": 2.0}},
    }

    def settings(self) -> Settings:
        return super().settings().model_copy(update=self.caps)


def big_pull(world: World, number: int, files: int = 8) -> Any:
    heads = {f"m{i}.py": module(60, {7: f"m{i}a", 41: f"m{i}b"}, name=f"v{i}") for i in range(files)}
    return world.gh.add_pull(REPO, number, head_files=heads)


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[CappedWorld]:
    w = CappedWorld(tmp_path)
    w.gh.add_repo(REPO, INSTALLATION, {".github/reviewbot.yml": REPO_CONFIG})
    w.start_worker()
    yield w
    w.close()


def test_caps_hold_whatever_the_repo_config_asks_and_the_check_run_names_them(capped: CappedWorld) -> None:
    pr = big_pull(capped, 1)
    capped.deliver("pull_request", capped.pr_event("opened", pr))
    capped.settle()

    [review] = capped.reviews()
    assert review["comments"], "the review is posted with what was found before the cap"
    [check] = capped.checks(pr.head_sha)
    assert "stopped by a cost cap" in check["output"]["title"]
    assert f"tokens per PR (REVIEWBOT_LLM_MAX_TOKENS_PER_PR={PER_PR})" in check["output"]["summary"]
    text = check["output"]["text"]
    assert "passes: 3 asked by the repository config, 1 allowed" in text
    assert "'gpt-expensive' is not among the models the operator allows" in text
    # The LLM saw the operator's model only, one pass, and never more than the cap (estimated).
    assert {b["model"] for b in capped.llm.requests} == {"fake-model"}
    [(raw,)] = capped.rows("SELECT usage FROM reviews")
    usage = json.loads(raw)
    assert usage["stopped_by"].startswith("tokens per PR") and usage["model"] == "fake-model"
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= PER_PR
    assert usage["cost"] == pytest.approx((usage["prompt_tokens"] + 2 * usage["completion_tokens"]) / 1e6)
    reg = capped.registry
    assert reg.get_sample_value("reviewbot_llm_capped_reviews_total") == 1
    assert reg.get_sample_value("reviewbot_llm_cost_total", {"model": "fake-model"}) == pytest.approx(
        usage["cost"]
    )


class DailyCappedWorld(CappedWorld):
    caps = {"llm_max_tokens_per_installation_day": 6000}


def test_the_installation_daily_cap_stops_the_next_review(tmp_path: Path) -> None:
    w = DailyCappedWorld(tmp_path)
    # verify: false keeps the first review's tokens (the review requests alone) under the cap
    config = "min_acceptance: 0.01\nmax_comments: 50\nverify: false\n"
    w.gh.add_repo(REPO, INSTALLATION, {".github/reviewbot.yml": config})
    w.start_worker()
    try:
        first = big_pull(w, 1, files=3)
        w.deliver("pull_request", w.pr_event("opened", first))
        w.settle()
        second = big_pull(w, 2, files=3)
        w.deliver("pull_request", w.pr_event("opened", second))
        w.settle()
        assert len(w.reviews(1)) == 1 and len(w.reviews(2)) == 1  # both posted
        [check] = w.checks(second.head_sha)
        assert "stopped by a cost cap" in check["output"]["title"]
        assert "tokens per installation per day" in check["output"]["summary"]
        [check1] = w.checks(first.head_sha)
        assert "cost cap" not in check1["output"]["title"]
    finally:
        w.close()


def test_stats_shows_usage_by_model_and_capped_reviews(capped: CappedWorld) -> None:
    from reviewbot.app.records import Tenant
    from reviewbot.learning.usage_stats import render_usage, usage_totals

    pr = big_pull(capped, 1, files=2)
    capped.deliver("pull_request", capped.pr_event("opened", pr))
    capped.settle()
    totals = usage_totals(capped.store, Tenant(INSTALLATION, REPO))
    assert totals.reviews == 1 and set(totals.by_model) == {"fake-model"}
    assert totals.by_model["fake-model"].cost is not None
    assert "fake-model" in "\n".join(render_usage(totals))


# ------------------------------------------------------------------------------ pure pieces


def test_apply_limits_caps_passes_and_models_and_leaves_the_rest() -> None:
    config = load_config("passes: 4\nllm:\n  model: big\n  temperature: 0.3\n")
    limits = OperatorLimits(max_passes=2, allowed_models=("small",))
    capped, notes = apply_limits(config, limits, "small")
    assert len(capped.pass_specs()) == 2 and capped.llm.model is None and capped.llm.temperature == 0.3
    assert len(notes) == 2
    same, none = apply_limits(config, OperatorLimits(), "small")
    assert same is config and none == []


def test_apply_limits_holds_each_pass_to_the_allowed_models() -> None:
    config = load_config("llm:\n  passes:\n    - {model: small}\n    - {model: big, focus: security}\n")
    capped, notes = apply_limits(config, OperatorLimits(allowed_models=("small",)), "small")
    assert [(p.model, p.focus) for p in capped.pass_specs()] == [("small", None), (None, "security")]
    assert notes == [
        "llm.passes[1].model: 'big' is not among the models the operator allows "
        "(REVIEWBOT_LLM_ALLOWED_MODELS); that pass uses the repository's model"
    ]


def test_token_cap_takes_the_tighter_of_per_pr_and_what_is_left_today() -> None:
    limits = OperatorLimits(tokens_per_pr=10_000, tokens_per_installation_day=50_000)
    assert token_cap(limits, used_today=0).limit == 10_000  # type: ignore[union-attr]
    left = token_cap(limits, used_today=45_000)
    assert left is not None and left.limit == 5_000 and "per day" in left.name
    assert token_cap(OperatorLimits()) is None
    cap = TokenCap(100, "x")
    assert cap.reserve(60) and not cap.reserve(60) and cap.stopped == 1
    cap.settle(60, 30)
    assert cap.reserve(60)


def test_cost_by_the_price_table() -> None:
    usage = LLMUsage(prompt_tokens=1_000_000, completion_tokens=500_000, model="m")
    assert cost_of(usage, {"m": Price(0.15, 0.6)}) == pytest.approx(0.45)
    assert cost_of(usage, {}) is None


def test_the_pr_title_description_and_commits_reach_the_prompt(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.gh.add_repo(REPO, INSTALLATION, {".github/reviewbot.yml": "min_acceptance: 0.01\n", "a.py": module(20)})
    w.start_worker()
    try:
        pr = w.gh.add_pull(
            REPO,
            1,
            head_files={"a.py": module(20, {3: "a3"})},
            title="Average the stock",
            body="Adds the mean of the stock levels.",
        )
        w.gh.push(REPO, 1, {"a.py": module(20, {3: "a3", 9: "a9"})}, message="Also average returns\n\nbody")
        pr = w.gh.pulls[(REPO, 1)]  # the pushed head
        w.deliver("pull_request", w.pr_event("opened", pr))
        w.settle()
        user = w.llm.requests[-1]["messages"][-1]["content"]
        assert "Title: Average the stock" in user and "Adds the mean of the stock levels." in user
        assert "Commits:\n- Average the stock\n- Also average returns\n</intent-" in user  # subjects only
    finally:
        w.close()
