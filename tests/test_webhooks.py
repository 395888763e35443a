"""webhooks.py: signatures and routing, on every real payload example and on trimmed fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reviewbot.app import webhooks
from reviewbot.app.webhooks import (
    Command,
    EnqueueReview,
    Feedback,
    Ignore,
    InstallationChange,
    PayloadError,
    Ping,
    parse_command,
    plan,
    route,
    sign,
    verify_signature,
)


def load(fixtures_dir: Path, name: str) -> dict:
    return json.loads((fixtures_dir / "webhooks" / f"{name}.json").read_text())


# --- signatures ----------------------------------------------------------------------------------


def test_github_documented_test_vector() -> None:
    secret, body = b"It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(secret, body) == expected
    assert verify_signature(secret, body, expected)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=ÿÿ",
    ],
)
def test_wrong_or_missing_signature_is_rejected(header: str | None) -> None:
    assert not verify_signature(b"It's a Secret to Everybody", b"Hello, World!", header)


def test_signature_depends_on_body_and_secret() -> None:
    good = sign(b"k", b"body")
    assert not verify_signature(b"k", b"body ", good)
    assert not verify_signature(b"K", b"body", good)
    assert not verify_signature(b"", b"body", sign(b"", b"body"))  # an empty secret never verifies


# --- every real example --------------------------------------------------------------------------

REVIEW_ACTIONS = {"opened", "reopened", "ready_for_review", "synchronize"}


def expected_type(event: str, payload: dict) -> type:
    """What each real example must route to, stated independently of route()'s code paths."""
    action = payload.get("action")
    has_inst = "installation" in payload
    if event == "ping":
        return Ping
    if event == "pull_request":
        if action in REVIEW_ACTIONS or action == "closed":
            return (EnqueueReview if action in REVIEW_ACTIONS else Feedback) if has_inst else Ignore
        return Ignore
    if event == "installation":
        return InstallationChange if action in {"created", "deleted", "suspend", "unsuspend"} else Ignore
    if event == "installation_repositories":
        return InstallationChange
    if event == "pull_request_review_thread":
        return Feedback if has_inst else Ignore
    if event == "issue_comment":
        # every real example is a comment on a plain issue
        assert "pull_request" not in payload["issue"]
        return Ignore
    if event == "pull_request_review_comment":
        return Feedback if payload["comment"].get("in_reply_to_id") else Ignore
    return Ignore  # check_run, check_suite, push, pull_request_review, github_app_authorization


@pytest.mark.shared
def test_every_real_payload_routes_to_the_expected_action(shared_data: Path) -> None:
    root = shared_data / "github-webhooks"
    files = sorted(p for p in root.glob("*/*.json") if p.parent.name != "schemas")
    assert len(files) >= 70
    seen: dict[type, int] = {}
    for path in files:
        event = path.parent.name
        payload = json.loads(path.read_text())
        action = route(event, payload)
        want = expected_type(event, payload)
        assert isinstance(action, want), f"{path.relative_to(root)}: {action!r} is not {want.__name__}"
        seen[type(action)] = seen.get(type(action), 0) + 1
        jobs = plan(action, event=event, payload=payload)
        assert all(json.dumps(j.payload) for j in jobs)  # job payloads are JSON
        if isinstance(action, EnqueueReview):
            pr = payload["pull_request"]
            assert (action.repo, action.pr, action.head_sha, action.base_sha) == (
                payload["repository"]["full_name"],
                pr["number"],
                pr["head"]["sha"],
                pr["base"]["sha"],
            )
            assert action.author == pr["user"]["login"]
            assert action.labels == tuple(lb["name"] for lb in pr["labels"])
            assert jobs[0].kind == "review" and jobs[0].dedupe_key
    assert {EnqueueReview, Feedback, InstallationChange, Ping, Ignore} <= set(seen)


