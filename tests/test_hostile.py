"""Issue #11 items 1-3: a PR author's text and a tenant's config, each bounded in time.

Every test runs its hostile input under a deadline (tests/deadline.py): on the code before the
fix each one ran for seconds to hours; a regression fails here in about a second.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import time
from pathlib import Path

import pytest

from reviewbot.adapters.llm import LLMClient
from reviewbot.core.config import MAX_CONFIG_BYTES, ConfigError, _merge, _Origins, _parse, load_config
from reviewbot.core.config_schema import RepoConfig
from reviewbot.core.domain import DiffLine, FileDiff, Hunk
from reviewbot.core.globs import MAX_PATTERN_CHARS, MAX_PATTERNS, glob_list, path_selected, wildcard_match
from reviewbot.filter.acceptance import load_prior
from reviewbot.review.pipeline import Change, review_change
from reviewbot.review.prompt import build_requests, neutralise
from reviewbot.review.render import render_check_run
from reviewbot.review.rule_selection import all_added, ruleset_from_config
from tests.deadline import Overran, deadline, within
from tests.fakes.fake_llm import FakeLLM

# --------------------------------------------------------------------------- 1. one added line


def test_deadline_helper_stops_a_quadratic_regex() -> None:
    """The helper itself: the old tag regex on 40k spaces ran 26 s; the deadline stops it at 0.3 s."""
    import re

    old = re.compile(r"<(?=\s*/?\s*(?:diff|context|instructions))", re.IGNORECASE)
    with pytest.raises(Overran):
        within(0.3, old.sub, "<\u200b", "<" + " " * 40_000)


@pytest.mark.parametrize("spaces", [20_000, 150_000, 1_000_000])
def test_a_line_of_lt_and_spaces_is_neutralised_in_linear_time(spaces: int) -> None:
    """Issue #11 item 1: '<' + 150,000 spaces froze serve (20k: 7.1 s, 1M: over 10 minutes)."""
    text = "<" + " " * spaces + "/diff-x>"
    out = within(1.0, neutralise, text)
    assert out.startswith("<\u200b") and len(out) == len(text) + 1


def test_neutralise_still_defuses_every_tag_lookalike() -> None:
    for text in ("</diff-abc>", "< / DIFF-x>", "<context", "<\t/\ninstructions", "<<diff", "<  /  Context"):
        assert "<\u200b" in neutralise(text), text
    for text in ("a < b", "<div>", "</ dif", "<-", "</>", "<" * 5):
        assert neutralise(text) == text


def test_many_lts_and_whitespace_runs_stay_linear() -> None:
    for text in ("<" * 1_000_000, ("< " * 10 + "x") * 50_000, ("<" + "\t" * 1000) * 1000, "< /" * 300_000):
        within(1.0, neutralise, text)


def _hostile_file(line: str) -> FileDiff:
    hunk = Hunk(
        old_start=0,
        old_len=0,
        new_start=1,
        new_len=2,
        lines=[
            DiffLine(kind="added", text=line, old_no=None, new_no=1),
            DiffLine(kind="added", text="x = 1", old_no=None, new_no=2),
        ],
    )
    return FileDiff(path="a.py", old_path=None, status="added", hunks=[hunk], language="python")


def test_the_hostile_line_goes_through_prompt_building_in_time() -> None:
    file = _hostile_file("<" + " " * 150_000 + "diff")
    with deadline(3.0, "build_requests"):
        requests = build_requests([file], {}, instructions_for=lambda _p: [], max_tokens_per_request=12_000)
    assert requests


