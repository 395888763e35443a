"""Reading a change out of a local git repository, for `reviewbot review PATH`.

The I/O edge of the local review: it shells out to `git` and returns plain text. Everything it
returns is then handled by the same pure pipeline the GitHub App uses.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class LocalRepoError(RuntimeError):
    """The path is not a git repository, a revision does not exist, or git is missing."""


@dataclass(frozen=True, slots=True)
class LocalChange:
    """The change under review: its diff and how to read a file as of the head revision."""

    repo_path: Path
    base: str
    head: str | None  # None: the working tree
    diff_text: str
    name: str

    def read_head(self, path: str) -> str | None:
        """The file's text at the head revision (or in the working tree), None if absent/binary."""
        return read_file(self.repo_path, self.head, path)


def read_file(repo: Path, rev: str | None, path: str) -> str | None:
    """`path`'s text at revision `rev` (None: the working tree), or None if absent or binary."""
    if rev is None:
        target = repo / path
        if not target.is_file():
            return None
        data = target.read_bytes()
    else:
        try:
            data = _git(repo, "show", f"{rev}:{path}", binary=True)
        except LocalRepoError:
            return None
    if b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def _git(repo: Path, *args: str, binary: bool = False) -> bytes:
    if shutil.which("git") is None:
        raise LocalRepoError("git is not installed or not on PATH")
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise LocalRepoError(f"git {' '.join(args[:2])}: {message[-1] if message else 'failed'}")
    return proc.stdout


def resolve_revision(repo: Path, rev: str) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except LocalRepoError as exc:
        raise LocalRepoError(f"{repo}: unknown revision '{rev}'") from exc


def default_base(repo: Path) -> str:
    """The merge base with the first of origin/HEAD, main, master that exists; else HEAD~1."""
    for ref in ("origin/HEAD", "origin/main", "main", "origin/master", "master"):
        try:
            resolve_revision(repo, ref)
        except LocalRepoError:
            continue
        try:
            base = _git(repo, "merge-base", ref, "HEAD").decode().strip()
        except LocalRepoError:
            continue
        if base != resolve_revision(repo, "HEAD"):
            return base
    return resolve_revision(repo, "HEAD~1")


def load_change(repo_path: str | Path, base: str | None = None, head: str | None = "HEAD") -> LocalChange:
    """The diff of `base..head` (head None: base against the working tree)."""
    repo = Path(repo_path).resolve()
    if not repo.is_dir():
        raise LocalRepoError(f"{repo}: no such directory")
    try:
        _git(repo, "rev-parse", "--git-dir")
    except LocalRepoError as exc:
        raise LocalRepoError(f"{repo}: not a git repository") from exc
    base_sha = resolve_revision(repo, base) if base else default_base(repo)
    head_sha = resolve_revision(repo, head) if head else None
    args = ["diff", "--no-color", "--no-ext-diff", "-M", "--src-prefix=a/", "--dst-prefix=b/", base_sha]
    if head_sha:
        args.append(head_sha)
    diff_text = _git(repo, *args).decode("utf-8", errors="replace")
    return LocalChange(repo_path=repo, base=base_sha, head=head_sha, diff_text=diff_text, name=repo.name)


def build_repo_from_dirs(target: Path, before: Path, after: Path) -> tuple[str, str]:
    """Commit `before/` then `after/` into a new git repo at `target`; returns (base, head) SHAs."""
    target.mkdir(parents=True, exist_ok=True)
    env_args = ["-c", "user.name=reviewbot demo", "-c", "user.email=demo@reviewbot.invalid"]
    _git(target, "init", "-q", "-b", "main")

    def commit(source: Path, message: str) -> str:
        for child in target.iterdir():
            if child.name == ".git":
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        _git(target, "add", "-A")
        _git(target, *env_args, "commit", "-q", "--allow-empty", "-m", message)
        return resolve_revision(target, "HEAD")

    base = commit(before, "base")
    head = commit(after, "change under review")
    return base, head
