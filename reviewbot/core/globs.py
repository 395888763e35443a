"""The one glob dialect: config `paths`, rule `paths`, `path_instructions`, `min_severity_by_path`.

Dialect (docs/configuration.md): `**` crosses directories, `*` and `?` stay inside one path
segment, `{a,b}` alternates, `[ab]` / `[!ab]` are character classes. A pattern without '/' also
matches the file name at any depth (`*.min.js` matches `web/app.min.js`); one with '/' is anchored
at the root; a leading '/' or './' is dropped; a trailing '/' means "everything below".

Patterns come from tenants' config files, so matching must be bounded whatever they write: a glob
is translated to an RE2 expression (google-re2: linear time in the path, no backtracking), each
pattern is capped in length and each list in count (`GlobError` names the limit). A list is
compiled once into one alternation for "does any match" (one pass per path, however long the
list); per-pattern answers (the last match wins, every match applies) use its compiled members.

`wildcard_match` is the other, smaller dialect: only `*` and `?`, case-insensitive, for names
(rule ids, author logins), on the same linear engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import re2

#: A glob longer than this is refused: real ones are under 100 characters.
MAX_PATTERN_CHARS = 500
#: A list (paths.exclude, rule paths, ...) with more globs than this is refused.
MAX_PATTERNS = 1000

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.dot_nl = True
_OPTIONS.never_capture = True
_OPTIONS.max_mem = 32 << 20  # a long combined list needs more than RE2's 8 MiB default


class GlobError(ValueError):
    """A glob (or a list of them) that cannot be used: too long, too many, or not a valid class."""


def check_pattern(pattern: str, *, what: str = "glob") -> None:
    """Raise GlobError when `pattern` is over the length cap or does not compile."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise GlobError(f"{what} is {len(pattern)} characters long (at most {MAX_PATTERN_CHARS})")
    _compiled(pattern)


def check_patterns(patterns: Sequence[str], *, what: str = "glob") -> None:
    """Raise GlobError when the list is over the count cap or one of its patterns is unusable."""
    if len(patterns) > MAX_PATTERNS:
        raise GlobError(f"{len(patterns)} {what}s in one list (at most {MAX_PATTERNS})")
    for pattern in patterns:
        check_pattern(pattern, what=what)


# ------------------------------------------------------------------------------------------ translate


def _literal(char: str) -> str:
    if char.isascii() and not (char.isalnum() or char == "_"):
        return f"\\x{{{ord(char):x}}}"  # always valid RE2, whatever the punctuation
    return char


def _normalise(pattern: str) -> str:
    pat = pattern.strip().lstrip("/")
    if pat.startswith("./"):
        pat = pat[2:]
    if pat.endswith("/"):
        pat += "**"  # `docs/` means the directory and everything below it
    return pat


def _body(pat: str, *, one_segment: bool = False) -> str:
    """RE2 text for a normalised glob; `one_segment`: `**` cannot cross '/' (a file name)."""
    out: list[str] = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if pat.startswith("**/", i) and not one_segment:
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("/**", i) and i + 3 == n and not one_segment:
            out.append("(?:/.*)?")
            i += 3
        elif pat.startswith("**", i):
            out.append("[^/]*" if one_segment else ".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (j := pat.find("]", i + 2)) != -1:
            body = pat[i + 1 : j]
            negated = body.startswith("!")
            body = body[1:] if negated else body
            body = body.replace("\\", "\\\\").replace("[", "\\[")
            if negated:  # within a file name, `[!a]` must not match the '/' before it either
                body = "^" + body + ("/" if one_segment else "")
            out.append("[" + body + "]")
            i = j + 1
        elif c == "{" and (j := pat.find("}", i)) != -1:
            alts = pat[i + 1 : j].split(",")
            out.append("(?:" + "|".join(_body(a, one_segment=one_segment) for a in alts) + ")")
            i = j + 1
        else:
            out.append(_literal(c))
            i += 1
    return "".join(out)


def translate(pattern: str) -> str:
    """The RE2 expression (matched against the whole path) for one glob."""
    pat = _normalise(pattern)
    full = _body(pat)
    if "/" in pattern:
        return full
    # no '/': the whole path, or the file name at any depth
    return f"(?:{full})|(?:.*/)?(?:{_body(pat, one_segment=True)})"


