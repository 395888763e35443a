"""`reviewbot filter`: the offline contract, run as a real subprocess on fixtures/filter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FIELDS = {"id", "decision", "score", "reason", "severity", "category", "cluster"}
FIELDS |= {"threshold", "threshold_from"}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reviewbot", "filter", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def filt(fixtures_dir: Path) -> Path:
    return fixtures_dir / "filter"


def rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_contract_output_fields_order_and_dedup(filt: Path) -> None:
    res = run("--history", filt / "history.jsonl", filt / "candidates.jsonl")
    assert res.returncode == 0, res.stderr
    out = rows(res.stdout)
    ids = [json.loads(line)["id"] for line in (filt / "candidates.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ids
    for r in out:
        assert set(r) == FIELDS
        assert r["decision"] in ("post", "suppress")
        assert 0.0 <= r["score"] <= 1.0
        assert r["reason"]
    by = {r["id"]: r for r in out}
    # a1 and a2 are the same SQL injection from two passes: one cluster, at most one posted
    assert by["a1"]["cluster"] == by["a2"]["cluster"]
    assert sum(by[i]["decision"] == "post" for i in ("a1", "a2")) <= 1
    assert any(by[i]["reason"].startswith("duplicate of ") for i in ("a1", "a2"))
    # different repos are different reviews: never one cluster
    assert by["b1"]["cluster"] != by["a1"]["cluster"]


def test_deterministic(filt: Path) -> None:
    a = run("--history", filt / "history.jsonl", filt / "candidates.jsonl")
    b = run("--history", filt / "history.jsonl", filt / "candidates.jsonl")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout


def test_without_history_and_with_config(filt: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "reviewbot.yml"
    cfg.write_text("max_comments: 1\nmin_severity: nit\nmin_acceptance: 0.0\n")
    res = run("--config", cfg, filt / "candidates.jsonl")
    assert res.returncode == 0, res.stderr
    out = rows(res.stdout)
    posted_per_pr: dict[str, int] = {}
    for r in out:
        if r["decision"] == "post":
            posted_per_pr[r["id"][0]] = posted_per_pr.get(r["id"][0], 0) + 1
    assert posted_per_pr == {"a": 1, "b": 1}
    assert any(r["reason"] == "over budget (max_comments=1)" for r in out)
    assert {(r["threshold"], r["threshold_from"]) for r in out} == {(0.0, "min_acceptance")}


def test_reports_the_threshold_and_where_it_came_from(filt: Path) -> None:
    """Without a setting: the default on a fresh repo; with history, the repo's accept rate."""
    res = run(filt / "candidates.jsonl")
    assert res.returncode == 0, res.stderr
    origin = "default (fewer than 10 labelled findings in this repo)"
    assert {r["threshold_from"] for r in rows(res.stdout)} == {origin}
    assert {r["threshold"] for r in rows(res.stdout)} == {0.5}


def test_malformed_lines_exit_2_with_line_numbers(filt: Path) -> None:
    res = run(filt / "malformed.jsonl")
    assert res.returncode == 2
    assert res.stdout == ""
    assert "line 2:" in res.stderr and "invalid JSON" in res.stderr
    assert "line 3:" in res.stderr and "'pr'" in res.stderr
    assert "line 4:" in res.stderr and "'id'" in res.stderr
    assert "line 1:" not in res.stderr


def test_malformed_history_and_duplicate_ids(filt: Path, tmp_path: Path) -> None:
    hist = tmp_path / "h.jsonl"
    hist.write_text('{"id": "h", "repo": "a/b", "pr": 1, "body": "x", "outcome": "maybe"}\n')
    cands = tmp_path / "c.jsonl"
    cands.write_text(
        '{"id": "x", "repo": "a/b", "pr": 1, "body": "x"}\n{"id": "x", "repo": "a/b", "pr": 1, "body": "y"}\n'
    )
    res = run("--history", hist, cands)
    assert res.returncode == 2
    assert "h.jsonl: line 1: field 'outcome'" in res.stderr
    assert "c.jsonl: line 2: duplicate id 'x'" in res.stderr


