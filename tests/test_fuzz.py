"""Fuzzing the four parsers that read untrusted input: at least 10,000 generated inputs each.

Targets and the only error each may raise:
- diff.parse_diff (a PR's diff) -> DiffParseError
- config.load_config (a repository's YAML) -> ConfigError; a loaded config then answers every
  question the pipeline asks (globs compile, paths match) without raising
- webhooks.verify_signature / route / plan (a webhook delivery) -> PayloadError; and the real HTTP
  server answers 202/200/400/401, never 500
- reply_parse.parse_reply (the LLM's reply) never raises; anchor_candidates never raises and keeps only
  positions GitHub accepts

Inputs are structured (diff-shaped text, YAML-shaped mappings, JSON payloads derived from the real
webhook fixtures with mutated fields, finding-shaped replies) and raw text. Hypothesis draws the
structure and a Random that drives cheap mutations, so each example yields several inputs; every
call is counted and timed (a call over PER_CALL_LIMIT seconds of CPU is a hang). The last test checks the
per-target counts (printed with -s; figures in RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from reviewbot.app import webhooks
from reviewbot.app.queue import JobQueue
from reviewbot.app.server import create_app
from reviewbot.app.store import Store
from reviewbot.core.config import ConfigError, load_config
from reviewbot.core.config_schema import RepoConfig
from reviewbot.core.domain import CATEGORIES, SEVERITIES, FileDiff
from reviewbot.core.globs import MAX_PATTERN_CHARS, GlobList, glob_match, path_selected, wildcard_match
from reviewbot.filter.severity import meets_minimum
from reviewbot.review.anchor import anchor_candidates
from reviewbot.review.diff import DiffParseError, parse_diff
from reviewbot.review.prompt import neutralise, unneutralise
from reviewbot.review.reply_parse import parse_reply
from reviewbot.review.rule_selection import all_added, ruleset_from_config
from reviewbot.review.rules import RuleError
from tests.deadline import deadline
from tests.fakes.live_server import LiveServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PER_CALL_LIMIT = 2.0  # seconds; any single call slower than this is reported as a hang
HANG_LIMIT = 10.0  # seconds; a call still running then is stopped (a shared machine may be slow)
TARGET = 10_000  # generated inputs per target
COUNTS: Counter[str] = Counter()


def fast(n: int) -> settings:
    """n examples, no deadline (timed() checks each call), no example database, no health checks."""
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def timed(target: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call fn, count it for `target`, and fail if it took more than PER_CALL_LIMIT of CPU.

    CPU time of this process (all its threads: a live server's too), not wall time: on a loaded
    machine a cheap call can wait seconds for a core, while a super-linear one burns CPU wherever
    it runs. And a hard stop (SIGALRM) at HANG_LIMIT of wall time: a hang is stopped where it
    hangs and reported with its input, instead of running until the suite's timeout (a quadratic
    regex once ran 10 minutes).
    """
    started = time.process_time()
    try:
        with deadline(HANG_LIMIT, f"{target}: one input ({args!r:.300})"):
            return fn(*args, **kwargs)
    finally:
        COUNTS[target] += 1
        elapsed = time.process_time() - started
        assert elapsed < PER_CALL_LIMIT, f"{target}: one input took {elapsed:.2f}s of CPU: {args!r:.300}"


def mutations(text: str, rnd: random.Random, n: int) -> Iterator[str]:
    """n cheap corruptions of `text`: truncation, dropped/duplicated/swapped lines, byte noise."""
    lines = text.split("\n")
    for _ in range(n):
        kind = rnd.randrange(7)
        if kind == 0:
            yield text[: rnd.randrange(len(text) + 1)]
        elif kind == 1 and lines:
            i = rnd.randrange(len(lines))
            yield "\n".join(lines[:i] + lines[i + 1 :])
        elif kind == 2 and lines:
            i = rnd.randrange(len(lines))
            yield "\n".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
        elif kind == 3 and len(lines) > 1:
            i, j = rnd.randrange(len(lines)), rnd.randrange(len(lines))
            swapped = list(lines)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            yield "\n".join(swapped)
        elif kind == 4 and text:
            i = rnd.randrange(len(text))
            yield text[:i] + rnd.choice(NOISE) + text[i + 1 :]
        elif kind == 5:
            yield text.replace("\n", rnd.choice(["\r\n", "\r", "\n\n", "\x00\n"]))
        else:
            i = rnd.randrange(len(text) + 1)
            yield text[:i] + rnd.choice(NOISE) * rnd.randrange(1, 4) + text[i:]


