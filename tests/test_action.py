"""action.yml run the way a runner runs it, locally: its shell steps on a fixture pull request.

A small runner reads action.yml, evaluates the `${{ }}` expressions and `if:` conditions the file
uses (inputs, github.*, steps.<id>.outputs, always()), runs every `run:` step with bash as Actions
does (`bash --noprofile --norc -eo pipefail`, GITHUB_OUTPUT, GITHUB_PATH, GITHUB_STEP_SUMMARY, env)
and records `uses:` steps (upload-sarif cannot run offline: the test checks what it would upload).
The workspace is a shallow clone of the fixture PR, as actions/checkout leaves it: the base commit
is not there until the action fetches it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
sys.path.insert(0, str(ROOT / "fixtures" / "sarif"))
import make_sarif  # noqa: E402

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class Run:
    """What a job using the action did."""

    ok: bool = True
    steps: list[dict[str, Any]] = field(default_factory=list)  # name, outcome, (uses, with)
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""


def _lookup(ctx: dict[str, Any], path: str) -> Any:
    cur: Any = ctx
    for part in path.split("."):
        cur = cur.get(part, "") if isinstance(cur, dict) else ""
    return cur


def _value(ctx: dict[str, Any], expr: str) -> Any:
    expr = expr.strip()
    if expr == "always()":
        return True
    if expr in ("success()", "failure()"):
        return ctx["_ok"] if expr == "success()" else not ctx["_ok"]
    if "&&" in expr:
        return all(_value(ctx, part) for part in expr.split("&&"))
    m = re.fullmatch(r"(.+?)\s*(==|!=)\s*'([^']*)'", expr)
    if m:
        equal = str(_value(ctx, m.group(1))) == m.group(3)
        return equal if m.group(2) == "==" else not equal
    if not re.fullmatch(r"[\w.-]+", expr):
        raise AssertionError(f"action.yml uses an expression this runner does not know: {expr!r}")
    return _lookup(ctx, expr)


def _subst(ctx: dict[str, Any], text: str) -> str:
    return _EXPR.sub(lambda m: str(_value(ctx, m.group(1))), text)


def _condition(ctx: dict[str, Any], cond: str | None) -> bool:
    if cond is None:
        return bool(ctx["_ok"])  # the implicit success()
    inner = _EXPR.fullmatch(cond.strip())
    expr = inner.group(1) if inner else cond
    met = bool(_value(ctx, expr))
    # GitHub adds success() unless the condition calls a status function itself
    return met if re.search(r"\b(always|failure|success|cancelled)\(\)", expr) else met and ctx["_ok"]


def run_action(workspace: Path, tmp: Path, inputs: dict[str, str], event: dict[str, Any]) -> Run:
    spec = yaml.safe_load(ACTION.read_text())
    assert spec["runs"]["using"] == "composite"
    given = {k: str(v.get("default", "")) for k, v in spec["inputs"].items()}
    unknown = set(inputs) - set(given)
    assert not unknown, f"not inputs of the action: {unknown}"
    given.update(inputs)
    ctx: dict[str, Any] = {
        "inputs": given,
        "github": {"action_path": str(ROOT), "event": event, "workspace": str(workspace)},
        "steps": {},
        "_ok": True,
    }
    run = Run()
    summary = tmp / "summary.md"
    summary.touch()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEWBOT_", "OPENAI_", "GITHUB_"))}
    # the runner's python and the already-installed reviewbot: this test's own virtualenv
    base_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"
    base_env.update(
        GITHUB_STEP_SUMMARY=str(summary),
        RUNNER_TEMP=str(tmp),
        GITHUB_WORKSPACE=str(workspace),
        GITHUB_ACTIONS="true",
        CI="true",
    )
    for n, step in enumerate(spec["runs"]["steps"]):
        name = step.get("name", f"step {n}")
        if not _condition(ctx, step.get("if")):
            run.steps.append({"name": name, "outcome": "skipped"})
            continue
        if "uses" in step:
            given_with = {k: _subst(ctx, str(v)) for k, v in (step.get("with") or {}).items()}
            run.steps.append({"name": name, "outcome": "success", "uses": step["uses"], "with": given_with})
            continue
        assert step.get("shell") == "bash", f"{name}: composite run steps must name their shell"
        out_file, path_file = tmp / f"output-{n}", tmp / f"path-{n}"
        out_file.touch()
        path_file.touch()
        env = {**base_env, "GITHUB_OUTPUT": str(out_file), "GITHUB_PATH": str(path_file)}
        env.update({k: _subst(ctx, str(v)) for k, v in (step.get("env") or {}).items()})
        script = tmp / f"step-{n}.sh"
        script.write_text(_subst(ctx, step["run"]))
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        outputs = dict(line.split("=", 1) for line in out_file.read_text().splitlines() if "=" in line)
        for folder in path_file.read_text().splitlines():  # GITHUB_PATH: first on PATH from the next step
            base_env["PATH"] = f"{folder}{os.pathsep}{base_env['PATH']}"
        if "id" in step:
            ctx["steps"][step["id"]] = {"outputs": outputs}
        outcome = "success" if proc.returncode == 0 else "failure"
        run.steps.append(
            {
                "name": name,
                "outcome": outcome,
                "stdout": proc.stdout,
                "stderr": proc.stderr,
                "code": proc.returncode,
            }
        )
        if proc.returncode != 0:
            ctx["_ok"] = False
    run.ok = bool(ctx["_ok"])
    run.outputs = {k: _subst(ctx, str(v["value"])) for k, v in spec.get("outputs", {}).items()}
    run.summary = summary.read_text()
    return run


PR = tuple[Path, dict[str, Any]]


@pytest.fixture()
def pull_request(tmp_path: Path) -> PR:
    """A shallow checkout of the fixture PR's head (the base commit absent), and its event."""
    origin = tmp_path / "origin"
    base, head = make_sarif.build_repo(origin)
    workspace = tmp_path / "workspace"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{origin}", str(workspace)], check=True)
    probe = ["git", "-C", str(workspace), "cat-file", "-e", f"{base}^{{commit}}"]
    missing = subprocess.run(probe, capture_output=True, check=False)
    assert missing.returncode != 0, "the checkout must lack the base commit, as a depth-1 checkout does"
    event = {"pull_request": {"number": 7, "base": {"sha": base}, "head": {"sha": head}}}
    return workspace, event


