"""Unified diffs -> FileDiff / Hunk / DiffLine, with old and new line numbers.

unidiff does the hunk arithmetic; this module adds what a reviewer needs on top of it: git's
extended headers (renames, copies, modes, binary files, header-only entries), C-quoted and spaced
file names, CRLF input, and one typed error for anything malformed, so a bad diff is reported
clearly instead of crashing a review. Pure: text in, dataclasses out.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator

from unidiff import PatchSet
from unidiff.constants import RE_HUNK_HEADER
from unidiff.patch import Hunk as UnidiffHunk
from unidiff.patch import PatchedFile

from reviewbot.core.domain import DiffLine, FileDiff, FileStatus, Hunk
from reviewbot.core.languages import language_for_path

DEV_NULL = "/dev/null"
#: git's default, mnemonic (diff.mnemonicPrefix) and --no-index source/destination prefixes.
_PREFIX = re.compile(r"^[abciow12]/")
#: svn writes "path\t(revision 12)" (unidiff splits at the tab) or, in some tools, "path(working copy)".
#: Anchored at its '(' (the whitespace before it is stripped apart): `\s*\(...` was retried from
#: every position of a whitespace run, quadratic in a file name of spaces.
_SVN_SUFFIX = re.compile(r"\((?:revision \d+|working copy|nonexistent)\)$")
_KINDS = {"+": "added", "-": "deleted", " ": "context"}
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


class DiffParseError(ValueError):
    """The diff is malformed; the message says which file / hunk / diff line and what was wrong."""

    def __init__(
        self, message: str, *, path: str | None = None, hunk: int | None = None, line_no: int | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.hunk = hunk
        self.line_no = line_no


def parse_diff(text: str) -> list[FileDiff]:
    """Parse a unified diff (git, GNU diff, svn, hg, bzr flavours) into FileDiffs.

    Blank input is an empty change ([]). Anything that is not a usable unified diff raises
    DiffParseError and nothing else.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise DiffParseError(f"diff must be text, got {type(text).__name__}")
    if not text.strip():
        return []
    # CRLF diffs (whole diff or only some content lines): the \r is not part of the code line.
    normalised = text.replace("\r\n", "\n")
    fast = _parse_fast(normalised)
    return fast if fast is not None else _parse_full(normalised)


def _parse_full(normalised: str) -> list[FileDiff]:
    """unidiff's full parse (Line objects), converted; its errors located and explained."""
    patch = _PartialPatchSet.__new__(_PartialPatchSet)
    list.__init__(patch)
    try:
        patch._parse(io.StringIO(normalised), encoding=None, metadata_only=False)
    except Exception:  # unidiff raises its own error, but also AssertionError/IndexError...
        # Parse again counting lines to say where it failed (parsing is deterministic; counting
        # every line of every good diff is not worth it).
        tracker = _LineTracker(io.StringIO(normalised))
        patch = _PartialPatchSet.__new__(_PartialPatchSet)
        list.__init__(patch)
        try:
            patch._parse(iter(tracker), encoding=None, metadata_only=False)
        except Exception as exc:
            raise _located_error(exc, patch, tracker) from exc
    if not patch:
        first = normalised.lstrip().split("\n", 1)[0][:80]
        raise DiffParseError(f"no unified diff found in the input (it starts with {first!r})")
    try:
        return [_convert(pf, index) for index, pf in enumerate(patch)]
    except DiffParseError:
        raise
    except Exception as exc:
        raise DiffParseError(f"cannot interpret the diff: {exc}") from exc


def hunk_index_for(file: FileDiff, line: int, side: str = "RIGHT") -> int | None:
    """Index into file.hunks of the hunk GitHub would attach (line, side) to, or None."""
    hunk = file.hunk_for(line, "LEFT" if side == "LEFT" else "RIGHT")
    if hunk is None:
        return None
    return next(i for i, h in enumerate(file.hunks) if h is hunk)