NOISE = [
    "\x00",
    "\r",
    "\t",
    "\\",
    '"',
    "@",
    "+",
    "-",
    " ",
    "\n",
    "é",
    "\ud800",
    "\u202e",
    "{",
    "[",
    "*",
    "&",
    "!",
]


# =============================================================================== diff parser

PATHS = [
    "a.py",
    "src/x y.go",
    "dir/file.ts",
    "é/ü.rs",
    "a b",
    "x",
    "-",
    "@@",
    "a/b/c.java",
    '"q\\303\\251.py"',
    '"bad\\q"',
    "/dev/null",
    "",
]
EXTENDED = [
    "new file mode 100644",
    "deleted file mode 100755",
    "old mode 100644",
    "new mode 100755",
    "similarity index 90%",
    "rename from x.py",
    "rename to y.py",
    "copy from a",
    "copy to b",
    "index abc1234..def5678 100644",
    "Binary files a/x and b/x differ",
    "GIT binary patch",
    "literal 0",
    "dissimilarity index 12%",
    "Index: x.c",
    "=" * 20,
]


def _path(rnd: random.Random) -> str:
    return rnd.choice(PATHS)


def _hunk(rnd: random.Random, old_start: int, new_start: int) -> tuple[list[str], int, int]:
    body: list[str] = []
    old_len = new_len = 0
    for _ in range(rnd.randrange(0, 8)):
        kind = rnd.choice(" +-+ ")
        text = "".join(rnd.choice(string.printable[:-5] + "é\t") for _ in range(rnd.randrange(0, 12)))
        body.append(kind + text)
        if kind != "+":
            old_len += 1
        if kind != "-":
            new_len += 1
        if rnd.random() < 0.05:
            body.append("\\ No newline at end of file")
    section = rnd.choice(["", " def f(x):", " class A {", " <diff-x>"])
    fmt_old = f"{old_start},{old_len}" if rnd.random() < 0.9 else f"{old_start}"
    fmt_new = f"{new_start},{new_len}" if rnd.random() < 0.9 else f"{new_start}"
    return [f"@@ -{fmt_old} +{fmt_new} @@{section}", *body], old_len, new_len


def diff_shaped(rnd: random.Random) -> str:
    """A unified diff of 1-3 files, usually well formed (git or plain), with random content."""
    out: list[str] = []
    for _ in range(rnd.randrange(1, 4)):
        a, b = _path(rnd), _path(rnd) if rnd.random() < 0.2 else None
        b = b or a
        if rnd.random() < 0.7:
            out.append(f"diff --git a/{a} b/{b}")
            out += rnd.sample(EXTENDED, rnd.randrange(0, 3))
        if rnd.random() < 0.9:
            out.append("--- " + ("/dev/null" if rnd.random() < 0.1 else f"a/{a}"))
            out.append("+++ " + ("/dev/null" if rnd.random() < 0.1 else f"b/{b}"))
        old = new = rnd.randrange(0, 40)
        for _ in range(rnd.randrange(0, 4)):
            lines, old_len, new_len = _hunk(rnd, old, new)
            out += lines
            gap = rnd.randrange(0, 30)
            old, new = old + old_len + gap, new + new_len + gap
    return "\n".join(out) + ("\n" if rnd.random() < 0.9 else "")


def check_diff(text: str) -> None:
    try:
        files = timed("diff", parse_diff, text)
    except DiffParseError:
        return
    for f in files:
        assert isinstance(f, FileDiff) and f.path
        for h in f.hunks:
            for ln in h.lines:
                if ln.kind == "added":
                    assert f.accepts(ln.new_no, "RIGHT")
                elif ln.kind == "deleted":
                    assert f.accepts(ln.old_no, "LEFT")


@fast(1400)
@given(st.randoms(use_true_random=False))
def test_fuzz_diff_structured(rnd: random.Random) -> None:
    text = diff_shaped(rnd)
    check_diff(text)
    for variant in mutations(text, rnd, 5):
        check_diff(variant)


@fast(1600)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    "diff --git a/x b/x",
                    "--- a/x",
                    "+++ b/x",
                    "@@ -1 +1 @@",
                    "@@ -1,2 +1,2 @@",
                    "+a",
                    "-b",
                    " c",
                    "\\ x",
                    "",
                    "Binary files differ",
                    "rename from x",
                    "rename to y",
                    "@@ -0,0 +1 @@",
                    "--- /dev/null",
                    "+++ /dev/null",
                    "@@ -99999999999999999999 +1 @@",
                ]
            ),
            max_size=25,
        ).map("\n".join),
    )
)
def test_fuzz_diff_raw(text: str) -> None:
    check_diff(text)


