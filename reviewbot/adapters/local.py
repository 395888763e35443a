"""Reading a change out of a local git repository, for `reviewbot review PATH`.

The I/O edge of the local review: it shells out to `git` and returns plain text. Everything it
returns is then handled by the same pure pipeline the GitHub App uses.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


class LocalRepoError(RuntimeError):
    """The path is not a git repository, a revision does not exist, or git is missing."""


@dataclass(frozen=True, slots=True)
class LocalChange:
    """The change under review: its diff and how to read a file as of the head revision.

    At a commit, the changed files are read on first use with one `git cat-file --batch` (one
    `git show` per file cost ~3 s per 1,000 files); the working tree is read from disk.
    """

    repo_path: Path
    base: str
    head: str | None  # None: the working tree
    diff_text: str
    name: str
    base_how: str = "--base"  # how the base was chosen, for the report's "Reviewed" line
    changed_paths: tuple[str, ...] = ()
    _blobs: dict[str, str | None] = field(default_factory=dict, repr=False, compare=False)

    def read_head(self, path: str) -> str | None:
        """The file's text at the head revision (or in the working tree), None if absent/binary."""
        if self.head is None:
            return read_file(self.repo_path, None, path)
        if not self._blobs and self.changed_paths:
            self._blobs.update(read_files(self.repo_path, self.head, self.changed_paths))
        if path in self._blobs:
            return self._blobs[path]
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


def read_files(repo: Path, rev: str, paths: Iterable[str]) -> dict[str, str | None]:
    """Each path's text at `rev` through one `git cat-file --batch` (None: absent or binary)."""
    wanted = [path for path in dict.fromkeys(paths) if "\n" not in path]  # the protocol is line-based
    if not wanted:
        return {}
    if shutil.which("git") is None:
        raise LocalRepoError("git is not installed or not on PATH")
    request = "".join(f"{rev}:{path}\n" for path in wanted).encode("utf-8", errors="surrogateescape")
    proc = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch"], input=request, capture_output=True, check=False
    )
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", errors="replace").strip()
        raise LocalRepoError(f"git cat-file --batch: {message or 'failed'}")
    return dict(zip(wanted, _parse_batch(proc.stdout, len(wanted)), strict=True))


def _parse_batch(out: bytes, count: int) -> list[str | None]:
    """`git cat-file --batch` output: per object a header line, then the content and a newline."""
    texts: list[str | None] = []
    pos = 0
    for _ in range(count):
        end = out.index(b"\n", pos)
        header = out[pos:end].split(b" ")
        pos = end + 1
        found = len(header) == 3 and len(header[0]) >= 40 and header[2].isdigit()
        if not found:  # "<name> missing" / "<name> ambiguous": no body follows
            texts.append(None)
            continue
        size = int(header[2])
        if header[1] != b"blob":  # a submodule's tree, say: not a file we can read
            pos += size + 1
            texts.append(None)
            continue
        data = out[pos : pos + size]
        pos += size + 1
        texts.append(None if b"\x00" in data[:8192] else data.decode("utf-8", errors="replace"))
    return texts


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


def default_base(repo: Path) -> tuple[str, str]:
    """(base SHA, how it was chosen): the merge base with the first of origin/HEAD, origin/main,
    main, origin/master, master that is not HEAD itself; else HEAD~1 (on the default branch)."""
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
            return base, f"merge base with {ref}"
    try:
        return resolve_revision(repo, "HEAD~1"), (
            "HEAD~1: HEAD is on the default branch, so only its last commit; pass --base REV to review more"
        )
    except LocalRepoError:
        raise LocalRepoError(
            f"{repo}: HEAD has no parent and no other branch to compare with; pass --base REV"
        ) from None


def commit_subjects(repo_path: str | Path, base: str, head: str | None, limit: int = 50) -> list[str]:
    """Subjects of the commits in base..head, oldest first (none for the working tree)."""
    if head is None:
        return []
    out = _git(
        Path(repo_path),
        "log",
        "--no-merges",
        f"--max-count={limit}",
        "--reverse",
        "--format=%s",
        f"{base}..{head}",
    )
    return [line for line in out.decode("utf-8", "replace").splitlines() if line.strip()]


def load_change(repo_path: str | Path, base: str | None = None, head: str | None = "HEAD") -> LocalChange:
    """The diff of `base..head` (head None: base against the working tree); without `base`, see
    `default_base`."""
    repo = Path(repo_path).resolve()
    if not repo.is_dir():
        raise LocalRepoError(f"{repo}: no such directory")
    try:
        _git(repo, "rev-parse", "--git-dir")
    except LocalRepoError as exc:
        raise LocalRepoError(f"{repo}: not a git repository") from exc
    base_sha, how = (resolve_revision(repo, base), "--base") if base else default_base(repo)
    head_sha = resolve_revision(repo, head) if head else None
    args = ["diff", "--no-color", "--no-ext-diff", "-M", "--src-prefix=a/", "--dst-prefix=b/", base_sha]
    if head_sha:
        args.append(head_sha)
    diff_text = _git(repo, *args).decode("utf-8", errors="replace")
    changed: tuple[str, ...] = ()
    if head_sha:
        names = _git(repo, "diff", "--name-only", "-z", "-M", "--diff-filter=d", base_sha, head_sha)
        changed = tuple(n.decode("utf-8", errors="surrogateescape") for n in names.split(b"\x00") if n)
    return LocalChange(
        repo_path=repo,
        base=base_sha,
        head=head_sha,
        diff_text=diff_text,
        name=repo.name,
        changed_paths=changed,
        base_how=how,
    )


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
