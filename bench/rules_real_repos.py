"""Rules alone over real commits: `reviewbot review` (the CLI, no LLM) on each of the latest
1,000 commits of click, cobra and express (../shared/data/real-repos), every posted finding
listed with a human judgement (true / debatable / false) from bench/rules_judgements.json.

Why: issue #10 found that rule hits were posted whatever their context (12 of 14 in test code).
Target: at most one posted finding in test code over the three projects, and every posted
finding judged. Exits 1 when the target is missed or a finding has no judgement yet (the
unjudged ones are printed so they can be added to the judgements file).

Each commit is reviewed against its first parent (merge commits too: cobra has 992 non-merge
commits, so its 1,000 include a few merges). The CLI runs in-process through typer's runner
(the same command, without 3,000 interpreter start-ups).

Run: .venv/bin/python bench/rules_real_repos.py [--commits 1000] [--markdown]   (~30 min on 2 busy cores)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchmarks_md import write_section  # noqa: E402
from train_prior import SHARED  # noqa: E402

from reviewbot.core.roles import file_role  # noqa: E402

PROJECTS = ("click", "cobra", "express")
JUDGEMENTS = ROOT / "bench" / "rules_judgements.json"
REPORT = ROOT / "bench" / "reports" / "rules_real_repos.json"
PRECISION = ROOT / "reviewbot" / "data" / "rule_precision.json"
WORK = Path(os.environ.get("TMPDIR", "/tmp")) / "reviewbot-real-repos"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def checkout(project: str) -> Path:
    target = WORK / project
    if not target.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        bundle = SHARED / "real-repos" / f"{project}.bundle"
        subprocess.run(["git", "clone", "-q", str(bundle), str(target)], check=True, capture_output=True)
    return target


def commits(repo: Path, n: int) -> list[str]:
    """The latest `n` commits that have a parent (newest first)."""
    out = _git(repo, "rev-list", "--parents", f"--max-count={n + 1}", "HEAD").split("\n")
    return [line.split()[0] for line in out if len(line.split()) >= 2][:n]


def review_commit(runner: Any, app: Any, repo: Path, sha: str) -> dict[str, Any]:
    result = runner.invoke(app, ["review", str(repo), "--base", f"{sha}^", "--head", sha, "--format", "json"])
    if result.exit_code not in (0, 1):
        return {"error": (result.stderr or result.output)[-300:]}
    return json.loads(result.stdout)


def key_of(project: str, sha: str, finding: dict[str, Any]) -> str:
    return f"{project}:{sha[:10]}:{finding['path']}:{finding['line']}:{finding.get('rule_id')}"


def run(n: int) -> dict[str, Any]:
    from typer.testing import CliRunner

    from reviewbot.cli import app

    for k in [k for k in os.environ if k.startswith(("REVIEWBOT_LLM", "OPENAI_"))]:
        del os.environ[k]  # rules alone
    runner = CliRunner()
    out: dict[str, Any] = {"projects": {}, "findings": []}
    for project in PROJECTS:
        repo = checkout(project)
        shas = commits(repo, n)
        t0 = time.perf_counter()
        errors = candidates = 0
        for sha in shas:
            report = review_commit(runner, app, repo, sha)
            if "error" in report:
                errors += 1
                continue
            candidates += int(report["funnel"]["candidates"])
            for f in report["findings"]:
                out["findings"].append(
                    {
                        "key": key_of(project, sha, f),
                        "project": project,
                        "commit": sha[:10],
                        "path": f["path"],
                        "line": f["line"],
                        "rule_id": f.get("rule_id"),
                        "severity": f.get("severity"),
                        "role": file_role(f["path"]),
                    }
                )
        out["projects"][project] = {
            "commits": len(shas),
            "errors": errors,
            "candidates": candidates,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(
            f"{project}: {len(shas)} commits, {candidates} rule candidates, {errors} errors, "
            f"{out['projects'][project]['seconds']} s",
            flush=True,
        )
    return out


def markdown(out: dict[str, Any], judgements: dict[str, dict[str, str]]) -> str:
    findings = out["findings"]
    in_tests = [f for f in findings if f["role"] == "test"]
    lines = [
        "## Rules on real repositories",
        "",
        "Reproduce: `.venv/bin/python bench/rules_real_repos.py --markdown` (needs",
        "../shared/data/real-repos; about 30 minutes on 2 busy shared cores). `reviewbot review",
        "--format json`",
        "with the rules alone (no LLM), in-process through typer's runner,",
        "on each of the latest commits of each project, against its first parent; every posted finding is",
        "listed with a human judgement from `bench/rules_judgements.json` (true: a real issue worth the",
        "comment; debatable: defensible either way; false: noise).",
        "",
        "| project | commits | rule candidates | posted | in test code |",
        "|---|---:|---:|---:|---:|",
    ]
    for project, p in out["projects"].items():
        mine = [f for f in findings if f["project"] == project]
        lines.append(
            f"| {project} | {p['commits']} | {p['candidates']} | {len(mine)} | "
            f"{sum(1 for f in mine if f['role'] == 'test')} |"
        )
    verdicts = [judgements.get(f["key"], {}).get("verdict", "unjudged") for f in findings]
    counts = {v: verdicts.count(v) for v in ("true", "debatable", "false", "unjudged")}
    lines += [
        "",
        f"**Target** at most one posted finding in test code: {'met' if len(in_tests) <= 1 else 'missed'} "
        f"({len(in_tests)}). Judgements: {counts['true']} true, {counts['debatable']} debatable, "
        f"{counts['false']} false"
        + (f", {counts['unjudged']} not judged yet" if counts["unjudged"] else "")
        + ".",
        "",
        "| project | commit | file (role) | line | rule | judgement | why |",
        "|---|---|---|---:|---|---|---|",
    ]
    for f, v in zip(findings, verdicts, strict=True):
        note = judgements.get(f["key"], {}).get("note", "")
        lines.append(
            f"| {f['project']} | {f['commit']} | `{f['path']}` ({f['role']}) | {f['line']} | "
            f"{f['rule_id']} | {v} | {note} |"
        )
    return "\n".join(lines) + "\n"


def rule_precision(out: dict[str, Any], judgements: dict[str, dict[str, str]]) -> dict[str, Any]:
    """rule id -> {true, judged} over the judged findings (debatable counts half)."""
    worth = {"true": 1.0, "debatable": 0.5, "false": 0.0}
    rules: dict[str, dict[str, float]] = {}
    for f in out["findings"]:
        verdict = judgements.get(f["key"], {}).get("verdict")
        if verdict not in worth or not f["rule_id"]:
            continue
        r = rules.setdefault(f["rule_id"], {"true": 0.0, "judged": 0.0})
        r["true"] += worth[verdict]
        r["judged"] += 1.0
    commits = sum(p["commits"] for p in out["projects"].values())
    return {
        "source": f"bench/rules_real_repos.py: rules alone over {commits} commits of "
        + ", ".join(out["projects"]),
        "rules": dict(sorted(rules.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--markdown", action="store_true", help="rewrite the BENCHMARKS.md section")
    parser.add_argument("--reuse", action="store_true", help="re-render from the last JSON report")
    args = parser.parse_args()
    if not (SHARED / "real-repos").is_dir():
        print(f"skipped: {SHARED / 'real-repos'} is absent")
        return 0
    if args.reuse and REPORT.exists():
        out = json.loads(REPORT.read_text())
    else:
        out = run(args.commits)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    judgements = json.loads(JUDGEMENTS.read_text()) if JUDGEMENTS.exists() else {}
    unjudged = [f for f in out["findings"] if f["key"] not in judgements]
    for f in out["findings"]:
        print(f"{f['key']} role={f['role']} -> {judgements.get(f['key'], {}).get('verdict', 'UNJUDGED')}")
    if args.markdown:
        write_section("## Rules on real repositories", markdown(out, judgements))
        PRECISION.write_text(json.dumps(rule_precision(out, judgements), indent=1, sort_keys=True) + "\n")
    in_tests = sum(1 for f in out["findings"] if f["role"] == "test")
    ok = in_tests <= 1 and not unjudged
    print(
        f"posted {len(out['findings'])}, in test code {in_tests}, unjudged {len(unjudged)}: "
        f"{'OK' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