# =============================================================================== config loader

CONFIG_KEYS = list(RepoConfig.model_fields) + ["paths.include", "rules.custom", "extra", "<<", "on", "123"]
SUB_KEYS = [
    "include",
    "exclude",
    "drafts",
    "skip_authors",
    "skip_labels",
    "disable",
    "enable",
    "severity",
    "custom",
    "id",
    "languages",
    "message",
    "query",
    "instruction",
    "model",
    "temperature",
    "max_tokens_per_request",
    "path",
    "instructions",
    "category",
    "paths",
    "title",
    "examples",
]
GLOBS = [
    "**",
    "*.py",
    "src/**",
    "[b-a]",
    "[!x]*.py",
    "{a,b}/*.go",
    "{[z-a],b}",
    "a/[",
    "**/",
    "\\",
    "[\\]",
    "[a-]",
    "docs/",
    "?",
    "{",
    "}",
    "{a,{b,c}}",
    "[[:alpha:]]",
    "(",
    "+",
    "*" * 30,
]
SCALARS: list[Any] = [
    True,
    False,
    None,
    0,
    -1,
    7,
    10**30,
    0.5,
    1.5,
    float("inf"),
    "",
    "x",
    "high",
    "low",
    "python",
    "pythn",
    "bug",
    "critical",
    "yes",
    "no",
    "~",
    "2001-12-14",
    "0x1F",
    "1e3",
]


def yaml_value(rnd: random.Random, depth: int = 0) -> Any:
    r = rnd.random()
    if depth < 3 and r < 0.25:
        return {rnd.choice(SUB_KEYS + GLOBS): yaml_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 4))}
    if depth < 3 and r < 0.45:
        return [yaml_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 4))]
    if r < 0.65:
        return rnd.choice(GLOBS)
    return rnd.choice(SCALARS)


def yaml_shaped(rnd: random.Random) -> str:
    data = {rnd.choice(CONFIG_KEYS): yaml_value(rnd) for _ in range(rnd.randrange(0, 6))}
    if rnd.random() < 0.4:  # a structurally valid custom rule or path instruction to get deep
        data["rules"] = {
            "custom": [
                {
                    "id": rnd.choice(["r1", "R!", "a" * 3]),
                    "languages": ["python"],
                    "severity": rnd.choice(SEVERITIES),
                    "category": rnd.choice(CATEGORIES),
                    "message": "m",
                    "instruction": "i",
                    "paths": [rnd.choice(GLOBS)],
                }
            ]
        }
    if rnd.random() < 0.4:
        data["path_instructions"] = [{"path": rnd.choice(GLOBS), "instructions": "be careful"}]
    text = yaml.safe_dump(data, allow_unicode=True, default_flow_style=rnd.random() < 0.3)
    extra = rnd.random()
    if extra < 0.1:
        text = "a: &x [1, 2]\nb: *x\n" + text
    elif extra < 0.15:
        text += "c: !!python/object/apply:os.system ['true']\n"
    elif extra < 0.2:
        text += "base: &b {max_comments: 3}\nmerged:\n  <<: *b\n"
    elif extra < 0.25:
        text += "? [complex, key]\n: value\n"
    elif extra < 0.3:
        text += "blob: !!binary aGVsbG8=\n"
    return text


PROBE_PATHS = ["a.py", "src/x.go", "[b-a]", "docs/readme.md", "", "é/ü.rs", "a/b/c/d/e.ts", "{a,b}"]


def check_config(text: str | None, org: str | None = None) -> None:
    try:
        config = timed("config", load_config, text, org)
    except ConfigError as exc:
        assert exc.messages and all(isinstance(m, str) for m in exc.messages)
        return
    # A config that loads must answer every question the pipeline asks without raising.
    for path in PROBE_PATHS:
        config.path_included(path)
        config.file_included(path)
        meets_minimum("low", path, config.min_severity, config.min_severity_by_path)
        config.instructions_for(path)
    config.should_review("alice", ["x"], draft=False)
    for rule in config.rules.custom:
        path_selected(PROBE_PATHS[0], rule.paths)


@fast(1800)
@given(st.randoms(use_true_random=False))
def test_fuzz_config_structured(rnd: random.Random) -> None:
    text = yaml_shaped(rnd)
    check_config(text, yaml_shaped(rnd) if rnd.random() < 0.1 else None)
    for variant in mutations(text, rnd, 4):
        check_config(variant)


