"""`reviewbot review` exit codes a CI can trust: LLM requests that failed unrecovered are not a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reviewbot.adapters.local import build_repo_from_dirs
from reviewbot.commands.review_cmd import EXIT_LLM_FAILED
from tests.fakes.fake_llm import FakeLLM
from tests.test_review_e2e import DEMO, hostile_responder, review_json, run_cli


@pytest.fixture()
def demo(tmp_path: Path) -> tuple[Path, str, str]:
    repo = tmp_path / "demo"
    base, head = build_repo_from_dirs(repo, DEMO / "before", DEMO / "after")
    return repo, base, head


def test_unreachable_llm_exits_with_its_own_code_unless_allowed(demo: tuple[Path, str, str]) -> None:
    repo, base, head = demo
    env = {"REVIEWBOT_LLM_BASE_URL": "http://127.0.0.1:9/v1", "REVIEWBOT_LLM_MAX_ATTEMPTS": "1"}
    args = ("review", str(repo), "--base", base, "--head", head, "--format", "json")
    failed = run_cli(*args, "--fail-on", "critical", env=env)
    assert failed.returncode == EXIT_LLM_FAILED == 3, failed.stderr
    assert "LLM request(s) failed and were not recovered" in failed.stderr
    report = json.loads(failed.stdout)  # the report is still written
    assert report["usage"]["errors"] >= 1
    allowed = run_cli(*args, "--allow-llm-failure", env=env)
    assert allowed.returncode == 0, allowed.stderr


def test_exhausted_quota_is_one_line_and_exit_3(demo: tuple[Path, str, str]) -> None:
    repo, base, head = demo
    with FakeLLM(quota_exhausted=True) as llm:
        proc = review_json(repo, base, head, llm)
        asked = len(llm.requests)
    assert proc.returncode == 3
    notes = json.loads(proc.stdout)["notes"]
    assert sum("out of quota" in n for n in notes) == 1 and asked <= 4


def test_a_recovered_llm_failure_is_a_pass_and_commits_reach_the_prompt(demo: tuple[Path, str, str]) -> None:
    repo, base, head = demo
    with FakeLLM(responder=hostile_responder) as llm:
        llm.enqueue_fault(status=503)
        proc = review_json(
            repo,
            base,
            head,
            llm,
            "--title",
            "Add inventory sync",
            "--description",
            "Syncs stock levels nightly.",
        )
        user = llm.requests[-1]["messages"][-1]["content"]
    assert proc.returncode == 0, proc.stderr
    assert "Title: Add inventory sync" in user and "Syncs stock levels nightly." in user
    assert "Commits" in user  # the demo repo's commit subject, read from git
