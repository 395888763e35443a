"""`reviewbot config check` refuses every config the App refuses, with the same lines.

Each refusal reason has a fixture in fixtures/configs (every file there but good.yml and org.yml):
invalid YAML, not a mapping, duplicate and unknown keys, wrong types, exclusive thresholds, custom
rules that are malformed, lack `@match`, compile for none of their languages or repeat an id. The
App side runs for real: a pull request on FakeGitHub whose default branch carries the file, one
delivery through the server, the worker's review handler posting its "config is invalid" check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reviewbot.cli import app
from tests.test_app_e2e import INSTALLATION, REPO, World, module

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "fixtures" / "configs"
REFUSED = sorted(p.name for p in CONFIGS.glob("*.yml") if p.name not in ("good.yml", "org.yml"))
CONFIG_PATH = ".github/reviewbot.yml"
runner = CliRunner()


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict]]:
    """fixture name -> the check run the App posted for a PR of a repo with that config."""
    w = World(tmp_path_factory.mktemp("parity"))
    w.start_worker()
    try:
        pulls = {}
        w.gh.add_repo(REPO, INSTALLATION, {"a.py": module(5)})  # World.pr_event's default repository
        for i, name in enumerate(REFUSED):
            repo = f"acme/parity{i}"
            w.gh.add_repo(repo, INSTALLATION, {"a.py": module(20), CONFIG_PATH: (CONFIGS / name).read_text()})
            pr = w.gh.add_pull(repo, 1, head_files={"a.py": module(20, {3: f"changed{i}"})})
            payload = w.pr_event("opened", pr)
            payload["repository"] = {"id": w.gh.repos[repo].id, "full_name": repo}
            w.deliver("pull_request", payload)
            pulls[name] = (repo, pr)
        w.settle(timeout=60)
        out = {}
        for name, (repo, pr) in pulls.items():
            assert w.gh.posted_reviews(repo, 1) == [], f"{name}: the App reviewed a config it should refuse"
            [check] = [c for c in w.gh.check_runs if c["head_sha"] == pr.head_sha]
            out[name] = check
        yield out
    finally:
        w.close()


def test_the_rule_set_refusals_have_their_fixtures() -> None:
    """The refusals that come from building the rule set, not from the config's schema."""
    assert {
        "rule-without-match.yml",
        "rule-query-does-not-compile.yml",
        "rule-duplicate-id.yml",
        "rule-any-language-query.yml",
        "broken-yaml.yml",
        "unknown-key.yml",
    } <= set(REFUSED)


@pytest.mark.parametrize("name", REFUSED)
def test_config_check_refuses_what_the_app_refuses_with_the_same_lines(
    name: str, refusals: dict[str, dict], tmp_path: Path
) -> None:
    check = refusals[name]
    assert check["conclusion"] == "neutral"
    assert check["output"]["title"].startswith(f"reviewbot config is invalid ({CONFIG_PATH}:")
    app_lines = [line.removeprefix("- `").removesuffix("`") for line in check["output"]["text"].splitlines()]

    local = tmp_path / ".github" / "reviewbot.yml"
    local.parent.mkdir()
    local.write_text((CONFIGS / name).read_text())
    result = runner.invoke(app, ["config", "check", str(local)])
    assert result.exit_code == 1, result.stdout
    cli_lines = [line.replace(str(local), CONFIG_PATH, 1) for line in result.stderr.splitlines()]
    assert cli_lines == app_lines


def test_unknown_rule_ids_fail_config_check_with_a_did_you_mean(tmp_path: Path) -> None:
    """The App reviews with a note; `config check` says which line names no rule."""
    path = tmp_path / "reviewbot.yml"
    path.write_text(
        "rules:\n"
        '  disable: [py-print, "js-*", no-such-thing-at-all]\n'
        "  enable:\n"
        "    - py-except-pas\n"
        "  severity:\n"
        "    py-eval: critical\n"
        "    py-eval-exec: high\n"
    )
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:2: rules.disable[0]: 'py-print' names no rule; did you mean 'py-print-leftover'?",
        f"{path}:2: rules.disable[2]: 'no-such-thing-at-all' names no rule",
        f"{path}:4: rules.enable[0]: 'py-except-pas' names no rule; did you mean 'py-except-pass'?",
        f"{path}:6: rules.severity.py-eval: 'py-eval' names no rule; did you mean 'py-eval-exec'?",
    ]


def test_unknown_rule_id_in_the_org_file_names_the_org_file(tmp_path: Path) -> None:
    org = tmp_path / "org.yml"
    org.write_text("max_comments: 4\nrules:\n  disable: [py-bare-excep]\n")
    repo = tmp_path / "repo.yml"
    repo.write_text("max_comments: 3\n")
    result = runner.invoke(app, ["config", "check", str(repo), "--org", str(org)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{org}:3: rules.disable[0]: 'py-bare-excep' names no rule; did you mean 'py-bare-except'?"
    ]


def test_custom_rule_ids_and_wildcards_are_known(tmp_path: Path) -> None:
    path = tmp_path / "reviewbot.yml"
    path.write_text(
        'rules:\n  disable: ["go-*"]\n  severity: {mine: high}\n  custom:\n'
        "    - {id: mine, languages: [python], severity: low, category: style, message: m, instruction: i}\n"
    )
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.stderr