def _step(run: Run, name: str) -> dict[str, Any]:
    return next(s for s in run.steps if s["name"] == name)


def test_action_reviews_uploads_sarif_and_fails_on_high(pull_request: PR, tmp_path: Path) -> None:
    workspace, event = pull_request
    (tmp_path / "runner").mkdir()
    run = run_action(workspace, tmp_path / "runner", {"fail-on": "high"}, event)
    review = _step(run, "Review the pull request")
    assert review["outcome"] == "success", review["stderr"]
    assert _step(run, "Install reviewbot")["stdout"].startswith("reviewbot 0.1.0 is already installed")
    # the findings are uploaded to code scanning even though the job fails on them
    upload = _step(run, "Upload SARIF to code scanning")
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    sarif = json.loads((workspace / upload["with"]["sarif_file"]).read_text())  # relative to the workspace
    rule_ids = {r["ruleId"] for r in sarif["runs"][0]["results"]}
    assert {"py-eval-exec", "py-subprocess-shell"} <= rule_ids
    assert upload["with"]["category"] == "reviewbot"
    assert _step(run, "Fail on findings")["outcome"] == "failure"
    assert not run.ok
    assert run.outputs["exit-code"] == "1"
    assert int(run.outputs["findings"]) == len(sarif["runs"][0]["results"])
    assert "reviewbot:" in run.summary and event["pull_request"]["head"]["sha"] in run.summary


def test_action_with_sarif_in_and_no_fail_on_passes(pull_request: PR, tmp_path: Path) -> None:
    workspace, event = pull_request
    (tmp_path / "runner").mkdir()
    sarifs = f"{make_sarif.HERE / 'ruff.sarif'}\n  {make_sarif.HERE / 'semgrep.sarif'}\n"
    run = run_action(workspace, tmp_path / "runner", {"sarif-in": sarifs, "sarif-file": "out.sarif"}, event)
    assert run.ok, [s.get("stderr") for s in run.steps]
    assert _step(run, "Fail on findings")["outcome"] == "skipped"
    results = json.loads((workspace / "out.sarif").read_text())["runs"][0]["results"]
    assert "ruff/S324" in {r["ruleId"] for r in results}  # a linter finding, filtered in
    assert run.outputs["exit-code"] == "0"


def test_action_stops_on_a_reviewbot_error(pull_request: PR, tmp_path: Path) -> None:
    workspace, event = pull_request
    (tmp_path / "runner").mkdir()
    run = run_action(workspace, tmp_path / "runner", {"fail-on": "urgent"}, event)
    review = _step(run, "Review the pull request")
    assert review["code"] == 2 and "--fail-on must be one of" in review["stderr"]
    assert _step(run, "Upload SARIF to code scanning")["outcome"] == "skipped"  # nothing to upload
    assert not run.ok


def test_readme_workflow_uses_this_action_with_its_inputs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    workflows = [yaml.safe_load(b) for b in blocks if "reviewbot/reviewbot@" in b]
    assert workflows, "README shows a copy-paste workflow using the action"
    inputs = yaml.safe_load(ACTION.read_text())["inputs"]
    for wf in workflows:
        job = next(iter(wf["jobs"].values()))
        assert job["permissions"]["security-events"] == "write"
        steps = [s for s in job["steps"] if str(s.get("uses", "")).startswith("reviewbot/reviewbot@")]
        assert steps and set(steps[0].get("with", {})) <= set(inputs)
