"""The Docker image installs a wheel built from what its build stage copies: it must be complete."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_stage_sources() -> list[str]:
    """The paths the Dockerfile's first (build) stage COPYs from the context."""
    sources: list[str] = []
    stage = 0
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if line.startswith("FROM "):
            stage += 1
        elif stage == 1 and line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return sources


def test_wheel_built_from_the_docker_build_context_has_rules_prior_and_templates(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for source in build_stage_sources():
        src = ROOT / source
        if src.is_dir():
            skip = shutil.ignore_patterns("__pycache__")
            shutil.copytree(src, context / source, symlinks=True, ignore=skip)
        else:
            shutil.copy2(src, context / source)
    out = tmp_path / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("reviewbot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packs = {n for n in names if n.startswith("reviewbot/builtin_rules/") and n.endswith(".yml")}
    expected = {f"reviewbot/builtin_rules/{p.name}" for p in (ROOT / "rules").glob("*.yml")}
    assert packs == expected and expected
    assert "reviewbot/data/prior.json" in names
    assert any(n.startswith("reviewbot/templates/") for n in names)