# -------------------------------------------------------------------------------------------- match


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re2._Regexp:
    """One compiled glob. A cache miss costs a compile (~20 us), never a hang: no cliff to fall off."""
    try:
        return re2.compile(translate(pattern), _OPTIONS)
    except re2.error as exc:
        raise GlobError(f"invalid glob {pattern!r}: {exc}") from None
    except UnicodeEncodeError:
        raise GlobError(f"invalid glob {pattern!r}: not valid UTF-8") from None


def _text(path: str) -> str:
    return path.lstrip("/")


def glob_match(pattern: str, path: str) -> bool:
    """Whether repo-relative `path` matches `pattern` (see the module docstring for the dialect)."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise GlobError(f"glob is {len(pattern)} characters long (at most {MAX_PATTERN_CHARS})")
    return _compiled(pattern).fullmatch(_safe(_text(path))) is not None


def _safe(text: str) -> str:
    """RE2 reads UTF-8: a lone surrogate (from a mangled file name) becomes U+FFFD instead of raising."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


class GlobList:
    """An ordered list of globs compiled once: any/first/last/all matches of a path."""

    __slots__ = ("_any", "_each", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        check_patterns(self.patterns)
        self._each = [_compiled(p) for p in self.patterns]
        self._any: re2._Regexp | None = None
        if len(self.patterns) > 1:
            joined = "|".join(f"(?:{translate(p)})" for p in self.patterns)
            try:
                self._any = re2.compile(joined, _OPTIONS)
            except re2.error:  # over max_mem: fall back to one pattern at a time (still linear)
                self._any = None
        elif self._each:
            self._any = self._each[0]

    def __len__(self) -> int:
        return len(self.patterns)

    def any(self, path: str) -> bool:
        """Whether at least one glob matches (one RE2 pass over the path for the whole list)."""
        if not self.patterns:
            return False
        text = _safe(_text(path))
        if self._any is not None:
            return self._any.fullmatch(text) is not None
        return any(r.fullmatch(text) is not None for r in self._each)

    def indices(self, path: str) -> list[int]:
        """The positions of every glob that matches `path`, in list order."""
        if not self.any(path):
            return []
        text = _safe(_text(path))
        return [i for i, r in enumerate(self._each) if r.fullmatch(text) is not None]

    def first(self, path: str) -> str | None:
        """The first glob that matches `path` (None: none does)."""
        found = self.indices(path)
        return self.patterns[found[0]] if found else None

    def last(self, path: str) -> str | None:
        """The last glob that matches `path` (None: none does)."""
        found = self.indices(path)
        return self.patterns[found[-1]] if found else None


@lru_cache(maxsize=256)
def glob_list(patterns: tuple[str, ...]) -> GlobList:
    """The compiled list for `patterns`, shared: a review asks the same lists about every file.

    Keyed by the whole list, so a long list is one entry (a per-pattern cache thrashed past 1,024
    globs and recompiled every glob for every path).
    """
    return GlobList(patterns)


def path_selected(path: str, globs: Iterable[str]) -> bool:
    """Positive globs include (none: everything), `!glob` entries exclude; exclusion wins."""
    globs = tuple(globs)
    include = glob_list(tuple(g for g in globs if not g.startswith("!")))
    exclude = glob_list(tuple(g[1:] for g in globs if g.startswith("!")))
    if len(include) and not include.any(path):
        return False
    return not exclude.any(path)


# ----------------------------------------------------------------------------------------- wildcards


@lru_cache(maxsize=4096)
def _wildcard(pattern: str) -> re2._Regexp:
    body = "".join(".*" if c == "*" else "." if c == "?" else _literal(c) for c in pattern.lower())
    return re2.compile(body, _OPTIONS)


def wildcard_match(pattern: str, name: str) -> bool:
    """Case-insensitive match where only `*` and `?` are special (`[bot]` is literal, unlike fnmatch).

    For names (rule ids, author logins); linear in the name, whatever the pattern.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        return False
    return _wildcard(_safe(pattern)).fullmatch(_safe(name.lower())) is not None
