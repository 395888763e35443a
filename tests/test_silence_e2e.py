"""Never silently silent (issue #10): when nothing clears the bar, the App's check run says how
many candidates there were, the best score and which setting would post it. Real HTTP only."""

from __future__ import annotations

from tests.test_app_e2e import INSTALLATION, REPO, World, module


def test_check_run_explains_why_nothing_was_posted(world: World) -> None:
    gh = world.gh
    gh.add_repo(REPO, INSTALLATION, {".github/reviewbot.yml": "min_acceptance: 0.999\n", "a.py": module(30)})
    pr = gh.add_pull(REPO, 1, head_files={"a.py": module(30, {5: "a5", 20: "a20"})})
    world.deliver("pull_request", world.pr_event("opened", pr))
    world.settle()
    [check] = world.checks(pr.head_sha)
    summary = check["output"]["summary"]
    assert "0 comments posted" in check["output"]["title"]
    assert "Nothing posted: 2 candidates" in summary, summary
    assert "the best scored" in summary and "acceptance threshold 1.00 (min_acceptance)" in summary
    assert "`min_acceptance: 0." in summary and "would post it" in summary