def test_the_hostile_line_is_reviewed_end_to_end_through_the_llm_port() -> None:
    """The whole pipeline over real HTTP (fake LLM): the review completes and the LLM is asked."""
    line = "<" + " " * 150_000 + "/diff-0>"
    diff = "diff --git a/a.py b/a.py\n" + "".join(
        difflib.unified_diff([], [line + "\n", "x = 1\n"], "a/a.py", "b/a.py")
    )
    config = load_config(None)

    async def go(base_url: str) -> None:
        async with LLMClient(base_url=base_url, api_key="k", model="fake", max_attempts=1) as client:
            await review_change(
                Change(diff_text=diff, read_head=lambda _p: None, repo="acme/api", pr=1),
                config=config,
                rules=ruleset_from_config(config.rules),
                model=load_prior(),
                llm=client,
            )

    with FakeLLM() as llm, deadline(10.0, "review_change"):
        asyncio.run(go(llm.base_url))
        assert llm.requests  # the model was asked: nothing froze before it


# --------------------------------------------------------------------------- 2. tenant globs


DEEP = "/".join(["a"] * 40) + "/y.py"


def test_a_nested_globstar_exclude_against_a_deep_path_is_linear() -> None:
    """Issue #11 item 2: `exclude: ["**/" x14 + "x"]` with a 40-deep path: frozen over 300 s."""
    config = load_config('paths:\n  exclude: ["' + "**/" * 14 + 'x"]\n')
    assert within(0.5, config.path_included, DEEP) is True
    assert within(0.5, config.path_included, DEEP.replace("y.py", "x")) is False


def test_star_runs_against_a_long_name_are_linear() -> None:
    """`*a` x6 + `b` against 100 a's: 86 s; as a skip_authors glob: 29.5 s."""
    pattern = "*a" * 6 + "b"
    config = load_config(f'paths:\n  include: ["{pattern}"]\ntriggers:\n  skip_authors: ["{pattern * 4}"]\n')
    assert within(0.5, config.path_included, "a" * 100) is False
    assert within(0.5, config.should_review, "a" * 100 + "c", [], False)[0] is True
    assert within(0.5, wildcard_match, "*a" * 60 + "b", "a" * 1000) is False
    rule_paths = ["*a" * 30 + "b", "!" + "**/" * 30 + "z"]
    assert within(0.5, path_selected, "a" * 200, rule_paths) is False


def test_glob_length_and_count_are_capped_with_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=f"at most {MAX_PATTERN_CHARS}"):
        load_config('paths:\n  exclude: ["' + "a" * (MAX_PATTERN_CHARS + 1) + '"]\n')
    many = "".join(f'  - "g{i}/**"\n' for i in range(MAX_PATTERNS + 1))
    with pytest.raises(ConfigError, match=f"at most {MAX_PATTERNS}") as info:
        load_config("paths:\n exclude:\n" + many.replace("  -", "   -"))
    assert "paths.exclude" in str(info.value)
    with pytest.raises(ConfigError, match="triggers.skip_authors"):
        load_config('triggers:\n  skip_authors: ["' + "*" * (MAX_PATTERN_CHARS + 1) + '"]\n')


def test_a_list_of_a_thousand_globs_costs_one_pass_per_path() -> None:
    """20k globs cost 0.84 s per path behind a 1,024-entry cache; a capped list is compiled once."""
    globs = [f"gen{i}/**/" + "*" * 3 + ".py" for i in range(MAX_PATTERNS)]
    config = load_config("paths:\n  exclude:\n" + "".join(f'    - "{g}"\n' for g in globs))
    config.path_included("warm/up.py")
    started = time.perf_counter()
    for i in range(200):
        config.path_included(f"src/{i}/{DEEP}")
    assert (time.perf_counter() - started) / 200 < 0.005
    assert config.path_included("gen999/a/b.py") is False


# ------------------------------------------------------------------------- 2. custom rule regexes


def _custom_rule_config(regex: str) -> RepoConfig:
    query = '((string) @match (#match? @match "' + regex.replace("\\", "\\\\").replace('"', '\\"') + '"))'
    return RepoConfig.model_validate(
        {
            "rules": {
                "custom": [
                    {
                        "id": "evil",
                        "languages": ["python"],
                        "severity": "low",
                        "category": "bug",
                        "message": "m",
                        "query": query,
                    }
                ]
            }
        }
    )