@fast(1500)
@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(
            st.sampled_from(
                [
                    "paths:",
                    "  include:",
                    "  - '[b-a]'",
                    "  - '**'",
                    "max_comments: 3",
                    "max_comments: -1",
                    "a: &a [*a]",
                    "- x",
                    "? x",
                    ": y",
                    "&a",
                    "*a",
                    "!!str",
                    "{",
                    "}",
                    "[",
                    "]",
                    "min_severity: nope",
                    "languages: [go]",
                    "rules: {custom: [{id: x}]}",
                    "---",
                    "...",
                    "%YAML 1.1",
                    "\t",
                    "key: 'unterminated",
                ]
            ),
            max_size=12,
        ).map("\n".join),
    )
)
def test_fuzz_config_raw(text: str) -> None:
    check_config(text)


# =============================================================================== webhooks


def _fixture_payloads() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((FIXTURES / "webhooks").glob("*.json")):
        event = path.name.split(".", 1)[0]
        out.append((event, json.loads(path.read_text())))
    return out


PAYLOADS = _fixture_payloads()
EVENTS = sorted({e for e, _ in PAYLOADS}) + ["push", "", "pull_request ", "PING", "x" * 50]
JSON_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63,
    -(2**63) - 1,
    10**40,
    1.5,
    float("1e308"),
    "",
    "x",
    "\ud800",
    "a\x00b",
    "@reviewbot review",
    "opened",
    "synchronize",
    "created",
    "deleted",
    [],
    {},
    [1],
    {"id": 1},
    {"login": "x[bot]", "type": "Bot"},
    [{"name": 3}],
]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return obj


def mutated_payload(rnd: random.Random) -> tuple[str, Any]:
    event, base = rnd.choice(PAYLOADS)
    payload = json.loads(json.dumps(base))
    paths = _paths(payload)
    for _ in range(rnd.randrange(1, 4)):
        path = rnd.choice(paths)
        with contextlib.suppress(KeyError, IndexError, TypeError):
            payload = _set(payload, path, copy.deepcopy(rnd.choice(JSON_VALUES)), delete=rnd.random() < 0.3)
        paths = _paths(payload)
    if rnd.random() < 0.1:
        event = rnd.choice(EVENTS)
    return event, payload


ACTIONS = (
    webhooks.EnqueueReview,
    webhooks.Command,
    webhooks.InstallationChange,
    webhooks.RerunReview,
    webhooks.Feedback,
    webhooks.Ping,
    webhooks.Ignore,
)


def check_route(event: str, payload: Any) -> None:
    try:
        action = timed("webhooks", webhooks.route, event, payload)
    except webhooks.PayloadError:
        return
    assert isinstance(action, ACTIONS)
    for spec in webhooks.plan(action, event=event, payload=payload if isinstance(payload, dict) else None):
        json.dumps(spec.payload)  # what the server stores
        for value in (spec.installation_id, spec.pr):
            assert value is None or -(2**63) <= value < 2**63, "would overflow SQLite"
        for value in (spec.repo, spec.head_sha, spec.dedupe_key, spec.kind):
            if value is not None:
                value.encode("utf-8")  # a lone surrogate cannot be stored


@fast(2500)
@given(st.randoms(use_true_random=False))
def test_fuzz_webhook_route_mutated_fixtures(rnd: random.Random) -> None:
    for _ in range(4):
        check_route(*mutated_payload(rnd))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "action",
                    "pull_request",
                    "installation",
                    "id",
                    "number",
                    "head",
                    "sha",
                    "user",
                    "login",
                    "repository",
                    "full_name",
                    "comment",
                    "body",
                    "issue",
                    "labels",
                    "name",
                    "thread",
                    "comments",
                    "account",
                    "repositories_added",
                ]
            )
            | st.text(max_size=5),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@fast(2000)
@given(
    st.sampled_from(EVENTS), json_values, st.binary(max_size=40), st.one_of(st.none(), st.text(max_size=80))
)
def test_fuzz_webhook_random_json_and_signatures(
    event: str, payload: Any, body: bytes, header: str | None
) -> None:
    check_route(event, payload)
    ok = timed("webhooks", webhooks.verify_signature, b"secret", body, header)
    assert ok is False or header == webhooks.sign(b"secret", body)
    assert (
        timed("webhooks", webhooks.verify_signature, b"secret", body, webhooks.sign(b"secret", body)) is True
    )


