"""The `reviewbot` command: a thin layer over the library.

Each subcommand lives in its own module under `reviewbot/commands/` and is registered here, so
this file only says which commands exist.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="reviewbot",
    help="reviewbot: an LLM pull-request reviewer that posts only what engineers act on.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

# Registration: one line per command module (each module defines `register(app)`).
from reviewbot.commands import config_cmd  # noqa: E402

config_cmd.register(app)
from reviewbot.commands import stats_cmd  # noqa: E402

stats_cmd.register(app)
from reviewbot.commands import serve_cmd  # noqa: E402

serve_cmd.register(app)
from reviewbot.commands import filter_cmd  # noqa: E402

filter_cmd.register(app)
from reviewbot.commands import review_cmd  # noqa: E402

review_cmd.register(app)
from reviewbot.commands import db_cmd  # noqa: E402

db_cmd.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