def unquote_path(name: str) -> str:
    """Undo git's C-style quoting ("a/\\303\\242 b.py" -> a/â b.py); unquoted names pass through."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    body = name[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        if i + 1 >= len(body):
            raise DiffParseError(f"bad escape at the end of quoted file name {name}")
        nxt = body[i + 1]
        if nxt in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1 :])
            assert digits is not None
            out.append(int(digits.group(0), 8) & 0xFF)
            i += 1 + len(digits.group(0))
        elif nxt in _C_ESCAPES:
            out.append(_C_ESCAPES[nxt])
            i += 2
        else:
            raise DiffParseError(f"unknown escape \\{nxt} in quoted file name {name}")
    return out.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- internals


def _parse_fast(normalised: str) -> list[FileDiff] | None:
    """The same FileDiffs as unidiff's full parse, about three times cheaper, or None.

    unidiff parses the structure in its metadata-only mode (file headers, hunk headers and
    counts, validation: no Line objects, no regex per line); the hunk bodies are then read
    from the text here, consuming lines exactly as unidiff's full parse does. Anything this
    path is not sure of (an error, a count that does not add up) returns None, and the full
    parse, with its located error messages, decides.
    """
    patch = _PartialPatchSet.__new__(_PartialPatchSet)
    list.__init__(patch)
    try:
        patch._parse(io.StringIO(normalised), encoding=None, metadata_only=True)
    except Exception:
        return None
    if not patch:
        return None
    headers = [h for pf in patch for h in pf]
    bodies = _hunk_bodies(normalised.split("\n"), headers)
    if bodies is None:
        return None
    out: list[FileDiff] = []
    start = 0
    try:
        for index, pf in enumerate(patch):
            out.append(_convert(pf, index, bodies[start : start + len(pf)]))
            start += len(pf)
    except Exception:
        return None
    return out


def _hunk_bodies(parts: list[str], headers: list[UnidiffHunk]) -> list[Hunk] | None:
    """One Hunk per unidiff hunk header (in order), its lines read from the diff's lines
    (`parts`: the text split at "\n"), as unidiff's full parse reads them; None on a mismatch."""
    out: list[Hunk] = []
    n = len(parts)
    if parts and parts[-1] == "":  # the text ends with a newline: no line after it
        n -= 1
    i = 0
    match = RE_HUNK_HEADER.match
    for h in headers:
        while i < n and not (parts[i].startswith("@@") and match(parts[i])):
            i += 1
        if i >= n:
            return None
        i += 1
        hunk = Hunk(
            old_start=h.source_start,
            old_len=h.source_length,
            new_start=h.target_start,
            new_len=h.target_length,
            section=(h.section_header or "").strip(),
        )
        old_no, new_no = hunk.old_start, hunk.new_start
        old_end, new_end = old_no + hunk.old_len, new_no + hunk.new_len
        append = hunk.lines.append
        # DiffLine built by tuple.__new__: NamedTuple's own __new__ is a Python frame per line, and
        # every line of every diff is one (same fields, same order, same type)
        new = tuple.__new__
        while True:  # unidiff reads at least one line after the header, then stops when both
            if i >= n:  # counts are reached (and fails past them)
                return None
            line = parts[i]
            i += 1
            kind = line[:1]
            if kind == "+":
                text = line[1:]
                append(new(DiffLine, ("added", text[:-1] if text.endswith("\r") else text, None, new_no)))
                new_no += 1
            elif kind == "-":
                text = line[1:]
                append(new(DiffLine, ("deleted", text[:-1] if text.endswith("\r") else text, old_no, None)))
                old_no += 1
            elif kind == " ":
                text = line[1:]
                append(new(DiffLine, ("context", text[:-1] if text.endswith("\r") else text, old_no, new_no)))
                old_no += 1
                new_no += 1
            elif kind in ("", "\r"):
                # unidiff's empty body line: its value is the first one or two of [\r\n], so
                # after the \n and then a \r are stripped, only "\r\r..." leaves a "\r"
                append(new(DiffLine, ("context", "\r" if line.startswith("\r\r") else "", old_no, new_no)))
                old_no += 1
                new_no += 1
            elif kind != "\\":
                return None
            if old_no > old_end or new_no > new_end:
                return None
            if old_no == old_end and new_no == new_end:
                break
        out.append(hunk)
    return out