def test_help_has_example() -> None:
    res = run("--help")
    assert res.returncode == 0
    assert "Example: reviewbot filter --history" in res.stdout


def test_help_names_every_field_the_parser_reads() -> None:
    """The contract a user writes JSONL against is the help text: a field the parser reads but
    the help leaves out (as `rank` was, though the model reads a comment's order) is a lie."""
    import re

    from reviewbot.commands import filter_cmd

    source = Path(filter_cmd.__file__).read_text(encoding="utf-8")
    fields = set(re.findall(r'_(?:opt|opt_bool|probability)\(obj, "(\w+)"', source))
    fields |= set(re.findall(r'obj\.get\("(\w+)"\)', source))
    assert {"rank", "verdict", "outcome", "id", "body"} <= fields
    shown = " ".join(run("--help").stdout.split())
    assert [f for f in sorted(fields) if f not in shown] == []


def _gate_module() -> object:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "bench" / "check_filter_regression.py"
    spec = importlib.util.spec_from_file_location("check_filter_regression", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regression_gate_checks_f1_and_auc_too() -> None:
    gate: Any = _gate_module()
    base = {"precision": 0.6, "recall": 0.3, "f1": 0.4, "auc": 0.7}
    assert gate.compare(dict(base), base) == []
    assert [m.split(":")[0] for m in gate.compare({**base, "f1": 0.3}, base)] == ["f1"]
    assert [m.split(":")[0] for m in gate.compare({**base, "auc": 0.6}, base)] == ["auc"]


def test_regression_gate_refuses_to_run_without_its_baseline(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run(
        [sys.executable, str(root / "bench/check_filter_regression.py"), "--baseline", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2 and "refused: no baseline" in res.stderr


@pytest.mark.timeout(1200)  # the per-source evaluation: ~1.5 CPU-minutes, far longer on a busy machine
def test_review_bench_regression_gate(shared_data: Path) -> None:
    """The per-source filter on review-bench must not fall more than 0.05 below the baseline."""
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run(
        [sys.executable, str(root / "bench" / "check_filter_regression.py")],
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "baseline" in res.stdout


def test_history_dismissed_and_posted_fingerprints_reach_only_their_place(tmp_path: Path) -> None:
    """A dismissed finding silences its reworded copy at the same place (path and symbol) of the
    same repo, not the same words elsewhere; one already posted on the PR is not posted again."""
    body = "get_user builds the SQL query with an f-string containing user_id: SQL injection."

    def cand(cid: str, path: str, pr: int, repo: str = "o/r", **extra: Any) -> dict[str, Any]:
        return {
            "id": cid,
            "repo": repo,
            "pr": pr,
            "path": path,
            "line": 10,
            "symbol": "get_user",
            "body": body,
            "source": "llm",
            "severity": "high",
            "category": "security",
            **extra,
        }

    history = [
        cand("h1", "svc/users.py", 1, outcome="dismissed", at="1"),
        cand("h2", "svc/orders.py", 7, outcome="accepted", at="2"),
    ]
    candidates = [
        cand("same-place", "svc/users.py", 5),
        cand("other-path", "svc/billing.py", 5),
        cand("other-repo", "svc/users.py", 5, repo="o/other"),
        cand("posted-on-pr", "svc/orders.py", 7),
    ]
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(o) + "\n" for o in history))
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(o) + "\n" for o in candidates))
    res = run("--history", tmp_path / "h.jsonl", tmp_path / "c.jsonl")
    assert res.returncode == 0, res.stderr
    reason = {r["id"]: r["reason"] for r in rows(res.stdout)}
    assert reason["same-place"] == "dismissed before"
    assert reason["posted-on-pr"] == "already posted"
    assert reason["other-path"] not in ("dismissed before", "already posted")
    assert reason["other-repo"] not in ("dismissed before", "already posted")
