"""`reviewbot config check|schema`: validate a `.github/reviewbot.yml` and print its JSON Schema."""

from __future__ import annotations

from pathlib import Path

import typer

from reviewbot.core.config import ConfigError
from reviewbot.core.config_schema import config_schema_text
from reviewbot.review.review_config import load_review_config, unknown_rule_issues

config_app = typer.Typer(
    name="config",
    help="Validate repository config files and print their JSON Schema.\n\n"
    "Example:\n\n  reviewbot config check .github/reviewbot.yml",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"{path}: cannot read: {exc.strerror if isinstance(exc, OSError) else exc}", err=True)
        raise typer.Exit(2) from None


@config_app.command("check")
def check(
    file: Path = typer.Argument(
        ..., help="The repository's .github/reviewbot.yml (or any file).", show_default=False
    ),
    org: Path | None = typer.Option(
        None, "--org", help="The org defaults file (the org's .github repository, same file name)."
    ),
) -> None:
    """Validate FILE (merged over --org and the built-in defaults) and print the merged config.

    Checks everything the App checks before a review (keys, values, custom rules: `@match`
    capture, queries that compile) and also rule ids in rules.disable / enable / severity that
    name no rule. Exit status 0 when valid; 1 with one `file:line: key: message` line per problem
    on stderr.

    Example:

      reviewbot config check .github/reviewbot.yml --org org-reviewbot.yml
    """
    repo_text = _read(file)
    org_text = _read(org) if org is not None else None
    filename, org_filename = str(file), str(org) if org else "org"
    try:
        loaded = load_review_config(repo_text, org_text, filename=filename, org_filename=org_filename)
        issues = unknown_rule_issues(
            loaded.config, repo_text, org_text, filename=filename, org_filename=org_filename
        )
        problems = [str(i) for i in issues]
    except ConfigError as exc:
        problems = exc.messages
    for message in problems:
        typer.echo(message, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(loaded.config.to_yaml(), nl=False)


@config_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of .github/reviewbot.yml (the same as reviewbot.schema.json).

    Example:

      reviewbot config schema > reviewbot.schema.json
    """
    typer.echo(config_schema_text(), nl=False)


def register(app: typer.Typer) -> None:
    """Add `reviewbot config ...` to the root CLI."""
    app.add_typer(config_app, name="config")
