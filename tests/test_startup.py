"""`reviewbot --help` and the light commands start without the heavy libraries: they are imported
where a review, a server or the filter runs (robust to machine load: it checks modules, not time)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "sklearn",
    "scipy",
    "numpy",
    "fastapi",
    "starlette",
    "uvicorn",
    "openai",
    "githubkit",
    "sqlite_utils",
    "prometheus_client",
    "jinja2",
)


def _loaded(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    cmd = [sys.executable, "-c", probe]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


def test_importing_the_cli_loads_none_of_the_heavy_libraries() -> None:
    loaded = _loaded("import reviewbot.cli")
    assert "reviewbot" in loaded and "typer" in loaded
    assert not loaded & set(HEAVY), f"imported at startup: {sorted(loaded & set(HEAVY))}"


def test_help_of_every_command_loads_none_of_the_heavy_libraries() -> None:
    code = (
        "import contextlib, io\nfrom reviewbot.cli import app\n"
        "for cmd in ([], ['review'], ['filter'], ['serve'], ['worker'], ['stats'], ['config']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        app([*cmd, '--help'])"
    )
    loaded = _loaded(code)
    assert not loaded & set(HEAVY), f"imported by --help: {sorted(loaded & set(HEAVY))}"


def test_the_review_path_still_imports_what_it_needs() -> None:
    """The lazy imports are real imports: running the pipeline's module loads the filter's stack."""
    loaded = _loaded(
        "from reviewbot.commands.review_cmd import run_local_review\nimport reviewbot.review.pipeline"
    )
    assert {"numpy", "tree_sitter"} <= loaded
