"""Rule query regex predicates (`#match?` and friends) evaluated by RE2, under a deadline.

tree-sitter's Python binding runs `#match?` with Python's backtracking `re`: a custom rule's
`#match? @x "^(a+)+$"` doubles its time with every character of the node, synchronously, inside a
review. So the predicates are renamed in the query text (`#match?` -> `#rb-match?`, outside
strings and comments), which tree-sitter then hands to our callback, and the regex runs on RE2:
linear in the node's text. A regex RE2 cannot run (backreferences, lookaround) is a query that
does not compile. The callback can also carry a deadline: once it has passed, every predicate
answers False at once and the caller learns the rule overran (the binding crashes when a
predicate raises, so the callback only reports).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import re2
from tree_sitter import Node

#: tree-sitter's regex predicates -> the names our callback answers.
_RENAMED = {
    "match?": "rb-match?",
    "not-match?": "rb-not-match?",
    "any-match?": "rb-any-match?",
    "any-not-match?": "rb-any-not-match?",
}

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.never_capture = True


class PredicateError(ValueError):
    """A regex in a query that RE2 cannot compile."""


def rewrite(query: str) -> tuple[str, list[str]]:
    """`query` with its regex predicates renamed, and the regexes they carry (unescaped).

    A scanner over the query syntax: strings ("..." with backslash escapes) and comments (';' to
    the end of the line) are copied as they are, so a '#match?' inside them is left alone.
    """
    out: list[str] = []
    regexes: list[str] = []
    i, n = 0, len(query)
    expect_regex = False
    while i < n:
        c = query[i]
        if c == '"':
            j, text = _string(query, i)
            if expect_regex:
                regexes.append(text)
                expect_regex = False
            out.append(query[i:j])
            i = j
        elif c == ";":
            j = query.find("\n", i)
            j = n if j == -1 else j
            out.append(query[i:j])
            i = j
        elif c == "#":
            j = i + 1
            while j < n and not query[j].isspace() and query[j] not in '()"':
                j += 1
            name = query[i + 1 : j]
            if name in _RENAMED:
                out.append("#" + _RENAMED[name])
                expect_regex = True
            else:
                out.append(query[i:j])
            i = j
        else:
            if c == ")":
                expect_regex = False
            out.append(c)
            i += 1
    return "".join(out), regexes


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0"}


def _string(query: str, i: int) -> tuple[int, str]:
    """(index after the closing quote, unescaped text) of the string starting at query[i]."""
    text: list[str] = []
    j, n = i + 1, len(query)
    while j < n and query[j] != '"':
        if query[j] == "\\" and j + 1 < n:
            text.append(_ESCAPES.get(query[j + 1], query[j + 1]))
            j += 2
        else:
            text.append(query[j])
            j += 1
    return min(j + 1, n), "".join(text)


@lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> re2._Regexp:
    """The RE2 program for one predicate regex (a bad one raises PredicateError)."""
    try:
        return re2.compile(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
    except re2.error as exc:
        raise PredicateError(
            f"regex {pattern!r} is not supported by the linear-time engine (RE2: no backreferences "
            f"or lookaround): {exc}"
        ) from None


def check(regexes: list[str]) -> None:
    """Raise PredicateError for the first regex RE2 cannot compile."""
    for pattern in regexes:
        compile_regex(pattern)


@dataclass
class Predicates:
    """The callback for QueryCursor.matches(predicate=...): RE2 regexes, an optional deadline.

    `deadline` is a time.monotonic() value; once passed, `overran` is set and every predicate
    answers False (cheap), so the rest of the walk costs only tree-sitter's own matching.
    """

    deadline: float | None = None
    overran: bool = False
    clock: Callable[[], float] = time.monotonic

    def __call__(
        self,
        name: str,
        args: list[tuple[str, str]],
        pattern_index: int,
        captures: dict[str, list[Node]],
    ) -> bool:
        if self.overran:
            return False
        if self.deadline is not None and self.clock() > self.deadline:
            self.overran = True
            return False
        if name not in _RENAMED.values() or len(args) != 2:
            return True  # not ours (tree-sitter keeps other unknown predicates as no-ops)
        (capture, kind), (pattern, _) = args
        if kind != "capture":
            return True
        try:
            regex = compile_regex(pattern)
        except PredicateError:
            return False  # checked at compile time; a regex that slipped through matches nothing
        nodes = captures.get(capture, [])
        hits = (regex.search(node.text or b"") is not None for node in nodes)
        if name == "rb-match?":
            return all(hits)
        if name == "rb-not-match?":
            return not any(hits)
        if name == "rb-any-match?":
            return any(hits)
        return not all(hits)  # rb-any-not-match?: some node does not match