@pytest.mark.shared
def test_real_installation_examples_carry_repositories(shared_data: Path) -> None:
    root = shared_data / "github-webhooks"
    created = route("installation", json.loads((root / "installation/created.payload.json").read_text()))
    assert isinstance(created, InstallationChange)
    assert created.installation_id == 957387 and created.account == "Codertocat"
    assert [r.full_name for r in created.repos_added] == ["Codertocat/Hello-World"]
    removed = route(
        "installation_repositories",
        json.loads((root / "installation_repositories/removed.payload.json").read_text()),
    )
    assert isinstance(removed, InstallationChange) and removed.action == "removed"
    assert [r.full_name for r in removed.repos_removed] == ["octocat/Hello-World"]


# --- trimmed fixtures (no ../shared needed) ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("pull_request.opened", EnqueueReview),
        ("pull_request.synchronize", EnqueueReview),
        ("pull_request.ready_for_review", EnqueueReview),
        ("pull_request.closed", Feedback),
        ("issue_comment.command_pause", Command),
        ("issue_comment.plain_issue", Ignore),
        ("installation.created", InstallationChange),
        ("installation.deleted", InstallationChange),
        ("installation.suspend", InstallationChange),
        ("installation_repositories.added", InstallationChange),
        ("pull_request_review_thread.resolved", Feedback),
        ("pull_request_review_comment.reply", Feedback),
        ("ping", Ping),
        ("check_run.created", Ignore),
    ],
)
def test_fixture_payloads_route(fixtures_dir: Path, name: str, want: type) -> None:
    event = name.split(".")[0]
    assert isinstance(route(event, load(fixtures_dir, name)), want)


def test_review_fields_and_jobs(fixtures_dir: Path) -> None:
    payload = load(fixtures_dir, "pull_request.synchronize")
    action = route("pull_request", payload)
    assert isinstance(action, EnqueueReview)
    assert action.action == "synchronize" and action.before_sha == payload["before"]
    assert action.installation_id == 1 and not action.draft and not action.author_is_bot
    jobs = plan(action, event="pull_request", payload=payload)
    assert [j.kind for j in jobs] == ["review", "feedback"]
    assert jobs[0].supersede and jobs[0].dedupe_key == f"review:{action.repo}#{action.pr}@{action.head_sha}"
    assert jobs[1].payload["webhook_event"] == "pull_request" and jobs[1].payload["webhook"] is payload


def test_draft_and_bot_author_are_carried_not_filtered(fixtures_dir: Path) -> None:
    payload = load(fixtures_dir, "pull_request.opened")
    payload["pull_request"]["draft"] = True
    payload["pull_request"]["user"] = {"login": "dependabot[bot]", "id": 5, "type": "Bot"}
    action = route("pull_request", payload)
    assert isinstance(action, EnqueueReview) and action.draft and action.author_is_bot


def test_commands(fixtures_dir: Path) -> None:
    payload = load(fixtures_dir, "issue_comment.command_pause")
    action = route("issue_comment", payload)
    assert action == Command(
        kind="pause",
        installation_id=1,
        repo="Codertocat/Hello-World",
        pr=payload["issue"]["number"],
        comment_id=payload["comment"]["id"],
        user="Codertocat",
        repo_id=payload["repository"]["id"],
    )
    assert [j.kind for j in plan(action)] == ["command.pause"]
    for body, kind in [("@reviewbot review", "review"), ("Hey @ReviewBot RESUME please", "resume")]:
        payload["comment"]["body"] = body
        assert route("issue_comment", payload).kind == kind  # type: ignore[union-attr]
    payload["comment"]["body"] = "@reviewbot review"
    payload["comment"]["user"] = {"login": "ci-bot[bot]", "id": 9, "type": "Bot"}
    assert route("issue_comment", payload) == Ignore("comment by a bot")


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ("@reviewbot review", "review"),
        ("please\n@reviewbot pause\nthanks", "pause"),
        ("> @reviewbot pause\nno", None),
        ("```\n@reviewbot pause\n```", None),
        ("@reviewbotx pause", None),
        ("email me at x@reviewbot pause", None),
        ("@reviewbot approve", None),
        ("", None),
    ],
)
def test_parse_command(body: str, want: str | None) -> None:
    assert parse_command(body) == want


def test_installation_repositories_added(fixtures_dir: Path) -> None:
    action = route("installation_repositories", load(fixtures_dir, "installation_repositories.added"))
    assert isinstance(action, InstallationChange)
    assert action.action == "added" and [r.full_name for r in action.repos_added] == ["Codertocat/Space"]
    job = plan(action)[0]
    assert webhooks.installation_change_from_payload(json.loads(json.dumps(job.payload))) == action