class _LineTracker:
    """Iterates the diff's lines and remembers the 1-based number of the last one handed out."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = lines
        self.line_no = 0
        self.line = ""

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            self.line_no += 1
            self.line = line
            yield line


class _PartialPatchSet(PatchSet):
    """A PatchSet we fill ourselves, so the files parsed before an error stay inspectable."""


def _located_error(exc: Exception, patch: list[PatchedFile], tracker: _LineTracker) -> DiffParseError:
    line_no = tracker.line_no
    bad_line = tracker.line.rstrip("\n")
    reason = str(exc).strip().split("\n", 1)[0] or type(exc).__name__
    if reason.lower().startswith("hunk diff line expected"):
        reason = f"a line inside a hunk must start with ' ', '+', '-' or '\\', got {bad_line[:60]!r}"
    elif "shorter than expected" in reason:
        reason = "the diff ends before the hunk has as many lines as its @@ header says"
    elif reason.startswith("Unexpected hunk found"):
        reason = "a hunk header with no file header before it ('--- a/x' + '+++ b/x', or 'diff --git')"
    elif "longer than expected" in reason:
        reason = "the hunk has more lines than its @@ header says"
    if not patch:
        return DiffParseError(f"diff line {line_no}: {reason}", line_no=line_no)
    current = patch[-1]
    try:
        old, new = _strip_prefixes(_clean_name(current.source_file), _clean_name(current.target_file))
        path = new or old or "?"
    except DiffParseError:
        path = current.target_file
    hunk_no = len(current) + 1
    return DiffParseError(
        f"{path}: hunk {hunk_no} (diff line {line_no}): {reason}", path=path, hunk=hunk_no, line_no=line_no
    )


def _clean_name(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip()
    if (suffix := _SVN_SUFFIX.search(name)) is not None:
        name = name[: suffix.start()].rstrip()
    if name == DEV_NULL:
        return None
    return unquote_path(name)


def _strip_prefixes(old: str | None, new: str | None) -> tuple[str | None, str | None]:
    """Drop a/ b/ (or mnemonic) prefixes only when every named side carries one."""
    named = [n for n in (old, new) if n is not None]
    if named and all(_PREFIX.match(n) for n in named):
        return (old[2:] if old else None), (new[2:] if new else None)
    return old, new


def _split_git_header(header: str) -> tuple[str, str] | None:
    """Split `diff --git A B` where names may contain spaces or be C-quoted."""
    rest = header[len("diff --git ") :].rstrip("\n")
    if rest.startswith('"'):
        end = _quoted_end(rest)
        if end is None:
            return None
        first, second = rest[: end + 1], rest[end + 2 :]
        return unquote_path(first), unquote_path(second)
    if rest.endswith('"'):
        start = rest.rfind(' "')
        if start > 0:
            return rest[:start], unquote_path(rest[start + 1 :])
    if rest.count(" ") == 1:
        first, second = rest.split(" ")
        return first, second
    # Same name on both sides ("a/x y b/x y"): split in the middle.
    if len(rest) % 2 == 1:
        mid = len(rest) // 2
        first, second = rest[:mid], rest[mid + 1 :]
        if rest[mid] == " " and _PREFIX.sub("", first) == _PREFIX.sub("", second):
            return first, second
    return None


def _quoted_end(text: str) -> int | None:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return None


def _header_value(info: list[str], key: str) -> str | None:
    for line in info:
        if line.startswith(key):
            return unquote_path(line[len(key) :].rstrip("\n"))
    return None


def _convert(pf: PatchedFile, index: int, converted: list[Hunk] | None = None) -> FileDiff:
    """One file of the diff; `converted`: its hunks when already read (see _parse_fast)."""
    info = [str(x) for x in (pf.patch_info or [])]
    git_header = next((x for x in info if x.startswith("diff --git ")), None)
    old_raw = _clean_name(pf.source_file)
    new_raw = _clean_name(pf.target_file)
    names_certain = True
    if git_header is not None and not len(pf):
        # Header-only entry (rename, mode change, binary, empty file): the names come from the
        # `diff --git` line alone, and unidiff's regex splits "a/x y b/x z" wherever it likes.
        split = _split_git_header(git_header)
        names_certain = split is not None
        if split is not None:
            old_raw = None if pf.source_file == DEV_NULL else split[0]
            new_raw = None if pf.target_file == DEV_NULL else split[1]
    old_name, new_name = _strip_prefixes(old_raw, new_raw)

    rename_from = _header_value(info, "rename from ")
    rename_to = _header_value(info, "rename to ")
    copy_from = _header_value(info, "copy from ")
    copy_to = _header_value(info, "copy to ")
    if not names_certain or not old_name or not new_name:
        if rename_from and rename_to:
            old_name, new_name = rename_from, rename_to
        elif copy_from and copy_to:
            old_name, new_name = copy_from, copy_to

    status: FileStatus
    if pf.source_file == DEV_NULL or (git_header is None and pf.is_added_file and len(pf)):
        status = "added"
    elif pf.target_file == DEV_NULL or (git_header is None and pf.is_removed_file and len(pf)):
        status = "deleted"
    elif (rename_from and rename_to) or (
        git_header is not None and old_name and new_name and old_name != new_name and not copy_from
    ):
        status = "renamed"  # plain `diff -u old new` names two files: that is not a rename
    else:
        status = "modified"

    path = new_name if status != "deleted" else old_name
    path = path or new_name or old_name
    if not path:
        raise DiffParseError(f"file {index + 1} of the diff has no file name", hunk=None)
    old_path = old_name if (status in ("renamed", "modified") and old_name and old_name != path) else None

    hunks = converted
    if hunks is None:
        hunks = [_convert_hunk(h, path, n) for n, h in enumerate(pf, start=1)]
    _check_order(hunks, path)
    return FileDiff(
        path=path,
        old_path=old_path,
        status=status,
        hunks=hunks,
        is_binary=bool(pf.is_binary_file),
        old_mode=pf.source_mode,
        new_mode=pf.target_mode,
        language=language_for_path(path),
    )


def _convert_hunk(h: object, path: str, number: int) -> Hunk:
    hunk = Hunk(
        old_start=h.source_start,  # type: ignore[attr-defined]
        old_len=h.source_length,  # type: ignore[attr-defined]
        new_start=h.target_start,  # type: ignore[attr-defined]
        new_len=h.target_length,  # type: ignore[attr-defined]
        section=(h.section_header or "").strip(),  # type: ignore[attr-defined]
    )
    out = hunk.lines
    for line in h:  # type: ignore[attr-defined]
        kind = _KINDS.get(line.line_type)
        if kind is None:  # "\ No newline at end of file", trailing blank separators
            continue
        text = line.value
        if text.endswith("\n"):
            text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
        out.append(DiffLine(kind, text, line.source_line_no, line.target_line_no))  # type: ignore[arg-type]
    return hunk


def _check_order(hunks: list[Hunk], path: str) -> None:
    """Hunks of one file must not overlap, or a line would belong to two hunks."""
    for n in range(1, len(hunks)):
        prev, cur = hunks[n - 1], hunks[n]
        if cur.old_start < prev.old_start + prev.old_len or cur.new_start < prev.new_start + prev.new_len:
            raise DiffParseError(
                f"{path}: hunk {n + 1} (@@ -{cur.old_start},{cur.old_len} +{cur.new_start},{cur.new_len} @@) "
                f"overlaps or precedes hunk {n}",
                path=path,
                hunk=n + 1,
            )
