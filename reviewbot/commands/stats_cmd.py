"""`reviewbot stats OWNER/REPO` and `reviewbot suggest-config OWNER/REPO`.

The same figures as the dashboard, in the terminal; and the config changes the labels support,
printed as YAML for a team to review and commit, so learned behaviour stays in their hands.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer
import yaml

from reviewbot.app.records import Tenant, tenant_of
from reviewbot.core.config import CONFIG_PATH, ConfigError, load_config
from reviewbot.core.settings import Settings, SettingsError
from reviewbot.learning.stats import (
    RepoData,
    RepoStats,
    Tally,
    load_repo_data,
    pct,
    repo_stats,
    suggest_config,
)
from reviewbot.learning.usage_stats import render_usage, usage_totals

if TYPE_CHECKING:  # the store (sqlite-utils) is imported where a command opens it: a fast --help
    from reviewbot.app.store import Store

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def _open(db: Path | None, repo: str) -> tuple[Store, Tenant]:
    from reviewbot.app.store import Store

    if not _REPO.match(repo):
        typer.echo(f"{repo!r}: expected OWNER/REPO", err=True)
        raise typer.Exit(2)
    target: str | None = None
    if db is None:
        try:
            settings = Settings.from_env()
        except SettingsError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        target, db = settings.database(), Path(settings.database_path)
    if target is not None and settings.database_url is not None:
        store = Store.open(target)  # PostgreSQL (REVIEWBOT_DATABASE_URL)
    elif not db.exists():
        typer.echo(f"{db}: no such database (set REVIEWBOT_DATABASE_PATH or pass --db)", err=True)
        raise typer.Exit(2)
    else:
        store = Store.open(db)
    tenant = tenant_of(store, repo)
    if tenant is None:
        store.close()
        typer.echo(f"{repo}: no findings recorded in {db}", err=True)
        raise typer.Exit(1)
    return store, tenant


def _table(title: str, rows: list[Tally], key: str) -> list[str]:
    out = [title, f"  {key:<32} {'posted':>7} {'accepted':>9} {'dismissed':>10} {'precision':>10}"]
    out += [
        f"  {t.key[:32]:<32} {t.posted:>7} {t.accepted:>9} {t.dismissed:>10} {pct(t.precision):>10}"
        for t in rows
    ] or ["  (none)"]
    return out


def render_stats(s: RepoStats) -> str:
    """The terminal report: funnel, precision, weekly rate, per category/rule, model version."""
    model = (
        f"v{s.model.version} ({s.model.n_labels} labels, {s.model.created_at[:10]})" if s.model else "prior"
    )
    lines = [
        f"{s.repo}",
        f"  precision        {pct(s.precision)}  (accepted / labelled, regular comments)",
        f"  funnel           {s.candidates} candidates -> {s.posted} posted -> {s.labelled} labelled "
        f"-> {s.accepted} accepted",
        f"  suppressed       {s.suppressed}  (followed up {s.suppressed_followed_up}, "
        f"code changed anyway {s.suppressed_changed})",
        f"  untouched        {s.untouched}  (posted, no signal when the PR closed)",
        f"  exploration      {s.explore.posted} posted, {s.explore.accepted} accepted, "
        f"{s.explore.dismissed} dismissed, precision {pct(s.explore.precision)}",
        f"  model            {model}",
        "",
    ]
    lines += _table("Acceptance rate per week", s.over_time, "week of") + [""]
    lines += _table("By category", s.by_category, "category") + [""]
    lines += _table("By rule", s.by_rule, "rule") + [""]
    lines += _table("Most dismissed rules", s.top_dismissed_rules, "rule")
    lines += ["", "Held back by this repo's feedback"]
    lines += [f"  {x.reason.removeprefix('suppressed: ')}" for x in s.learned] or ["  (nothing)"]
    return "\n".join(lines) + "\n"


def stats(
    repo: str = typer.Argument(..., help="OWNER/REPO", show_default=False),
    db: Path | None = typer.Option(None, "--db", help="Database file (default: REVIEWBOT_DATABASE_PATH)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Print a repo's measured precision, funnel, per-rule figures and model version.

    Example:

      reviewbot stats acme/shop --db ./reviewbot.db
    """
    store, tenant = _open(db, repo)
    try:
        s = repo_stats(store, tenant)
        usage = usage_totals(store, tenant)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({**s.as_dict(), "llm_usage": usage.as_dict()}, indent=2))
    else:
        typer.echo(render_stats(s) + "\n" + "\n".join(render_usage(usage)) + "\n", nl=False)


