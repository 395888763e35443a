"""`reviewbot review PATH` and `reviewbot demo`: the review pipeline on a local git repository."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from contextlib import nullcontext
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reviewbot.adapters.local import (
    LocalChange,
    LocalRepoError,
    build_repo_from_dirs,
    commit_subjects,
    load_change,
    read_file,
)
from reviewbot.core.config import CONFIG_PATH, ConfigError
from reviewbot.core.costs import apply_limits, cost_of, limits_from_settings, token_cap
from reviewbot.core.domain import SEVERITIES, Candidate, ReviewResult, at_least
from reviewbot.core.settings import Settings, SettingsError, settings_secrets
from reviewbot.review.diff import DiffParseError
from reviewbot.review.report import to_json, to_sarif, to_text
from reviewbot.review.review_config import ReviewConfig, load_review_config
from reviewbot.review.rules import RuleError
from reviewbot.review.sarif_in import SarifError, read_sarif_files

if TYPE_CHECKING:
    from reviewbot.review.prompt import ChangeIntent

# The pipeline (numpy, scikit-learn, tree-sitter) and the LLM client (openai) are imported where a
# review runs, so `reviewbot --help` and `reviewbot review --help` start fast.

DEMO_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "demo"

#: Exit codes of `reviewbot review` (documented in the README): a CI can tell them apart.
EXIT_FINDINGS = 1  # --fail-on: a posted finding is at least that severe
EXIT_USAGE = 2  # bad arguments, settings or config
EXIT_LLM_FAILED = 3  # LLM requests failed and were not recovered (unless --allow-llm-failure)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"reviewbot: {message}", err=True)
    return typer.Exit(code)


def _repo_config(change: LocalChange, config_file: Path | None) -> ReviewConfig:
    """--config wins; else `.github/reviewbot.yml` as of the BASE revision (like the App); loaded
    exactly as the App loads it (the same refusals)."""
    if config_file is not None:
        return load_review_config(config_file.read_text(encoding="utf-8"), filename=str(config_file))
    return load_review_config(read_file(change.repo_path, change.base, CONFIG_PATH), filename=CONFIG_PATH)


async def run_local_review(
    change: LocalChange,
    *,
    config: ReviewConfig,
    settings: Settings,
    show_progress: bool,
    intent: ChangeIntent | None = None,
    imported: list[Candidate] | None = None,
) -> ReviewResult:
    """The same pipeline as the App, on a local change; the LLM only when one is configured.
    `imported`: the findings of the repo's own linters (`--sarif-in`), filtered like the rest.
    `enabled: false` and `max_comments` are honoured inside `review_change`, as for the App."""
    from reviewbot.adapters.llm import client_from_settings
    from reviewbot.filter.acceptance import load_prior
    from reviewbot.review.pipeline import Change, review_change

    limits = limits_from_settings(settings)
    repo_config, capped = apply_limits(config.config, limits, settings.llm_model)
    rules = config.rules
    overrides: dict[str, Any] = {"temperature": repo_config.llm.temperature}
    if repo_config.llm.model:
        overrides["model"] = repo_config.llm.model
    llm = client_from_settings(settings, **overrides)
    status = None
    if show_progress:
        from rich.console import Console

        status = Console(stderr=True).status("reviewing...")
    with status or nullcontext():
        try:
            result = await review_change(
                Change(
                    diff_text=change.diff_text,
                    read_head=change.read_head,
                    repo=f"local/{change.name}",
                    intent=intent,
                ),
                config=repo_config,
                rules=rules,
                model=load_prior(),
                llm=llm,
                progress=(lambda msg: status.update(msg)) if status is not None else None,
                explore=False,  # nothing learns from a local run's comments
                secrets=settings_secrets(settings),  # the LLM key never reaches the report
                token_cap=token_cap(limits),
                imported=imported or (),
                caps=limits.review,
            )
            result.notes[:0] = capped
            result.usage.cost = cost_of(result.usage, limits.prices)
            return result
        finally:
            if llm is not None:
                await llm.aclose()


def scope_line(change: LocalChange) -> str:
    """What was compared, e.g. `1a2b3c4d5e6f..9f8e7d6c5b4a (merge base with main)`."""
    head = change.head[:12] if change.head else "the working tree"
    return f"{change.base[:12]}..{head} ({change.base_how})"


def _emit(result: ReviewResult, fmt: OutputFormat, output: Path | None, *, scope: str, verbose: bool) -> None:
    if fmt is OutputFormat.text:
        text = to_text(result, scope=scope, verbose=verbose)
    else:
        text = {OutputFormat.json: to_json, OutputFormat.sarif: to_sarif}[fmt](result)
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        output.write_text(text, encoding="utf-8")


def review(
    path: Annotated[Path, typer.Argument(help="A local git repository.")] = Path("."),
    base: Annotated[str | None, typer.Option(help="Base revision (default: merge base with main).")] = None,
    head: Annotated[str, typer.Option(help="Head revision.")] = "HEAD",
    working_tree: Annotated[
        bool, typer.Option("--working-tree", help="Review uncommitted changes against --base.")
    ] = False,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="text, json or sarif.")] = OutputFormat.text,
    fail_on: Annotated[
        str | None,
        typer.Option(help=f"Exit 1 if a finding is this severe or worse ({', '.join(SEVERITIES)})."),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="Use this reviewbot.yml instead of the repo's.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here.")] = None,
    title: Annotated[str, typer.Option(help="The change's title (e.g. the PR title), for the LLM.")] = "",
    description: Annotated[
        str, typer.Option(help="The change's description (e.g. the PR body), shown to the LLM.")
    ] = "",
    allow_llm_failure: Annotated[
        bool,
        typer.Option(
            "--allow-llm-failure",
            help=f"Exit 0 even when LLM requests failed (default: exit {EXIT_LLM_FAILED}).",
        ),
    ] = False,
    sarif_in: Annotated[
        list[Path] | None,
        typer.Option(
            "--sarif-in",
            help="A SARIF file from another tool (ruff, eslint, semgrep...): its findings on the "
            "changed lines go through the same filter. Repeatable.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List every file not reviewed (text report).")
    ] = False,
) -> None:
    """Review the changes of a local git repository and print the findings it would post.

    Example:

        reviewbot review . --base origin/main --format sarif -o reviewbot.sarif --fail-on high

        ruff check --output-format sarif -o ruff.sarif . ; reviewbot review . --sarif-in ruff.sarif
    """
    if fail_on is not None and fail_on not in SEVERITIES:
        raise _fail(f"--fail-on must be one of {', '.join(SEVERITIES)}")
    try:
        settings = Settings.from_env()
        change = load_change(path, base=base, head=None if working_tree else head)
        config = _repo_config(change, config_file)
        imported = read_sarif_files(sarif_in or [])
    except (LocalRepoError, SettingsError, SarifError) as exc:
        raise _fail(str(exc)) from exc
    except ConfigError as exc:
        for message in exc.messages:
            typer.echo(message, err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    if not settings.llm_configured:
        typer.echo(
            "reviewbot: no LLM configured (set REVIEWBOT_LLM_BASE_URL or an API key): "
            "running the rules alone",
            err=True,
        )
    from reviewbot.review.prompt import ChangeIntent

    try:
        intent = ChangeIntent(
            title, description, tuple(commit_subjects(change.repo_path, change.base, change.head))
        )
        result = asyncio.run(
            run_local_review(
                change,
                config=config,
                settings=settings,
                show_progress=sys.stderr.isatty(),
                intent=intent,
                imported=imported.candidates,
            )
        )
    except (DiffParseError, RuleError, LocalRepoError) as exc:
        raise _fail(str(exc)) from exc
    _emit(result, fmt, output, scope=scope_line(change), verbose=verbose)
    if fail_on is not None and any(at_least(d.severity, fail_on) for d in result.posted):
        raise typer.Exit(EXIT_FINDINGS)
    if result.usage.errors and not allow_llm_failure:
        typer.echo(
            f"reviewbot: {result.usage.errors} of {result.usage.requests} LLM request(s) failed and were "
            f"not recovered: review incomplete (exit {EXIT_LLM_FAILED}; --allow-llm-failure accepts it)",
            err=True,
        )
        raise typer.Exit(EXIT_LLM_FAILED)


def demo(
    fmt: Annotated[OutputFormat, typer.Option("--format", help="text, json or sarif.")] = OutputFormat.text,
) -> None:
    """Review the demo change in fixtures/demo (built into a temporary git repository).

    Example:

        reviewbot demo
    """
    if not DEMO_DIR.is_dir():
        raise _fail(f"the demo fixtures are not here ({DEMO_DIR}); run it from a clone of the repository")
    with tempfile.TemporaryDirectory(prefix="reviewbot-demo-") as tmp:
        repo = Path(tmp) / "demo-repo"
        try:
            base, head = build_repo_from_dirs(repo, DEMO_DIR / "before", DEMO_DIR / "after")
        except LocalRepoError as exc:
            raise _fail(str(exc)) from exc
        typer.echo(f"Reviewing the demo change {base[:8]}..{head[:8]} in {repo}", err=True)
        review(
            path=repo,
            base=base,
            head=head,
            working_tree=False,
            fmt=fmt,
            fail_on=None,
            config_file=None,
            output=None,
            title="",
            description="",
            allow_llm_failure=False,
            sarif_in=None,
            verbose=False,
        )


def register(app: typer.Typer) -> None:
    app.command("review")(review)
    app.command("demo")(demo)