SECRET = b"fuzz-webhook-secret"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Store]]:
    store = Store.open(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    app = create_app(store=store, webhook_secret=SECRET, registry=CollectorRegistry(), queue=JobQueue(store))
    with (
        LiveServer(app) as server,
        httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client,
    ):
        yield client, store
    store.close()


_delivery = iter(range(10**9))


@fast(250)
@given(st.randoms(use_true_random=False), st.integers(0, 9))
def test_fuzz_webhook_server_never_500(
    live: tuple[httpx.Client, Store], rnd: random.Random, how: int
) -> None:
    client, store = live
    event, payload = mutated_payload(rnd)
    body = json.dumps(payload).encode()
    if how == 0:
        body = body[: rnd.randrange(len(body) + 1)]  # truncated JSON, still signed
    headers = {
        "X-GitHub-Event": event.strip() or "x",
        "X-GitHub-Delivery": f"fuzz-{next(_delivery)}",
        "X-Hub-Signature-256": webhooks.sign(SECRET, body),
        "Content-Type": "application/json",
    }
    if how == 1:
        headers["X-Hub-Signature-256"] = webhooks.sign(b"forged", body)
    elif how == 2:
        del headers["X-Hub-Signature-256"]
    elif how == 3:
        headers["X-Hub-Signature-256"] = ("sha256=" + "é" * 3).encode("latin-1")  # type: ignore[assignment]
    resp = timed("webhook-http", client.post, "/webhook", content=body, headers=headers)
    if how in (1, 2, 3):
        assert resp.status_code == 401, resp.text
    else:
        assert resp.status_code in (200, 202, 400), (resp.status_code, resp.text[:300], payload)
    assert store.conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] >= 0  # still usable


@pytest.mark.parametrize(
    ("event", "change"),
    [
        ("pull_request", lambda p: p["installation"].__setitem__("id", 2**70)),
        ("pull_request", lambda p: p["repository"].__setitem__("full_name", "\ud800/x")),
        ("pull_request", lambda p: p["pull_request"].__setitem__("number", -(2**65))),
        ("check_run", lambda p: p.__setitem__("installation", {"id": 2**64})),  # an ignored event
        ("check_run", lambda p: p.__setitem__("action", "\udfff")),
    ],
)
def test_values_sqlite_cannot_store_are_400_not_500(
    live: tuple[httpx.Client, Store], event: str, change: Callable[[dict], None]
) -> None:
    """Found by the fuzzer: JSON allows integers beyond 64 bits and lone surrogate escapes, which
    SQLite cannot store; the server answered 500."""
    client, _ = live
    name = "pull_request.opened.json" if event == "pull_request" else "check_run.created.json"
    payload = json.loads((FIXTURES / "webhooks" / name).read_text())
    change(payload)
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": f"sqlite-{next(_delivery)}",
        "X-Hub-Signature-256": webhooks.sign(SECRET, body),
    }
    resp = client.post("/webhook", content=body, headers=headers)
    assert resp.status_code == 400, resp.text


# =============================================================================== LLM reply parser

DIFF = """\
diff --git a/app/service.py b/app/service.py
--- a/app/service.py
+++ b/app/service.py
@@ -10,4 +10,6 @@ def handle(request):
     user = load_user(request)
-    if user is None:
-        return None
+    if not user:
+        raise NotFound()
+    token = request.headers["X-Token"]
+    db.execute("SELECT * FROM t WHERE id = " + request.args["id"])
     return render(user)
@@ -40,2 +42,3 @@ def other():
     a = 1
+    b = eval(a)
     return a
diff --git a/web/app.js b/web/app.js
new file mode 100644
--- /dev/null
+++ b/web/app.js
@@ -0,0 +1,3 @@
+const x = 1;
+eval(userInput);
+module.exports = x;
"""
FILES = {f.path: f for f in parse_diff(DIFF)}
QUOTES = [
    'db.execute("SELECT * FROM t WHERE id = " + request.args["id"])',
    "eval(userInput);",
    "}",
    "",
    "    b = eval(a)",
    "return None",
    "not in the diff at all",
    "<\u200bdiff-",
    "a = 1",
    None,
    3,
]
FIELD_VALUES: dict[str, list[Any]] = {
    "path": [
        "app/service.py",
        "./app/service.py",
        "b/web/app.js",
        "/web/app.js",
        "nope.py",
        "",
        None,
        5,
        "app/service.py\n",
    ],
    "line": [1, 10, 13, 15, 43, 2, 3, 0, -4, 10**30, "14", "L15", "x", None, 1.0, 2.5, True],
    "end_line": [None, 15, 16, 3, 13, 10**20, "x", -1],
    "side": ["RIGHT", "LEFT", "left", "middle", None, 1],
    "severity": [*SEVERITIES, "major", "blocker", "unknown", None, 3],
    "category": [*CATEGORIES, "logic", "perf", "nonsense", None],
    "confidence": [0.9, 1.5, 95, "80%", "high", None, -3, float("inf"), float("nan")],
    "title": ["t", "", None, "x" * 500, ["a"]],
    "body": ["b", "", None, "```suggestion\nx\n```", {"a": 1}],
    "suggestion": [None, "x = 1", "```", "", 7],
    "quoted_code": QUOTES,
}


