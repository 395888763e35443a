"""The README stays true: its config example loads, the commands it names exist, its links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from reviewbot.cli import app
from reviewbot.core.config import load_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_yaml_examples_are_valid_configs() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README, re.S)
    blocks = [b for b in blocks if not re.search(r"^jobs:", b, re.M)]  # workflows: test_action.py
    assert blocks
    for block in blocks:
        load_config(block, filename="README.md")


def _code() -> str:
    """The README's code: fenced blocks and inline spans (prose says "reviewbot is ...")."""
    fenced = re.findall(r"```[a-z]*\n(.*?)```", README, re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.S))
    return "\n".join(fenced + inline)


COMMANDS = sorted(set(re.findall(r"(?<![@\w-])reviewbot ([a-z][a-z-]+)", _code())))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_the_readme_names_exists(command: str) -> None:
    registered = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert command in registered, f"README names `reviewbot {command}`, which is not a command"
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output


def test_readme_links_to_files_that_exist() -> None:
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (ROOT / target).exists(), target


def test_quick_start_is_the_two_make_targets_ci_runs() -> None:
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make demo" in quick and "make test" in quick
    assert "make test" in (ROOT / ".ci" / "run").read_text()
