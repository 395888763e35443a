"""`reviewbot config check|schema` and the root `--help`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reviewbot.cli import app
from reviewbot.core.config import ConfigError, load_config
from reviewbot.review.review_config import load_review_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "fixtures" / "configs"
BAD = sorted(p.name for p in CONFIGS.glob("*.yml") if p.name not in ("good.yml", "org.yml"))
runner = CliRunner()


def test_root_help_runs_as_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reviewbot", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert "config" in proc.stdout


@pytest.mark.parametrize(
    "args", [["config", "--help"], ["config", "check", "--help"], ["config", "schema", "--help"]]
)
def test_every_config_help_has_an_example(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "reviewbot config " in result.stdout


def test_schema_prints_the_committed_schema() -> None:
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"].startswith("reviewbot repository configuration")
    assert result.stdout == (ROOT / "reviewbot.schema.json").read_text()


def test_check_good_prints_the_merged_config() -> None:
    good = CONFIGS / "good.yml"
    result = runner.invoke(app, ["config", "check", str(good)])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    printed = yaml.safe_load(result.stdout)
    assert printed["max_comments"] == 7
    assert printed["llm"]["max_tokens_per_request"] == 8000
    assert load_config(result.stdout) == load_config(good.read_text())


def test_check_with_org_merges_org_under_repo() -> None:
    result = runner.invoke(
        app, ["config", "check", str(CONFIGS / "good.yml"), "--org", str(CONFIGS / "org.yml")]
    )
    assert result.exit_code == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["max_comments"] == 7  # repo
    assert printed["llm"]["model"] == "gpt-4o"  # repo
    assert printed["min_acceptance"] is None and printed["target_precision"] == 0.8

    swapped = runner.invoke(
        app, ["config", "check", str(CONFIGS / "org.yml"), "--org", str(CONFIGS / "good.yml")]
    )
    assert swapped.exit_code == 0, swapped.stderr
    assert yaml.safe_load(swapped.stdout)["max_comments"] == 5  # now org.yml is the repo file


@pytest.mark.parametrize("name", BAD)
def test_check_bad_exits_1_with_file_and_line(name: str) -> None:
    path = CONFIGS / name
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines, "no error printed"
    for line in lines:
        assert line.startswith(f"{path}:"), line
        assert line.split(":")[1].isdigit(), line
    assert "Traceback" not in result.stderr
    with pytest.raises(ConfigError) as info:
        load_review_config(path.read_text(), filename=str(path))  # what the App loads it with
    assert lines == info.value.messages


def test_check_bad_types_exact_output() -> None:
    path = CONFIGS / "bad-types.yml"
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:4: max_comments: must be >= 0 (got -1)" in result.stderr.splitlines()


def test_check_errors_in_the_org_file_name_it(tmp_path: Path) -> None:
    org = tmp_path / "org.yml"
    org.write_text("max_comments: 3\nmax_coments: 4\n")
    result = runner.invoke(app, ["config", "check", str(CONFIGS / "good.yml"), "--org", str(org)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{org}:2: max_coments: unknown key 'max_coments' (did you mean 'max_comments'?)"
    ]


def test_check_missing_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    result = runner.invoke(app, ["config", "check", str(missing)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"{missing}: cannot read: No such file or directory"


def test_check_real_process_exit_codes() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "reviewbot", "config", "check", "fixtures/configs/good.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "reviewbot", "config", "check", "fixtures/configs/unknown-key.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[0] == (
        "fixtures/configs/unknown-key.yml:1: max_coments: unknown key 'max_coments' "
        "(did you mean 'max_comments'?)"
    )