def finding(rnd: random.Random) -> dict[str, Any]:
    item = {k: rnd.choice(v) for k, v in FIELD_VALUES.items() if rnd.random() < 0.92}
    if rnd.random() < 0.05:
        item["extra"] = {"nested": [1, 2]}
    return item


def reply_shaped(rnd: random.Random) -> str:
    items: Any = [finding(rnd) for _ in range(rnd.randrange(0, 6))]
    if rnd.random() < 0.1:
        items.append(rnd.choice([1, "x", None, [], {}]))
    doc: Any = {"findings": items} if rnd.random() < 0.8 else items
    text = json.dumps(doc, indent=rnd.choice([None, 2]))
    r = rnd.random()
    if r < 0.15:
        text = f"```json\n{text}\n```"
    elif r < 0.3:
        text = f"Here are my findings:\n{text}\nHope this helps {{not json}}."
    elif r < 0.4:
        text = text.replace("}", ",}").replace("]", ",]")
    elif r < 0.45:
        text = "[" * rnd.randrange(1, 5000) + text
    elif r < 0.5:
        text = "{" * rnd.randrange(1, 3000) + text
    return text


def check_reply(text: Any) -> None:
    findings, problems = timed("llm-reply", parse_reply, text)
    assert isinstance(problems, list)
    for f in findings:
        assert isinstance(f["path"], str) and f["path"]
        assert isinstance(f["line"], int) and f["line"] >= 1
        assert f["side"] in ("RIGHT", "LEFT")
        assert f["severity"] in SEVERITIES and f["category"] in CATEGORIES
        assert f["confidence"] is None or 0.0 <= f["confidence"] <= 1.0
    kept, dropped = timed("anchor", anchor_candidates, findings, FILES, source="llm")
    assert len(kept) + len(dropped) == len(findings)
    for c in kept:
        fd = FILES[c.path]
        assert fd.accepts(c.line, c.side), (c.path, c.line, c.side)
        if c.end_line is not None:
            assert fd.accepts_range(c.line, c.end_line, c.side)
        if c.side == "LEFT":
            assert c.suggestion is None


@fast(2200)
@given(st.randoms(use_true_random=False))
def test_fuzz_llm_reply_structured(rnd: random.Random) -> None:
    text = reply_shaped(rnd)
    check_reply(text)
    for variant in mutations(text, rnd, 3):
        check_reply(variant)


@fast(1500)
@given(st.one_of(st.text(max_size=300), st.none(), st.integers(), json_values.map(json.dumps)))
def test_fuzz_llm_reply_raw(text: Any) -> None:
    check_reply(text)


def test_deeply_nested_and_brace_flooded_replies_are_bounded() -> None:
    """Hostile replies a fuzzer found: nested JSON deeper than the recursion limit, and a flood of
    braces that made the prose scan quadratic."""
    for text in ("[" * 100_000, '{"findings": ' + "[" * 50_000, "{" * 200_000, '["' * 50_000):
        check_reply(text)


# ============================================================ hostile shapes (issue #11)
# The shapes that froze the reviewer: whitespace runs after '<', globs of nested '**/' and '*a'
# runs, catastrophic `#match?` regexes, many-key configs. Each input runs under the per-call
# deadline, which would have caught every item of issue #11 on the code before the fix.

_TAG_NAMES = ("diff", "context", "instructions", "intent")


def _tag_survives(text: str) -> bool:
    """The oracle, written the slow and obvious way: a '<' that still reads like one of our tags."""
    for i, c in enumerate(text):
        if c != "<":
            continue
        rest = text[i + 1 :].lstrip()
        if rest.startswith("/"):
            rest = rest[1:].lstrip()
        if rest.casefold().startswith(_TAG_NAMES):
            return True
    return False


def hostile_line(rnd: random.Random, big: bool) -> str:
    pieces = ["<", "/", " ", "\t", "\n", "diff", "DIFF-x>", "Context", "instructions", "a", "<<", "\u200b"]
    out: list[str] = []
    for _ in range(rnd.randrange(1, 12)):
        piece = rnd.choice(pieces)
        if big and piece.isspace():
            piece *= rnd.choice([1, 1000, 50_000, 200_000])
        elif big and rnd.random() < 0.2:
            piece *= rnd.randrange(1, 20_000)
        out.append(piece)
    return "".join(out)