def test_review_thread_and_reply(fixtures_dir: Path) -> None:
    thread = route("pull_request_review_thread", load(fixtures_dir, "pull_request_review_thread.resolved"))
    assert isinstance(thread, Feedback) and thread.action == "resolved" and thread.thread_comment_ids
    reply = route("pull_request_review_comment", load(fixtures_dir, "pull_request_review_comment.reply"))
    assert isinstance(reply, Feedback) and reply.in_reply_to_id and reply.body == "Good catch, fixed."


def test_unknown_event_and_action_are_ignored(fixtures_dir: Path) -> None:
    assert isinstance(route("star", {"action": "created"}), Ignore)
    payload = load(fixtures_dir, "pull_request.opened")
    payload["action"] = "labeled"
    assert isinstance(route("pull_request", payload), Ignore)


@pytest.mark.parametrize(
    ("event", "mutate"),
    [
        ("pull_request", lambda p: p.pop("pull_request")),
        ("pull_request", lambda p: p["pull_request"].__setitem__("number", "2")),
        ("pull_request", lambda p: p["pull_request"].__setitem__("number", True)),
        ("pull_request", lambda p: p["pull_request"]["head"].pop("sha")),
        ("pull_request", lambda p: p.__setitem__("repository", [])),
        ("pull_request", lambda p: p.__setitem__("action", 3)),
        ("pull_request", lambda p: p["pull_request"].__setitem__("labels", [{"name": 1}])),
        ("pull_request", lambda p: p.__setitem__("installation", {"id": "1"})),
    ],
)
def test_malformed_payloads_raise_payload_error(fixtures_dir: Path, event: str, mutate) -> None:
    payload = load(fixtures_dir, "pull_request.opened")
    mutate(payload)
    with pytest.raises(PayloadError):
        route(event, payload)


@pytest.mark.parametrize("payload", [[], "x", 3, None])
def test_non_object_payload(payload: object) -> None:
    with pytest.raises(PayloadError):
        route("pull_request", payload)


# --- fuzzing: only PayloadError escapes route() ------------------------------------------------


FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks"
_FIXTURE_NAMES = sorted(p.stem for p in FIXTURES_DIR.glob("*.json"))
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(_FIXTURE_NAMES),
    data=st.data(),
    body=st.text(max_size=200),
)
def test_fuzz_route_only_raises_payload_error(name: str, data: st.DataObject, body: str) -> None:
    """Real payloads with 1-3 values replaced by arbitrary JSON (wrong types, deleted keys,
    command-like comment bodies): route() returns an action or raises PayloadError, nothing else;
    plan() then always yields JSON-serialisable jobs."""
    payload = json.loads((FIXTURES_DIR / f"{name}.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(payload)
        path = data.draw(st.sampled_from(paths))
        if not path:
            payload = data.draw(_json_values)
            break
        parent = payload
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_json_values | st.just("@reviewbot " + body))
    event = name.split(".")[0]
    try:
        action = route(event, payload)
    except PayloadError:
        return
    for job in plan(action, event=event, payload=payload if isinstance(payload, dict) else None):
        json.dumps(job.payload)


@pytest.mark.parametrize(
    ("association", "obeyed"),
    [
        ("OWNER", True),
        ("MEMBER", True),
        ("COLLABORATOR", True),
        ("CONTRIBUTOR", False),
        ("NONE", False),
        ("FIRST_TIME_CONTRIBUTOR", False),
    ],
)
def test_only_people_with_write_access_give_commands(
    fixtures_dir: Path, association: str, obeyed: bool
) -> None:
    """On a public repo anyone can comment; `@reviewbot pause` from a passer-by must do nothing."""
    payload = load(fixtures_dir, "issue_comment.command_pause")
    payload["comment"]["author_association"] = association
    action = route("issue_comment", payload)
    if obeyed:
        assert isinstance(action, Command) and action.kind == "pause"
    else:
        assert isinstance(action, Ignore) and "write access" in action.reason