def suggest(
    repo: str = typer.Argument(..., help="OWNER/REPO", show_default=False),
    db: Path | None = typer.Option(None, "--db", help="Database file (default: REVIEWBOT_DATABASE_PATH)."),
    current: Path | None = typer.Option(
        None, "--current", help="The repo's current .github/reviewbot.yml (kept exclusions come from it)."
    ),
    min_samples: int = typer.Option(10, "--min-samples", min=1, help="Labelled comments needed to suggest."),
    max_dismissal_rate: float = typer.Option(
        0.7, "--max-dismissal-rate", min=0.0, max=1.0, help="Disable/exclude at this dismissal rate."
    ),
    target_precision: float = typer.Option(
        0.7, "--target-precision", min=0.0, max=1.0, help="Precision the suggested min_acceptance reaches."
    ),
    open_pr: bool = typer.Option(
        False,
        "--open-pr",
        help="Open the changes as a pull request on the repo (GitHub App settings from the environment); "
        "the current file is read from its default branch.",
    ),
) -> None:
    """Print the .github/reviewbot.yml changes this repo's feedback supports, with the evidence.

    Nothing is applied: review the YAML, then commit it to the repo's default branch; or let
    `--open-pr` open it as a pull request on the repo for the team to review and merge.

    Example:

      reviewbot suggest-config acme/shop --current .github/reviewbot.yml --min-samples 20
    """
    store, tenant = _open(db, repo)
    try:
        data = load_repo_data(store, tenant)
    finally:
        store.close()
    if open_pr:
        url = asyncio.run(
            _open_pr(
                tenant,
                data,
                min_samples=min_samples,
                max_dismissal_rate=max_dismissal_rate,
                target_precision=target_precision,
            )
        )
        typer.echo(url or f"# {repo}: the feedback so far supports no config change: no pull request opened.")
        return
    exclude: list[str] | None = None
    if current is not None:
        try:
            exclude = list(
                load_config(current.read_text(encoding="utf-8"), filename=str(current)).paths.exclude
            )
        except (OSError, ConfigError) as exc:
            typer.echo(f"{current}: {exc}", err=True)
            raise typer.Exit(2) from None
    kwargs = {"current_exclude": exclude} if exclude is not None else {}
    sug = suggest_config(
        data,
        min_samples=min_samples,
        max_dismissal_rate=max_dismissal_rate,
        target_precision=target_precision,
        **kwargs,
    )
    if not sug.changes:
        typer.echo(f"# {repo}: the feedback so far supports no config change (min samples {min_samples}).")
        return
    header = [f"# Suggested changes to .github/reviewbot.yml for {repo}, from its feedback:"]
    header += [f"#   - {r}" for r in sug.reasons]
    header += ["# Review, merge into the file, and commit to the default branch."]
    typer.echo("\n".join(header))
    typer.echo(yaml.safe_dump(sug.changes, sort_keys=False), nl=False)


async def _open_pr(
    tenant: Tenant, data: RepoData, *, min_samples: int, max_dismissal_rate: float, target_precision: float
) -> str | None:
    """Read the repo's config from its default branch, suggest, open the PR; its URL (None: no change)."""
    from datetime import UTC, datetime

    from reviewbot.app.app_review import github_app_from_settings
    from reviewbot.app.github_types import GitHubError
    from reviewbot.learning.config_pr import open_config_pr

    try:
        app = github_app_from_settings(Settings.from_env())
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if app is None:
        needs = "--open-pr needs the GitHub App: set REVIEWBOT_GITHUB_APP_ID and REVIEWBOT_GITHUB_PRIVATE_KEY"
        typer.echo(needs, err=True)
        raise typer.Exit(2)
    try:
        gh = await app.installation_client(tenant.installation_id)
        text = await gh.get_file(tenant.repo, CONFIG_PATH, await gh.get_default_branch(tenant.repo))
        try:
            exclude = list(load_config(text or "", filename=CONFIG_PATH).paths.exclude)
        except ConfigError as exc:
            typer.echo(f"{tenant.repo}:{CONFIG_PATH}: {exc}", err=True)
            raise typer.Exit(2) from None
        sug = suggest_config(
            data,
            min_samples=min_samples,
            max_dismissal_rate=max_dismissal_rate,
            target_precision=target_precision,
            current_exclude=exclude,
        )
        if not sug.changes:
            return None
        branch = f"reviewbot/suggest-config-{datetime.now(UTC):%Y%m%d}"
        opened = await open_config_pr(
            gh, tenant.repo, changes=sug.changes, reasons=sug.reasons, branch=branch
        )
    except GitHubError as exc:
        typer.echo(f"{tenant.repo}: GitHub refused: {exc}", err=True)
        raise typer.Exit(1) from None
    return opened.url


def register(app: typer.Typer) -> None:
    """Add `reviewbot stats` and `reviewbot suggest-config` to the root CLI."""
    app.command("stats")(stats)
    app.command("suggest-config")(suggest)