@fast(400)
@given(st.randoms(use_true_random=False))
def test_fuzz_hostile_text_is_neutralised_in_time(rnd: random.Random) -> None:
    small = hostile_line(rnd, big=False)
    out = timed("hostile-text", neutralise, small)
    assert not _tag_survives(out), (small, out)
    assert unneutralise(out) == small.replace("<\u200b", "<") or "<\u200b" in small
    timed("hostile-text", neutralise, hostile_line(rnd, big=True))


GLOB_TOKENS = ["**/", "**", "*", "?", "a", "b", "ab", "/", "{a,b}", "[ab]", "[!a]", ".", "x", "{a,**/b}"]


def glob_shaped(rnd: random.Random, tokens: int) -> str:
    return "".join(rnd.choice(GLOB_TOKENS) for _ in range(rnd.randrange(1, tokens + 1)))


def path_shaped(rnd: random.Random, depth: int, width: int) -> str:
    segment = ["a", "b", "ab", "x", ".", "a.b", "aaaa"]
    parts = []
    for _ in range(rnd.randrange(1, depth + 1)):
        seg = rnd.choice(segment)
        parts.append(seg * rnd.randrange(1, width + 1))
    return "/".join(parts)


def _reference_glob(pattern: str, path: str) -> bool:
    """The documented dialect as it was written before (Python re): the oracle on small inputs."""
    import re

    def body(pat: str) -> str:
        out, i = [], 0
        while i < len(pat):
            c = pat[i]
            if pat.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
            elif pat.startswith("/**", i) and i + 3 == len(pat):
                out.append("(?:/.*)?")
                i += 3
            elif pat.startswith("**", i):
                out.append(".*")
                i += 2
            elif c == "*":
                out.append("[^/]*")
                i += 1
            elif c == "?":
                out.append("[^/]")
                i += 1
            elif c == "[" and (j := pat.find("]", i + 2)) != -1:
                b = pat[i + 1 : j]
                out.append("[" + ("^" + b[1:] if b.startswith("!") else b) + "]")
                i = j + 1
            elif c == "{" and (j := pat.find("}", i)) != -1:
                out.append("(?:" + "|".join(body(a) for a in pat[i + 1 : j].split(",")) + ")")
                i = j + 1
            else:
                out.append(re.escape(c))
                i += 1
        return "".join(out)

    pat = pattern.strip().lstrip("/")
    pat = pat[2:] if pat.startswith("./") else pat
    pat = pat + "**" if pat.endswith("/") else pat
    regex = re.compile(body(pat) + r"\Z", re.DOTALL)
    if regex.match(path):
        return True
    return "/" not in pattern and bool(regex.match(path.rsplit("/", 1)[-1]))


@fast(600)
@given(st.randoms(use_true_random=False))
def test_fuzz_globs_agree_with_the_dialect_and_stay_linear(rnd: random.Random) -> None:
    # small: the new matcher agrees with the documented dialect (pattern without '**' in '{}'
    # alternatives nor a class after a '/': the old translation's quirks are not the dialect)
    pattern = glob_shaped(rnd, 6)
    path = path_shaped(rnd, 5, 2)
    if "{a,**/b}" not in pattern:
        assert timed("globs", glob_match, pattern, path) is _reference_glob(pattern, path), (pattern, path)
    # hostile: long patterns of nested '**/' and '*a' runs against deep, wide paths
    big = ("**/" * rnd.randrange(0, 60)) + glob_shaped(rnd, 60)
    big = big[:MAX_PATTERN_CHARS]
    deep = path_shaped(rnd, 80, 40)
    timed("globs", glob_match, big, deep)
    globs = GlobList([big, glob_shaped(rnd, 30), "*a" * rnd.randrange(1, 40) + "b"])
    timed("globs", globs.indices, deep)
    timed("globs", wildcard_match, "*a" * rnd.randrange(1, 200) + "b", "a" * rnd.randrange(1, 5000))


REGEX_SHAPES = ["(a+)+$", "(a|aa)*c", "(a*)*b", "(.*a){20}", "^(a|a?)+$", "(\\w+\\s?)*$", '((a)*)*"$']


