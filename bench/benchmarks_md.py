"""Rewriting one section of BENCHMARKS.md, leaving the other benchmarks' sections as they are."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def write_section(heading: str, text: str, path: Path = BENCHMARKS) -> None:
    """Replace the section that starts with `heading` (e.g. "## Review latency") by `text`, or
    append `text` when there is no such section yet."""
    old = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = old.find(heading)
    if start == -1:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(heading))
        new = old[:start] + text.rstrip("\n") + "\n" + ("\n" + old[nxt + 1 :] if nxt != -1 else "")
    path.write_text(new.rstrip("\n") + "\n")
