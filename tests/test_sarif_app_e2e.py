"""SARIF in through the App: check-run annotations and SARIF artifacts of the head commit, fetched
from the fake GitHub over HTTP, reviewed with the rules and the fake LLM, posted or suppressed."""

from __future__ import annotations

import json
from pathlib import Path

from reviewbot.review.sarif_in import parse_sarif
from tests.test_app_e2e import INSTALLATION, REPO, World

SARIF = Path(__file__).resolve().parent.parent / "fixtures" / "sarif"
CONFIG = "min_acceptance: 0.5\nsarif_in:\n  check_runs: [ruff, 'golangci-*']\n  artifacts: [semgrep-sarif]\n"


def _ruff_annotations() -> list[dict[str, object]]:
    """ruff's findings as the check-run annotations `ruff check --output-format github` leaves."""
    return [
        {
            "path": "report.py",
            "start_line": c.line,
            "end_line": c.line,
            "annotation_level": "failure",
            "title": (c.rule_id or "").split("/", 1)[1],
            "message": c.body,
        }
        for c in parse_sarif((SARIF / "ruff.sarif").read_text()).candidates
    ]


def test_app_imports_check_runs_and_artifacts_through_the_filter(world: World) -> None:
    gh = world.gh
    gh.add_repo(
        REPO,
        INSTALLATION,
        {".github/reviewbot.yml": CONFIG, "report.py": (SARIF / "before" / "report.py").read_text()},
    )
    pr = gh.add_pull(REPO, 1, head_files={"report.py": (SARIF / "after" / "report.py").read_text()})
    gh.add_check_run(REPO, pr.head_sha, "ruff", _ruff_annotations())
    gh.add_check_run(REPO, pr.head_sha, "golangci-lint", [], status="in_progress")
    gh.add_check_run(
        REPO,
        pr.head_sha,
        "unrelated",
        [{"path": "report.py", "start_line": 5, "annotation_level": "failure", "message": "not asked for"}],
    )
    semgrep = (SARIF / "semgrep.sarif").read_text()
    gh.add_artifact(REPO, pr.head_sha, "semgrep-sarif", {"reports/semgrep.sarif": semgrep})
    gh.add_artifact(REPO, pr.head_sha, "coverage", {"coverage.sarif": "{}"})  # not asked for

    world.deliver("pull_request", world.pr_event("opened", pr))
    world.settle()

    [review] = world.reviews()
    bodies = {c["line"]: c["body"] for c in review["comments"]}
    # the md5 finding only ruff raised, on an added line: posted (scored by the rule's record)
    assert "md5" in bodies[31]
    # eval and shell=True: reviewbot's rules, ruff and semgrep raised each; one comment per line
    assert sorted(bodies) == [21, 25, 31]
    rows = world.rows("SELECT decision, reason, fingerprint, body FROM findings ORDER BY id")
    dup = [r for r in rows if r[0] == "suppress" and r[1].startswith("duplicate of")]
    assert len(dup) == 4, rows  # ruff S307, semgrep no-eval, ruff S602, semgrep shell=True
    assert any(
        r[0] == "suppress" and r[1].startswith("below acceptance") and "imported but unused" in r[3]
        for r in rows
    )
    assert not any("not asked for" in r[3] for r in rows)
    # what was dropped, and that a linter had not finished, is in the funnel and the notes
    [(funnel,)] = world.rows("SELECT funnel FROM reviews")
    assert json.loads(funnel)["dropped"]["sarif: not on a line this change adds (pre-existing)"] == 2
    [check] = [c for c in world.checks(pr.head_sha) if c["name"] == "reviewbot"]
    assert "golangci-lint: not completed yet" in check["output"]["text"] + check["output"]["summary"]
    downloads = [r.path for r in gh.requests if "/artifacts/" in r.path and r.path.endswith("/zip")]
    assert len(downloads) == 1, "only the configured artifact is downloaded"


def test_app_without_sarif_in_config_asks_github_for_nothing_more(world: World) -> None:
    gh = world.gh
    gh.add_repo(
        REPO,
        INSTALLATION,
        {
            ".github/reviewbot.yml": "min_acceptance: 0.5\n",
            "report.py": (SARIF / "before" / "report.py").read_text(),
        },
    )
    pr = gh.add_pull(REPO, 1, head_files={"report.py": (SARIF / "after" / "report.py").read_text()})
    gh.add_check_run(REPO, pr.head_sha, "ruff", _ruff_annotations())
    world.deliver("pull_request", world.pr_event("opened", pr))
    world.settle()
    [review] = world.reviews()
    assert sorted(c["line"] for c in review["comments"]) == [21, 25]  # the rules alone
    assert not [r for r in gh.requests if "check-runs" in r.path and r.method == "GET"]
    assert not [r for r in gh.requests if "/actions/" in r.path]
