"""Reading a change out of a local git repository: one `git cat-file --batch` for the changed files."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reviewbot.adapters.local import load_change, read_file, read_files


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
        check=True,
        capture_output=True,
    )


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "kept.py").write_text("x = 1\n")
    (repo / "gone.py").write_text("y = 1\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    (repo / "kept.py").write_text("x = 2\n")
    (repo / "gone.py").unlink()
    (repo / "with space.py").write_text("z = 3\n")
    (repo / "empty.py").write_text("")
    (repo / "blob.bin").write_bytes(b"\x00\x01\x02")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "head")
    return repo


def test_changed_files_read_in_one_batch_match_git_show(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    change = load_change(repo, base="HEAD~1")
    assert sorted(change.changed_paths) == ["blob.bin", "empty.py", "kept.py", "with space.py"]
    for path in change.changed_paths:
        assert change.read_head(path) == read_file(repo, change.head, path)
    assert change.read_head("kept.py") == "x = 2\n"
    assert change.read_head("with space.py") == "z = 3\n"
    assert change.read_head("empty.py") == ""
    assert change.read_head("blob.bin") is None  # binary
    assert change.read_head("gone.py") is None  # deleted at head


def test_batch_reports_missing_paths_as_none_and_keeps_order(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    texts = read_files(repo, "HEAD", ["missing one.py", "kept.py", "gone.py", "kept.py"])
    assert texts == {"missing one.py": None, "kept.py": "x = 2\n", "gone.py": None}


def test_working_tree_reads_from_disk(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "kept.py").write_text("x = 3\n")
    change = load_change(repo, base="HEAD", head=None)
    assert change.changed_paths == ()
    assert change.read_head("kept.py") == "x = 3\n"
