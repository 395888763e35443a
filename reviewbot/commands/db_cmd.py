"""`reviewbot db copy`: move an existing SQLite database to PostgreSQL (or back)."""

from __future__ import annotations

import sqlite3

import typer

from reviewbot.app.dialect import redact_url

db_app = typer.Typer(
    name="db",
    help="Database tools.\n\nExample:\n\n  reviewbot db copy --from ./reviewbot.db --to postgresql://rb@db/reviewbot",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@db_app.command("copy")
def copy(
    source: str = typer.Option(..., "--from", help="SQLite file (or sqlite:///path) or postgresql:// URL."),
    target: str = typer.Option(..., "--to", help="postgresql:// URL (or SQLite file) of an EMPTY database."),
) -> None:
    """Copy every installation, repository, job, review, finding, label and model from --from
    into --to (migrated first; it must hold no rows), in one transaction, keeping ids.

    Stop `reviewbot serve` and every worker first (a job claimed during the copy is copied as
    running and retried when its lease runs out); then point REVIEWBOT_DATABASE_URL at --to.
    """
    from reviewbot.app.store import Store, copy_rows  # imported when run: `reviewbot --help` stays fast

    src_target = source.removeprefix("sqlite://") if source.startswith("sqlite:///") else source
    try:
        src = Store.open(src_target, migrate_now=True)
        dst = Store.open(target.removeprefix("sqlite://") if target.startswith("sqlite:///") else target)
    except (sqlite3.Error, OSError) as exc:
        typer.echo(f"cannot open: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        copied = copy_rows(src, dst)
    except (ValueError, sqlite3.Error) as exc:
        typer.echo(f"not copied: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        src.close()
        dst.close()
    total = sum(copied.values())
    detail = ", ".join(f"{t} {n}" for t, n in copied.items() if n)
    shown = f"{redact_url(source)} to {redact_url(target)}"
    typer.echo(f"copied {total} rows from {shown}: {detail or 'nothing'}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app)
