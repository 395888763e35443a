"""What the App subscribes to is what it handles; the check run's "Re-run" re-reviews; the review
body's held-back count counts findings, not duplicates or dropped lines."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from reviewbot.app import webhooks
from reviewbot.core.domain import Candidate, Decision, Dropped, ReviewResult
from reviewbot.review.render import held_back, render_review_summary
from tests.test_app_e2e import CONFIG, INSTALLATION, REPO, World, module

ROOT = Path(__file__).resolve().parent.parent
INSTALL_EVENTS = {"installation", "installation_repositories"}  # always sent to an App


def test_every_subscribed_event_is_handled() -> None:
    events = yaml.safe_load((ROOT / "app.yml").read_text())["default_events"]
    for event in events:
        try:
            action = webhooks.route(event, {"action": "no-such-action"})
        except webhooks.PayloadError:
            continue  # routed: its handler wanted more of the payload
        assert action != webhooks.Ignore(f"event {event!r} is not used"), f"app.yml subscribes to {event}"
    assert "check_run" in events and "pull_request_review" not in events


def _rerequested(head_sha: str, base_sha: str, pr: int, *, name: str = "reviewbot") -> dict:
    payload = json.loads((ROOT / "fixtures" / "webhooks" / "check_run.rerequested.json").read_text())
    payload["check_run"]["name"] = name
    payload["check_run"]["head_sha"] = head_sha
    [pull] = payload["check_run"]["pull_requests"]
    pull["number"], pull["head"]["sha"], pull["base"]["sha"] = pr, head_sha, base_sha
    return payload


def test_check_run_rerequested_routes_to_a_forced_review() -> None:
    fixture = json.loads((ROOT / "fixtures" / "webhooks" / "check_run.rerequested.json").read_text())
    action = webhooks.route("check_run", fixture)
    assert isinstance(action, webhooks.RerunReview)
    assert (action.pr, action.head_sha) == (2, fixture["check_run"]["head_sha"])
    [job] = webhooks.plan(action, event="check_run", payload=fixture)
    assert job.kind == "review" and job.payload["force"] is True and job.head_sha == action.head_sha
    other = _rerequested(action.head_sha, "b" * 40, 2, name="some-linter")
    assert isinstance(webhooks.route("check_run", other), webhooks.Ignore)
    moved_on = _rerequested(action.head_sha, "b" * 40, 2)
    moved_on["check_run"]["pull_requests"][0]["head"]["sha"] = "c" * 40  # the PR has a newer head
    assert isinstance(webhooks.route("check_run", moved_on), webhooks.Ignore)


def test_rerun_button_reviews_the_head_again(world: World) -> None:
    gh = world.gh
    gh.add_repo(REPO, INSTALLATION, {**CONFIG, "a.py": module(30)})
    pr = gh.add_pull(REPO, 1, head_files={"a.py": module(30, {4: "a4"})})
    world.deliver("pull_request", world.pr_event("opened", pr))
    world.settle()
    assert len(world.reviews()) == 1 and len(world.checks(pr.head_sha)) == 1
    payload = _rerequested(pr.head_sha, pr.base_sha, 1)
    payload["repository"] = world.repo_payload()
    payload["installation"] = {"id": INSTALLATION}
    r = world.deliver("check_run", payload)
    assert r.json()["outcome"] == "queued"
    world.settle()
    assert len(world.reviews()) == 2 and len(world.checks(pr.head_sha)) == 2
    assert world.reviews()[1]["commit_id"] == pr.head_sha


def _decision(verdict: str, reason: str, n: int) -> Decision:
    cand = Candidate(id=f"c{n}", path="a.py", line=n, body="b", title="t")
    return Decision(
        candidate=cand,
        decision=verdict,
        reason=reason,
        score=0.3,  # type: ignore[arg-type]
        severity="low",
        category="bug",
        cluster=f"k{n}",
        fingerprint=f"fp{n}",
    )


def test_held_back_counts_only_findings_the_filter_held_back() -> None:
    result = ReviewResult(
        posted=[_decision("post", "score", 1)],
        suppressed=[
            _decision("suppress", "below acceptance threshold 0.50", 2),
            _decision("suppress", "below min_severity (medium)", 3),
            _decision("suppress", "duplicate of c1", 4),
            _decision("suppress", "already posted", 5),
            _decision("suppress", "duplicate of c9 (already posted)", 6),
        ],
        dropped=[
            Dropped(
                candidate=Candidate(id="c7", path="x.py", line=9, body="b"),
                stage="anchor",
                reason="line outside the diff",
            )
        ],
    )
    assert held_back(result) == 2
    assert "2 lower-value findings held back" in render_review_summary(result)
    result.suppressed = result.suppressed[2:]
    assert "held back" not in render_review_summary(result)