@pytest.mark.parametrize("regex", ['^"(a+)+$', "(a|aa)*c", '(.*a){12}"x'])
def test_a_catastrophic_match_regex_runs_in_linear_time(regex: str) -> None:
    """`#match? "^\\"(a+)+$"` doubled its time per character (Python's backtracking re)."""
    config = _custom_rule_config(regex)
    rules = ruleset_from_config(config.rules)
    source = "x = '" + "a" * 5000 + "'\n" + 'y = "' + "a" * 60 + 'b"\n'
    found = within(2.0, rules.run, all_added("a.py", source), source)
    assert [c.rule_id for c in found if c.rule_id == "evil"] == []
    assert rules.overrun == {}


def test_a_match_regex_re2_cannot_run_is_refused_at_config_time() -> None:
    from reviewbot.review.rules import RuleQueryError

    config = _custom_rule_config("(a)\\1")  # a backreference: no linear-time engine runs it
    with pytest.raises(RuleQueryError, match="linear-time engine"):
        ruleset_from_config(config.rules)


def test_a_custom_rule_that_overruns_is_disabled_for_the_review_and_named_in_the_check_run() -> None:
    config = _custom_rule_config("a")
    rules = ruleset_from_config(config.rules)
    rules.budget = 0.0  # every rule overruns at once: the mechanism, not a race against the clock
    source = "x = 'a'\n" * 50
    diff = "diff --git a/a.py b/a.py\n" + "".join(
        difflib.unified_diff([], source.splitlines(keepends=True), "a/a.py", "b/a.py")
    )
    result = asyncio.run(
        review_change(Change(diff, lambda _p: source), config=config, rules=rules, model=load_prior())
    )
    assert all(c.rule_id != "evil" for c in [d.candidate for d in result.posted + result.suppressed])
    assert "evil" in rules.overrun
    _title, _summary, text = render_check_run(result)
    assert "custom rule 'evil' overran" in text


def test_a_custom_rule_within_budget_still_fires_and_builtin_rules_are_untouched() -> None:
    config = _custom_rule_config("^.a")
    rules = ruleset_from_config(config.rules)
    source = "x = 'a'\ny = eval(z)\n"
    found = rules.run(all_added("a.py", source), source)
    assert {c.rule_id for c in found} >= {"evil", "py-eval-exec"}
    assert rules.overrun == {}


# --------------------------------------------------------------------------- 3. config size


def test_merging_20k_keys_is_linear() -> None:
    """Issue #11 item 3: 20k keys (252 KiB) took 49 s to merge (each key rescanned every line)."""
    text = "rules:\n  severity:\n" + "".join(f"    r{i}: high\n" for i in range(20_000))
    parsed = _parse_unbounded(text)
    origin = _Origins()
    with deadline(3.0, "merge 20k keys twice"):
        merged = _merge({}, parsed.data, origin, parsed.lines, "org")
        merged = _merge(merged, parsed.data, origin, parsed.lines, "repo")
    assert len(merged["rules"]["severity"]) == 20_000
    assert origin[("rules", "severity", "r19999")] == ("repo", 20_002)


def _parse_unbounded(text: str):  # type: ignore[no-untyped-def]
    """The parser without the size caps, to measure the merge on its own."""
    import reviewbot.core.config as config_module

    saved = config_module.MAX_CONFIG_BYTES, config_module._MAX_NODES
    config_module.MAX_CONFIG_BYTES, config_module._MAX_NODES = 10**9, 10**9
    try:
        return _parse(text, "x.yml")
    finally:
        config_module.MAX_CONFIG_BYTES, config_module._MAX_NODES = saved