@fast(150)
@given(st.randoms(use_true_random=False))
def test_fuzz_custom_rule_regexes_run_in_time(rnd: random.Random) -> None:
    regex = rnd.choice(REGEX_SHAPES)
    if rnd.random() < 0.5:
        regex = "^" + regex.replace("a", rnd.choice(["a", "[ab]", "."]))
    quoted = regex.replace("\\", "\\\\").replace('"', '\\"')
    predicate = rnd.choice(["match?", "not-match?", "any-match?"])
    rule = {
        "id": "fz",
        "languages": ["python"],
        "severity": "low",
        "category": "bug",
        "message": "m",
        "query": f'((string) @match (#{predicate} @match "{quoted}"))',
    }
    try:
        config = RepoConfig.model_validate({"rules": {"custom": [rule]}})
        rules = ruleset_from_config(config.rules)
    except (ValidationError, RuleError):
        return
    n = rnd.choice([30, 1000, 20_000])
    source = f"x = '{'a' * n}b'\ny = \"{'a' * (n // 2)}\"\n"
    timed("rule-regex", rules.run, all_added("a.py", source), source)


@fast(60)
@given(st.randoms(use_true_random=False))
def test_fuzz_many_key_configs_are_answered_in_time(rnd: random.Random) -> None:
    n = rnd.choice([10, 300, 1000, 20_000, 60_000])  # the big ones are refused by the caps
    kind = rnd.randrange(4)
    if kind == 0:
        text = "rules:\n  severity:\n" + "".join(f"    r{i}: high\n" for i in range(n))
    elif kind == 1:
        text = "rules:\n  severity: {" + ", ".join(f"r{i}: low" for i in range(n)) + "}\n"
    elif kind == 2:
        text = "paths:\n  exclude: [" + ", ".join(f"'g{i}/**'" for i in range(n)) + "]\n"
    else:
        text = "".join(f"k{i}:\n  a: {i}\n" for i in range(n))
    org = text if rnd.random() < 0.5 else None
    try:
        config = timed("many-keys", load_config, text, org)
    except ConfigError as exc:
        assert exc.messages
        return
    timed("many-keys", config.path_included, "a/" * 40 + "b.py")


def _module_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """Every compiled regex at module level in the reviewbot package."""
    import importlib
    import pkgutil

    import reviewbot

    found: list[tuple[str, re.Pattern[str]]] = []
    for info in pkgutil.walk_packages(reviewbot.__path__, "reviewbot."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                found.append((f"{info.name}.{name}", value))
    return found


#: Regexes still quadratic on some shape, with what bounds their input (RELIABILITY.md, limits).
KNOWN_QUADRATIC = {}


def regex_shapes(pattern: str, size: int) -> Iterator[str]:
    """Hostile texts for one regex: its own literal fragments repeated, joined by whitespace, or
    followed by a long run; and the generic runs (spaces after '<', backticks, one character)."""
    words = {w.replace("\\", "") for w in re.findall(r"[^\s()\[\]?*+{}|^$]{1,10}", pattern)} - {""}
    for word in sorted(words)[:40]:
        k = max(1, size // len(word))
        yield word * k
        yield (word + " ") * (k // 2)
        yield word + " " * size
        yield (word + "a") * (k // 2)
    for run in (" ", "`", "~", "\n", "a", "'", "-", "<"):
        yield run * size
    yield "<" + " " * size
    yield "a" * size + "!"


def _regex_id(value: object) -> str:
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("name", "pattern"), _module_patterns(), ids=_regex_id)
def test_every_module_regex_is_linear_on_hostile_shapes(name: str, pattern: re.Pattern[str]) -> None:
    """A regex over untrusted text must not be quadratic: each shape of 40,000 characters within
    PER_CALL_LIMIT (the old tag regex took 26 s on 40,000 spaces, the noqa one 13 s on 50,000, the
    SVN-suffix one 5 s on a 40,000-space file name)."""
    size = KNOWN_QUADRATIC.get(name, 40_000)
    for text in regex_shapes(pattern.pattern, size):
        timed("module-regex", pattern.findall, text)


# =============================================================================== the counts


def test_fuzz_counts_reach_the_target() -> None:
    """Runs last in this file: every target got at least TARGET generated inputs (when all ran)."""
    targets = {
        "diff": TARGET,
        "config": TARGET,
        "webhooks": TARGET,
        "llm-reply": TARGET,
        "anchor": TARGET,
        "webhook-http": 250,
        "hostile-text": 800,
        "globs": 1200,
        "rule-regex": 100,
        "many-keys": 60,
    }
    if any(COUNTS[t] == 0 for t in targets):
        pytest.skip(f"not every fuzz test ran in this session: {dict(COUNTS)}")
    print("\nfuzz inputs per target:", json.dumps(dict(sorted(COUNTS.items()))))
    for target, minimum in targets.items():
        assert COUNTS[target] >= minimum, (target, COUNTS[target])
