"""Review latency at the default concurrency: delivery -> review posted, against the slowest LLM call.

A PR whose review needs as many LLM requests as the client runs at once by default (the default
REVIEWBOT_LLM_MAX_CONCURRENCY over the default number of passes: 4 files, one request each; the
repo's `llm.max_tokens_per_request` is chosen by running the real pipeline until `build_requests`
packs them into exactly that many). Every setting is the default (one pass) and two cases run
side by side in one invocation, alternating, through one server: verification on (the default;
a second LLM round follows the review requests) and verification off (`verify: false` in the
repo config: the review requests are the whole LLM chain).
`reviewbot serve` runs as a subprocess (server + worker, the deployed shape) against FakeGitHub
and FakeLLM on loopback. Each run: a signed `pull_request.opened` is posted, and the clock stops
when the review appears on the fake GitHub.

The fake LLM answers like a hosted model: after a time to first token, plus the prompt at a
prefill rate, plus the answer at a decoding rate (LatencyModel), so a long review reply takes
longer than a short verdict list, as on a real server. Every LLM call of a run (review and
verification) is timed by the fake (arrival -> answer). Targets: with verification, end to end <=
1.6x the slowest call (issue 10); without, <= 1.3x (issue 14: a PR that needs <= concurrency
requests). The absolute overhead (end to end minus the slowest call) stands beside each ratio.

    .venv/bin/python bench/latency.py --write      # 1 warm-up + 5 runs per case
    .venv/bin/python bench/latency.py --runs 2

Exit status 1 when a case's median ratio is over its target, a run did not use exactly the expected
review requests, or a run of the verification case made no verification request (or one of the
other case made one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_md import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reviewbot.adapters.llm_caps import DEFAULT_OUTPUT_TOKENS  # noqa: E402
from reviewbot.app.webhooks import sign  # noqa: E402
from reviewbot.core.config import load_config  # noqa: E402
from reviewbot.core.config_schema import DEFAULT_PASSES  # noqa: E402
from reviewbot.core.settings import Settings  # noqa: E402
from reviewbot.filter.acceptance import load_prior  # noqa: E402
from reviewbot.review.llm_port import LLMReply  # noqa: E402
from reviewbot.review.pipeline import Change, review_change  # noqa: E402
from reviewbot.review.rule_selection import ruleset_from_config  # noqa: E402
from tests.fakes.fake_github import FakeGitHub, generate_app_key  # noqa: E402
from tests.fakes.fake_llm import FakeLLM, flag_added, is_verification, prompt_text  # noqa: E402

SECTION = "## Review latency"
REPO = "acme/latency"
REPO_NO_VERIFY = "acme/latency-no-verify"
INSTALLATION = 11
APP_ID = 4242
SECRET = "latency-bench-secret"
CONCURRENCY = int(Settings.model_fields["llm_max_concurrency"].default)
REQUESTS = CONCURRENCY // DEFAULT_PASSES
TARGET = 1.6  # verification on (issue 10)
TARGET_NO_VERIFY = 1.3  # verification off: the review requests are the whole LLM chain (issue 14)
#: (case, repo, target, verification requests expected)
CASES = (
    ("verification on", REPO, TARGET, True),
    ("verification off", REPO_NO_VERIFY, TARGET_NO_VERIFY, False),
)


class LatencyModel:
    """Seconds a hosted model takes to answer: first token, then prefill and decoding rates."""

    first_token = 0.3
    prefill_per_s = 5000.0  # prompt tokens
    decode_per_s = 100.0  # answer tokens

    @staticmethod
    def tokens(text: str) -> int:
        return max(1, len(text) // 4)  # the fake's own token count

    def __call__(self, request_json: dict[str, Any], content: str) -> float:
        prompt = self.tokens(prompt_text(request_json))
        return self.first_token + prompt / self.prefill_per_s + self.tokens(content) / self.decode_per_s


def source_file(i: int, bugs: bool) -> str:
    """A Python module of 12 small functions; with `bugs`, two of them divide by len()."""
    out = [f'"""Module {i}."""', ""]
    for f in range(12):
        out += [f"def handler_{i}_{f}(xs, factor={f}):", "    scaled = [x * factor for x in xs]"]
        if bugs and f in (3, 9):
            out.append("    return sum(scaled) / len(scaled)  # BUG empty input")
        elif bugs:
            out.append(f"    return [s + {i} for s in scaled if s > {f}]")
        else:
            out.append("    return scaled")
        out.append("")
    return "\n".join(out)


def files(bugs: bool) -> dict[str, str]:
    return {f"svc/mod_{i}.py": source_file(i, bugs) for i in range(REQUESTS)}


def flag_bugs(request_json: dict[str, Any]) -> dict[str, Any]:
    return flag_added(
        request_json,
        lambda _path, code: "BUG" in code,
        title="Division by zero on empty input",
        body="`{code}` raises ZeroDivisionError for an empty list.",
    )


class CountingLLM:
    """Implements the pipeline's LLM port only to count how many requests a budget packs into."""

    model = "counting"

    def __init__(self) -> None:
        self.requests = 0

    async def complete(self, request: Any, *, label: str = "request") -> LLMReply:
        self.requests += 1
        return LLMReply('{"findings": []}', request.estimated_tokens, 4, self.model)

    def prompt_budget(self, configured: int) -> int:
        return configured - min(DEFAULT_OUTPUT_TOKENS, configured // 2)  # as LLMClient, unknown model

    def learned(self) -> list[str]:
        return []


def config_text(budget: int) -> str:
    return f"min_acceptance: 0.01\nllm:\n  max_tokens_per_request: {budget}\n"


def requests_for(diff: str, head: dict[str, str], budget: int) -> int:
    config = load_config(config_text(budget) + "verify: false\n")  # counting review requests only
    llm = CountingLLM()
    asyncio.run(
        review_change(
            Change(diff, head.get),
            config=config,
            rules=ruleset_from_config(config.rules),
            model=load_prior(),
            llm=llm,
        )
    )
    return llm.requests


def choose_budget(diff: str, head: dict[str, str]) -> int:
    """The largest max_tokens_per_request for which the real pipeline still sends REQUESTS requests."""
    lo, hi = 600, 12000  # requests(lo) >= 8 > requests(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if requests_for(diff, head, mid) >= REQUESTS:
            lo = mid
        else:
            hi = mid
    n = requests_for(diff, head, lo)
    if n != REQUESTS:
        raise SystemExit(f"no budget packs this fixture into {REQUESTS} requests (got {n} at {lo})")
    return lo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def confirm(item: dict[str, Any]) -> dict[str, Any]:
    """The judge: every flagged division is a real bug (the fixture plants them)."""
    marked = [n for n, _text, mine in item["code"] if mine]
    return {"verdict": "confirmed", "probability": 0.9, "line": marked[0] if marked else item["line"]}


def pr_delivery(gh: FakeGitHub, number: int, repo: str = REPO) -> dict[str, Any]:
    pr = gh.pulls[(repo, number)]
    return {
        "action": "opened",
        "number": number,
        "pull_request": {
            "number": number,
            "state": "open",
            "title": pr.title,
            "draft": False,
            "user": {"login": pr.author, "type": "User"},
            "labels": [],
            "head": {"sha": pr.head_sha, "ref": pr.head_ref},
            "base": {"sha": pr.base_sha, "ref": "main"},
        },
        "repository": {"id": gh.repos[repo].id, "full_name": repo},
        "installation": {"id": INSTALLATION},
        "sender": {"login": pr.author, "type": "User"},
    }


def run(runs: int) -> dict[str, Any]:
    # socketserver listens with a backlog of 5: 8 simultaneous connections (the head files are
    # fetched 8 at a time) overflow it and the dropped SYN costs a 1 s TCP retransmit, an artifact
    # of the fake that GitHub's front ends do not have.
    ThreadingHTTPServer.request_queue_size = 128
    priv, pub = generate_app_key()
    base, head = files(False), files(True)
    with FakeGitHub(app_id=APP_ID, app_public_key=pub) as gh:
        probe = FakeGitHub()  # only to compute the diff text exactly as GitHub's fake serves it
        probe.add_repo(REPO, 1, base)
        diff = probe.pull_diff(REPO, probe.add_pull(REPO, 1, head_files=head).number)
        budget = choose_budget(diff, head)
        gh.add_repo(REPO, INSTALLATION, {**base, ".github/reviewbot.yml": config_text(budget)})
        gh.add_repo(
            REPO_NO_VERIFY,
            INSTALLATION,
            {**base, ".github/reviewbot.yml": config_text(budget) + "verify: false\n"},
        )
        llm = FakeLLM(responder=flag_bugs, verifier=confirm, reply_delay=LatencyModel()).start()
        tmp = Path(tempfile.mkdtemp(prefix="reviewbot-latency-"))
        port = free_port()
        log_level = os.environ.get("BENCH_LOG_LEVEL")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWBOT_", "OPENAI_"))}
        env.update(
            {
                "REVIEWBOT_WEBHOOK_SECRET": SECRET,
                "REVIEWBOT_DATABASE_PATH": str(tmp / "bench.db"),
                "REVIEWBOT_GITHUB_APP_ID": str(APP_ID),
                "REVIEWBOT_GITHUB_PRIVATE_KEY": priv,
                "REVIEWBOT_GITHUB_API_URL": gh.base_url,
                "REVIEWBOT_LLM_BASE_URL": llm.base_url,
                "REVIEWBOT_LLM_API_KEY": "bench",
                "REVIEWBOT_LLM_MODEL": "fake-model",
                "REVIEWBOT_LOG_LEVEL": log_level or "WARNING",
                "REVIEWBOT_HOST": "127.0.0.1",
                "REVIEWBOT_PORT": str(port),
            }
        )
        errors = sys.stderr if log_level else subprocess.PIPE  # BENCH_LOG_LEVEL=INFO shows the job logs
        server = subprocess.Popen(
            [sys.executable, "-m", "reviewbot", "serve"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        url = f"http://127.0.0.1:{port}"
        rows: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code in (200, 503):
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"reviewbot serve did not start: {server.stderr.read().decode()}")
                time.sleep(0.05)
            for k in range(runs + 1):  # run 0 warms up (token, imports, grammars)
                for case, repo, _target, _verifies in CASES:  # alternating: the same load for both
                    rows.append(one_run(gh, llm, server, url, repo, k) | {"case": case})
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
            llm.close()
    cases = summarise(rows)
    return {"rows": rows, "budget": budget, "max_in_flight": llm.max_in_flight, "cases": cases}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per case: median ratio and overhead over the measured runs, and whether it met its target
    with the expected requests (verification requests in its case only, in every run)."""
    cases = {}
    for case, _repo, target, verifies in CASES:
        mine = [r for r in rows if r["case"] == case]
        measured = [r for r in mine if r["run"] != "warm-up"]
        ratios = [r["e2e"] / r["slowest"] for r in measured if r["slowest"]]
        ratio = statistics.median(ratios) if ratios else float("inf")
        ok_requests = all(r["requests"] == REQUESTS and bool(r["verify_requests"]) == verifies for r in mine)
        cases[case] = {
            "target": target,
            "median_ratio": ratio,
            "ok_requests": ok_requests,
            "median_overhead": statistics.median([r["e2e"] - r["slowest"] for r in measured] or [0.0]),
            "ok": ratio <= target and ok_requests,
        }
    return cases


def one_run(
    gh: FakeGitHub, llm: FakeLLM, server: subprocess.Popen[bytes], url: str, repo: str, k: int
) -> dict[str, Any]:
    """Post one signed `pull_request.opened` for PR k+1 of `repo`; time it to the posted review."""
    number = k + 1
    gh.add_pull(repo, number, head_files=files(True), title=f"latency {k}")
    body = json.dumps(pr_delivery(gh, number, repo)).encode()
    headers = {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": f"lat-{repo}-{k}",
        "X-Hub-Signature-256": sign(SECRET.encode(), body),
        "Content-Type": "application/json",
    }
    first_call = len(llm.received)
    t0 = time.monotonic()
    r = httpx.post(f"{url}/webhook", content=body, headers=headers, timeout=10)
    assert r.status_code == 202, r.text
    while not gh.posted_reviews(repo, number):
        if time.monotonic() - t0 > 60:
            raise SystemExit(f"run {k}: no review after 60 s: {_stderr(server)}")
        time.sleep(0.005)
    t1 = time.monotonic()
    # the job ends with the check run: wait for it so runs do not queue behind each other
    while not any(c["head_sha"] == gh.pulls[(repo, number)].head_sha for c in gh.check_runs):
        if time.monotonic() - t1 > 30:
            raise SystemExit(f"run {k}: no check run: {_stderr(server)}")
        time.sleep(0.01)
    posts = [r for r in llm.received[first_call:] if r.method == "POST" and r.answered]
    calls = [(r.at, r.answered or r.at) for r in posts]
    judge = [(r.answered or r.at) - r.at for r in posts if r.body and is_verification(r.body)]
    review = gh.posted_reviews(repo, number)[0]
    return {
        "run": "warm-up" if k == 0 else str(k),
        "e2e": t1 - t0,
        "slowest": max((b - a for a, b in calls), default=0.0),
        "requests": len(posts) - len(judge),
        "verify_requests": len(judge),
        "slowest_verify": max(judge, default=0.0),
        "comments": len(review["comments"]),
        "llm_span": (max(b for _, b in calls) - min(a for a, _ in calls)) if calls else 0.0,
    }


def _stderr(server: subprocess.Popen[bytes]) -> str:
    return server.stderr.read().decode() if server.stderr else "(on the terminal)"


def render(res: dict[str, Any], command: str) -> str:
    rows = res["rows"]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lm = LatencyModel
    lines = [
        SECTION,
        "",
        f"`{command}`: `reviewbot serve` (server + worker in one process, as deployed) against FakeGitHub",
        "and FakeLLM on 127.0.0.1, every setting at its default: one LLM pass,",
        f"REVIEWBOT_LLM_MAX_CONCURRENCY={CONCURRENCY}. The PR changes {REQUESTS} Python files with 2 planted",
        f"bugs each; the repo config sets `llm.max_tokens_per_request: {res['budget']}`, the largest budget",
        f"for which the real pipeline packs them into exactly {REQUESTS} review requests: a PR that needs",
        "no more requests than the client runs at once. Two cases, alternating run by run through the same",
        "server: **verification on** (the default: the judge's requests, 2 to 4 findings each spread over",
        "the free concurrency, start when the review requests have answered: a second LLM round in",
        "series) and **verification off** (`verify: false`: the review requests are the whole LLM chain;",
        "issue 14's target is for this case, a PR the LLM answers in one round). The fake LLM",
        f"answers like a hosted model: {lm.first_token:.1f} s to the first token, plus the prompt at "
        f"{lm.prefill_per_s:.0f} tokens/s,",
        f"plus the answer at {lm.decode_per_s:.0f} tokens/s, so a review reply (findings with bodies and "
        "quoted code) takes",
        "longer than the judge's verdict list. `end to end` runs from sending the signed",
        "`pull_request.opened` delivery to the review appearing on the fake GitHub; `slowest LLM call` is",
        "that run's slowest request, review or verification, as timed by the fake (arrival -> answer);",
        "`overhead` is end to end minus the slowest call. Targets: end to end <=",
        f"{TARGET}x the slowest call with verification, <= {TARGET_NO_VERIFY}x without.",
        "The overhead is the verification round (when on), GitHub round trips (config, PR, diff, the",
        "PR's reviews and comments at once; then the head files at once), the pipeline's CPU and the",
        "review POST. Both fakes listen with a 128-connection backlog: socketserver's default of 5 turns",
        "simultaneous connects into a 1 s SYN retransmit, which GitHub's front ends do not do.",
        "",
        "| case | run | review requests | verification requests | end to end | slowest LLM call "
        "| slowest verification | ratio | overhead | first request -> last answer | comments posted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, *_ in CASES:
        for r in (r for r in rows if r["case"] == case):
            ratio = r["e2e"] / r["slowest"] if r["slowest"] else float("inf")
            lines.append(
                f"| {case} | {r['run']} | {r['requests']} | {r['verify_requests']} | {r['e2e']:.3f} s "
                f"| {r['slowest']:.3f} s | {r['slowest_verify']:.3f} s | {ratio:.2f}x "
                f"| {(r['e2e'] - r['slowest']) * 1000:.0f} ms | {r['llm_span']:.3f} s | {r['comments']} |"
            )
    said = []
    for case, c in res["cases"].items():
        verdict = "PASS" if c["ok"] else ("FAIL" if c["ok_requests"] else "FAIL (unexpected requests)")
        said.append(
            f"{case}: **{verdict}**, median ratio {c['median_ratio']:.2f}x (target <= {c['target']}x), "
            f"median overhead {c['median_overhead'] * 1000:.0f} ms"
        )
    lines += [
        "",
        "Result: " + "; ".join(said) + f". At most {res['max_in_flight']} LLM requests in flight (last run"
        f" {when} on {os.cpu_count()} CPUs shared with other work, load average {load[0]:.1f} / "
        f"{load[1]:.1f} (1 / 5 min)). The warm-up runs include the first installation-token exchange and"
        " the first tree-sitter parses.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="measured runs per case after one warm-up (5)")
    ap.add_argument("--write", action="store_true", help="rewrite the BENCHMARKS.md section")
    ap.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)  # the default now
    args = ap.parse_args(argv)
    res = run(args.runs)
    command = "python bench/latency.py --write" + (f" --runs {args.runs}" if args.runs != 5 else "")
    text = render(res, command)
    print(text)
    if args.write:
        write_section(SECTION, text)
    return 0 if all(c["ok"] for c in res["cases"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