def test_a_20k_key_config_is_answered_within_a_second() -> None:
    text = "rules:\n  severity:\n" + "".join(f"    r{i}: high\n" for i in range(20_000))
    with pytest.raises(ConfigError) as info, deadline(1.0, "load 20k keys"):
        load_config(text, text)
    assert "at most" in str(info.value)


def test_a_one_megabyte_config_is_refused_at_once_with_the_limit_named() -> None:
    """A 1 MB file (under GitHub's inline limit) ran past 900 s."""
    text = "paths:\n  exclude:\n" + "".join(f'    - "gen{i}/**"\n' for i in range(60_000))
    assert len(text) > 1_000_000
    with pytest.raises(ConfigError, match=f"at most {MAX_CONFIG_BYTES}"), deadline(0.5, "load 1 MB"):
        load_config(text)


def test_many_small_values_under_the_byte_cap_hit_the_value_cap() -> None:
    text = "paths:\n  exclude: [" + ",".join("a" for _ in range(30_000)) + "]\n"
    assert len(text) < MAX_CONFIG_BYTES
    with pytest.raises(ConfigError, match="more than 10000 keys and values"), deadline(3.0, "load"):
        load_config(text)


def test_a_realistic_config_still_loads_and_its_globs_are_shared() -> None:
    config = load_config(
        "paths:\n  exclude: ['docs/', '**/gen/**']\nmin_severity_by_path:\n  'tests/': high\n"
    )
    assert not config.path_included("docs/a.md") and config.path_included("src/a.py")
    assert config.min_severity_for("tests/a/b.py") == "high"
    assert glob_list(("docs/", "**/gen/**")) is glob_list(("docs/", "**/gen/**"))


# ------------------------------------------------------- other regexes over untrusted text


def test_a_flood_of_noqa_markers_on_a_matched_line_is_linear() -> None:
    """`noqa:[^\\n]*\\bS\\d{3}` rescanned the line from every `noqa:`: 10,000 of them cost 13 s."""
    rules = ruleset_from_config(load_config(None).rules)
    source = "x = eval(y)  # " + "noqa:" * 20_000 + "\n"
    found = within(2.0, rules.run, all_added("a.py", source), source)
    assert any(c.rule_id == "py-eval-exec" for c in found)  # no S-code: not suppressed
    source = "x = eval(y)  # " + "noqa:" * 20_000 + " S307\n"
    found = within(2.0, rules.run, all_added("a.py", source), source)
    assert not any(c.rule_id == "py-eval-exec" for c in found)


def test_unclosed_html_comments_in_a_body_are_dropped_in_linear_time() -> None:
    from reviewbot.review.render import _clean

    out = within(1.0, _clean, "<!--" * 100_000 + "x")
    assert "<!--" not in out and out.endswith("x")
    assert _clean("a<!-- hidden -->b<!-- open") == "ab&lt;!-- open"


def test_a_file_name_of_spaces_in_a_diff_header_parses_in_time() -> None:
    from reviewbot.review.diff import parse_diff

    name = "a" + " " * 40_000 + "b.py"
    diff = f"diff --git a/{name} b/{name}\n--- a/{name}\n+++ b/{name}\n@@ -1 +1 @@\n-x\n+y\n"
    [file] = within(2.0, parse_diff, diff)
    assert file.path.endswith("b.py")


def test_all_custom_rules_share_one_budget_and_their_count_is_capped() -> None:
    rule = {
        "languages": ["python"],
        "severity": "low",
        "category": "bug",
        "message": "m",
        "query": '((string) @match (#match? @match "a"))',
    }
    config = RepoConfig.model_validate({"rules": {"custom": [{**rule, "id": f"r{i}"} for i in range(3)]}})
    rules = ruleset_from_config(config.rules)
    rules.total_budget = 0.0  # the shared budget is gone before any rule runs
    source = "x = 'a'\n"
    rules.run(all_added("a.py", source), source)
    assert set(rules.overrun) == {"r0", "r1", "r2"}
    assert "the 0 s budget of all custom rules" in rules.overrun["r0"]
    with pytest.raises(ConfigError, match="rules.custom"):
        load_config(
            "rules:\n  custom:\n"
            + "".join(
                f"    - {{id: r{i}, languages: [python], severity: low, category: bug, message: m, "
                "instruction: i}\n"
                for i in range(51)
            )
        )


# ------------------------------------------------------------------ the App, end to end


HOSTILE_CONFIG = (
    "min_acceptance: 0.01\n"
    'paths:\n  exclude: ["' + "**/" * 14 + 'x", "' + "*a" * 6 + 'b"]\n'
    'triggers:\n  skip_authors: ["' + "*a" * 12 + 'b"]\n'
    'path_instructions:\n  - path: "' + "**/" * 20 + '*.py"\n    instructions: be careful\n'
    "rules:\n  custom:\n    - id: evil\n      languages: [python]\n      severity: low\n"
    "      category: bug\n      message: m\n"
    '      query: \'((string) @match (#match? @match "^\\"(a+)+$"))\'\n'
)


def test_a_hostile_pr_and_config_are_reviewed_while_another_tenant_is_acked_and_reviewed(
    tmp_path: Path,
) -> None:
    """Through the real server, worker, fake GitHub and fake LLM: the hostile tenant's PR (a line
    of '<' and 150,000 spaces, a 40-deep path, a config of pathological globs and a catastrophic
    #match?) is reviewed in seconds, and a second tenant's delivery is acknowledged in < 1 s and
    reviewed too. Before the fix the first review never finished and froze its worker."""
    from tests.test_app_e2e import INSTALLATION, REPO, World, module

    deep = "/".join(["a"] * 40) + "/deep.py"
    hostile_line = "<" + " " * 150_000 + "/diff-0>"
    other_repo, other_installation = "globex/web", INSTALLATION + 1
    world = World(tmp_path)
    try:
        world.start_worker()
        gh = world.gh
        gh.add_repo(REPO, INSTALLATION, {".github/reviewbot.yml": HOSTILE_CONFIG, "a.py": module(20)})
        gh.add_repo(
            other_repo,
            other_installation,
            {".github/reviewbot.yml": "min_acceptance: 0.01\n", "b.py": module(20)},
        )
        src = module(20, {3: "a3"}) + hostile_line + "\nx = '" + "a" * 40 + "b'\n"
        pr = gh.add_pull(REPO, 1, head_files={"a.py": src, deep: "y = 1\n"})
        other = gh.add_pull(other_repo, 1, head_files={"b.py": module(20, {3: "b3"})})

        with deadline(2.0, "ack the hostile delivery"):
            world.deliver("pull_request", world.pr_event("opened", pr))
        payload = world.pr_event("opened", other)
        payload["repository"] = {"id": gh.repos[other_repo].id, "full_name": other_repo}
        payload["installation"] = {"id": other_installation}
        started = time.perf_counter()
        world.deliver("pull_request", payload)
        assert time.perf_counter() - started < 1.0  # the other tenant is acknowledged at once
        world.settle(timeout=30)

        assert gh.posted_reviews(other_repo, 1), "the other tenant was reviewed"
        [check] = world.checks(pr.head_sha)
        assert check["conclusion"] in ("success", "neutral"), check
        assert "deep.py" in json.dumps(world.llm.requests)  # the deep path went to the LLM
        assert world.rows("SELECT COUNT(*) FROM jobs WHERE state = 'dead'") == [(0,)]
    finally:
        world.close()


def test_a_lone_surrogate_in_a_config_is_a_config_error_not_a_crash() -> None:
    """Found by the fuzzer: libyaml cannot encode a lone surrogate (UnicodeEncodeError); the
    Python composer answers instead."""
    for text in ("a: \ud800\n", "paths:\n  exclude: ['\udcff/**']\n", "\ud800"):
        try:
            load_config(text)
        except ConfigError as exc:
            assert exc.messages
