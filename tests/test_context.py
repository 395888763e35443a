"""context: symbols per language, enclosing symbol, changed symbols and snippets for each hunk."""

from __future__ import annotations

import difflib
import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reviewbot.core.domain import FileDiff, Symbol
from reviewbot.core.languages import SUPPORTED
from reviewbot.review.context import (
    ParsedFile,
    hunk_contexts,
    parse_file,
    parse_source,
    symbols,
)
from reviewbot.review.diff import parse_diff


def diff_of(path: str, before: str, after: str) -> FileDiff:
    """A FileDiff built from a difflib diff (independent of our parser's own fixtures)."""
    text = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
    )
    (file,) = parse_diff(text)
    return file


# One small file per language; `after` changes a line inside a method (or function) whose
# expected name, kind and 1-based line range in the NEW file are given.
CASES: dict[str, tuple[str, str, str, tuple[str, str, int, int], list[str]]] = {
    "python": (
        "svc.py",
        "import os\n\n\nclass Service:\n    def __init__(self):\n        self.n = 0\n\n"
        "    def run(self, x):\n        y = x + 1\n        return y\n\n\ndef helper():\n    return 2\n",
        "import os\n\n\nclass Service:\n    def __init__(self):\n        self.n = 0\n\n"
        "    def run(self, x):\n        y = x + 2\n        return y\n\n\ndef helper():\n    return 2\n",
        ("run", "method", 8, 10),
        ["run"],
    ),
    "javascript": (
        "cart.js",
        "const a = 1;\n\nclass Cart {\n  total(items) {\n    let t = 0;\n    return t;\n  }\n}\n\n"
        "function other() {\n  return 1;\n}\n",
        "const a = 1;\n\nclass Cart {\n  total(items) {\n    let t = 1;\n    return t;\n  }\n}\n\n"
        "function other() {\n  return 1;\n}\n",
        ("total", "method", 4, 7),
        ["total"],
    ),
    "typescript": (
        "api.ts",
        "export interface Api {\n  get(id: string): number;\n}\n\nexport class Client implements Api {\n"
        "  get(id: string): number {\n    const n = id.length;\n    return n;\n  }\n}\n",
        "export interface Api {\n  get(id: string): number;\n}\n\nexport class Client implements Api {\n"
        "  get(id: string): number {\n    const n = id.length * 2;\n    return n;\n  }\n}\n",
        ("get", "method", 6, 9),
        ["get"],
    ),
    "tsx": (
        "view.tsx",
        "import React from 'react';\n\nexport class View extends React.Component {\n  render() {\n"
        "    return <div>old</div>;\n  }\n}\n",
        "import React from 'react';\n\nexport class View extends React.Component {\n  render() {\n"
        "    return <div>new</div>;\n  }\n}\n",
        ("render", "method", 4, 6),
        ["render"],
    ),
    "go": (
        "server.go",
        "package srv\n\ntype Server struct {\n\tn int\n}\n\nfunc (s *Server) Handle(x int) int {\n"
        "\ty := x + 1\n\treturn y\n}\n\nfunc New() *Server { return &Server{} }\n",
        "package srv\n\ntype Server struct {\n\tn int\n}\n\nfunc (s *Server) Handle(x int) int {\n"
        "\ty := x + 2\n\treturn y\n}\n\nfunc New() *Server { return &Server{} }\n",
        ("Server.Handle", "method", 7, 10),
        ["Server.Handle"],
    ),
    "rust": (
        "lib.rs",
        "pub struct Counter {\n    n: u32,\n}\n\nimpl Counter {\n    pub fn bump(&mut self) -> u32 {\n"
        "        self.n += 1;\n        self.n\n    }\n}\n",
        "pub struct Counter {\n    n: u32,\n}\n\nimpl Counter {\n    pub fn bump(&mut self) -> u32 {\n"
        "        self.n += 2;\n        self.n\n    }\n}\n",
        ("bump", "method", 6, 9),
        ["bump"],
    ),
    "java": (
        "Shop.java",
        "package x;\n\npublic class Shop {\n    private int n;\n\n    public int price(int q) {\n"
        "        int p = q * 2;\n        return p;\n    }\n}\n",
        "package x;\n\npublic class Shop {\n    private int n;\n\n    public int price(int q) {\n"
        "        int p = q * 3;\n        return p;\n    }\n}\n",
        ("price", "method", 6, 9),
        ["price"],
    ),
    "ruby": (
        "shop.rb",
        "module Billing\n  class Invoice\n    def total(items)\n      sum = 0\n      sum\n    end\n"
        "  end\nend\n",
        "module Billing\n  class Invoice\n    def total(items)\n      sum = 1\n      sum\n    end\n"
        "  end\nend\n",
        ("total", "method", 3, 6),
        ["total"],
    ),
    "c": (
        "util.c",
        "#include <stdio.h>\n\nstruct point {\n  int x;\n};\n\nstatic int *scale(int *v, int k) {\n"
        "  *v = *v * k;\n  return v;\n}\n",
        "#include <stdio.h>\n\nstruct point {\n  int x;\n};\n\nstatic int *scale(int *v, int k) {\n"
        "  *v = *v * k + 1;\n  return v;\n}\n",
        ("scale", "function", 7, 10),
        ["scale"],
    ),
    "cpp": (
        "geo.cpp",
        "namespace geo {\nclass Shape {\n public:\n  int area() const {\n    int a = 1;\n    return a;\n"
        "  }\n};\n}\n",
        "namespace geo {\nclass Shape {\n public:\n  int area() const {\n    int a = 2;\n    return a;\n"
        "  }\n};\n}\n",
        ("area", "method", 4, 7),
        ["area"],
    ),
}


def test_every_supported_language_has_a_case() -> None:
    assert set(CASES) == set(SUPPORTED)


@pytest.mark.parametrize("language", sorted(CASES))
def test_enclosing_and_changed_symbols_per_language(language: str) -> None:
    path, before, after, (name, kind, start, end), changed = CASES[language]
    file = diff_of(path, before, after)
    assert file.language == language
    (ctx,) = hunk_contexts(file, after)
    assert ctx.parse_error is False
    assert ctx.enclosing == Symbol(name, kind, start, end)
    assert [s.name for s in ctx.changed_symbols] == changed
    # The whole method fits the default budget: the snippet is exactly its lines.
    assert ctx.snippet_start_line == start
    assert ctx.snippet == "\n".join(after.split("\n")[start - 1 : end])
    assert ctx.path == path and ctx.hunk_index == 0 and ctx.language == language


def test_symbol_tables_find_containers_and_qualified_names() -> None:
    go = symbols("go", CASES["go"][2].encode())
    assert [(s.name, s.kind) for s in go] == [
        ("Server", "struct"),
        ("Server.Handle", "method"),
        ("New", "function"),
    ]
    rust = symbols("rust", CASES["rust"][2])
    assert [(s.name, s.kind) for s in rust] == [
        ("Counter", "struct"),
        ("Counter", "impl"),
        ("bump", "method"),
    ]
    cpp = symbols("cpp", b"int Foo::bar() {\n  return 1;\n}\nint baz() { return 2; }\n")
    assert [(s.name, s.kind, s.start_line, s.end_line) for s in cpp] == [
        ("Foo::bar", "method", 1, 3),
        ("baz", "function", 4, 4),
    ]
    py = symbols("python", "@decorator\ndef f():\n    def inner():\n        pass\n")
    assert [(s.name, s.kind, s.start_line, s.end_line) for s in py] == [
        ("f", "function", 1, 4),
        ("inner", "function", 3, 4),
    ]
    ts = symbols("typescript", "enum Color { Red }\nexport const h = (a: number) => {\n  return a;\n};\n")
    assert [(s.name, s.kind) for s in ts] == [("Color", "enum"), ("h", "function")]
    assert symbols("markdown", b"# title\n") == []


def test_change_at_module_level_gets_a_window_and_no_symbol() -> None:
    before = "import os\nimport sys\n\n\ndef f():\n    return 1\n"
    after = "import os\nimport re\n\n\ndef f():\n    return 1\n"
    (ctx,) = hunk_contexts(diff_of("m.py", before, after), after)
    assert ctx.enclosing is None and ctx.changed_symbols == [] and not ctx.parse_error
    assert ctx.snippet_start_line == 1 and "import re" in ctx.snippet


def test_added_method_and_class_line_are_changed_symbols() -> None:
    before = "class A:\n    x = 1\n\n    def f(self):\n        return 1\n"
    after = (
        "class A:\n    x = 2\n\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2\n"
    )
    contexts = hunk_contexts(diff_of("a.py", before, after), after)
    assert len(contexts) == 1
    ctx = contexts[0]
    assert ctx.enclosing == Symbol("A", "class", 1, 8)
    assert [(s.name, s.kind) for s in ctx.changed_symbols] == [("A", "class"), ("g", "method")]


def test_pure_deletion_inside_a_function() -> None:
    before = "def f(x):\n    a = 1\n    b = 2\n    return a\n\n\ndef g():\n    return 0\n"
    after = "def f(x):\n    a = 1\n    return a\n\n\ndef g():\n    return 0\n"
    (ctx,) = hunk_contexts(diff_of("d.py", before, after), after)
    assert ctx.enclosing == Symbol("f", "function", 1, 3)
    assert [s.name for s in ctx.changed_symbols] == ["f"]


def test_budget_fallback_gives_a_window_inside_the_function() -> None:
    body = [f"    v{i} = {i}" for i in range(200)]
    before = "def big():\n" + "\n".join(body) + "\n    return v0\n"
    after_lines = ["def big():", *body, "    return v0"]
    after_lines[101] = "    v100 = -1"  # new-file line 102
    after = "\n".join(after_lines) + "\n"
    file = diff_of("big.py", before, after)
    (ctx,) = hunk_contexts(file, after, budget_lines=40)
    assert ctx.enclosing == Symbol("big", "function", 1, 202)
    lines = ctx.snippet.split("\n")
    assert 7 <= len(lines) <= 40
    assert ctx.snippet_start_line is not None and 1 <= ctx.snippet_start_line <= 102
    assert lines[102 - ctx.snippet_start_line] == "    v100 = -1"
    assert lines == after_lines[ctx.snippet_start_line - 1 : ctx.snippet_start_line - 1 + len(lines)]
    (whole,) = hunk_contexts(file, after, budget_lines=300)
    assert whole.snippet_start_line == 1 and len(whole.snippet.split("\n")) == 202


def test_hunk_longer_than_budget_is_cut_to_the_budget() -> None:
    before = "x = 0\n"
    after = "".join(f"x{i} = {i}\n" for i in range(60))
    for source in (after, None):
        (ctx,) = hunk_contexts(diff_of("long.py", before, after), source, budget_lines=10)
        assert len(ctx.snippet.split("\n")) == 10 and ctx.snippet_start_line == 1


@pytest.mark.parametrize("path", ["notes.txt", "README.md"])
def test_unsupported_language_gets_plain_hunk_context(path: str) -> None:
    before = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\n"
    after = "one\ntwo\nthree\nfour\nFIVE\nsix\nseven\neight\n"
    file = diff_of(path, before, after)
    assert file.language is None
    (ctx,) = hunk_contexts(file, after)
    assert (ctx.enclosing, ctx.changed_symbols, ctx.parse_error, ctx.language) == (None, [], False, None)
    assert ctx.snippet_start_line == 2
    assert ctx.snippet == "two\nthree\nfour\nFIVE\nsix\nseven\neight"


def test_syntax_error_near_the_hunk_falls_back_and_says_so() -> None:
    before = "def ok():\n    return 1\n\n\ndef g():\n    return 2\n"
    after = "def ok():\n    return 1\n\n\ndef g(:\n    return 2\n"
    (ctx,) = hunk_contexts(diff_of("bad.py", before, after), after)
    assert ctx.parse_error is True and ctx.enclosing is None and ctx.changed_symbols == []
    assert "def g(:" in ctx.snippet and ctx.snippet_start_line == 2


def test_syntax_error_elsewhere_keeps_context_for_clean_hunks() -> None:
    clean = [f"    a{i} = {i}" for i in range(30)]
    before = "def fine():\n" + "\n".join(clean) + "\n    return 0\n\n\ndef broken(:\n    pass\n"
    after = before.replace("    a15 = 15", "    a15 = -15")
    (ctx,) = hunk_contexts(diff_of("half.py", before, after), after)
    assert ctx.parse_error is False
    assert ctx.enclosing == Symbol("fine", "function", 1, 32)


def test_deleted_file_and_missing_or_stale_source() -> None:
    deleted = parse_diff("--- a/gone.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-def f():\n-    pass\n")[0]
    assert deleted.status == "deleted"
    (ctx,) = hunk_contexts(deleted, None)
    assert (ctx.enclosing, ctx.snippet, ctx.snippet_start_line, ctx.parse_error) == (None, "", None, False)

    path, before, after, _, _ = CASES["python"]
    file = diff_of(path, before, after)
    (missing,) = hunk_contexts(file, None)
    assert missing.enclosing is None and missing.snippet_start_line == 6 and "x + 2" in missing.snippet
    stale = "print('a different file')\n"
    (ctx,) = hunk_contexts(file, stale)
    assert ctx.enclosing is None and "x + 2" in ctx.snippet


def test_parse_once_and_reuse_across_hunks() -> None:
    before = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(12))
    after = before.replace("return 2\n", "return -2\n").replace("return 9\n", "return -9\n")
    file = diff_of("many.py", before, after)
    assert len(file.hunks) == 2
    parsed = parse_file("python", after)
    assert isinstance(parsed, ParsedFile) and parsed.tree is not None and len(parsed.symbols) == 12
    reused = hunk_contexts(file, None, parsed=parsed)
    tree = parse_source("python", after.encode())
    assert reused == hunk_contexts(file, after) == hunk_contexts(file, after, tree=tree)
    assert [c.enclosing.name for c in reused if c.enclosing] == ["f2", "f9"]
    assert [c.hunk_index for c in reused] == [0, 1]


def test_crlf_source_lines() -> None:
    before = "def f():\r\n    return 1\r\n"
    after = "def f():\r\n    return 2\r\n"
    (ctx,) = hunk_contexts(diff_of("w.py", before, after), after)
    assert ctx.enclosing == Symbol("f", "function", 1, 2)
    assert ctx.snippet == "def f():\n    return 2"


def test_parse_source_unknown_language() -> None:
    assert parse_source("cobol", b"x") is None
    assert parse_source("python", b"x = 1\n") is not None


# --------------------------------------------------------------------------- shared real PRs


@pytest.mark.shared
def test_real_prs_contexts(shared_data: Path) -> None:
    root = shared_data / "real-prs"
    per_ext: dict[str, list[int]] = {}
    parse_cpu = ours_cpu = 0.0
    for entry in json.loads((root / "index.json").read_text()):
        pr = root / entry["id"]
        for file in parse_diff((pr / "diff.patch").read_bytes().decode("utf-8")):
            after = pr / "after" / file.path
            source = after.read_bytes().decode("utf-8", errors="replace") if after.is_file() else None
            tree = None
            if source is not None and file.language is not None:
                started = time.process_time()
                tree = parse_source(file.language, source.encode("utf-8"))
                parse_cpu += time.process_time() - started
            started = time.process_time()
            contexts = hunk_contexts(file, source, tree=tree)
            ours_cpu += time.process_time() - started
            assert len(contexts) == len(file.hunks)
            ext = Path(file.path).suffix
            if ext not in (".py", ".go", ".ts") or file.status == "deleted" or source is None:
                continue
            counts = per_ext.setdefault(ext, [0, 0, 0])
            lines = source.split("\n")
            for hunk, ctx in zip(file.hunks, contexts, strict=True):
                counts[0] += 1
                counts[1] += ctx.enclosing is not None
                counts[2] += ctx.enclosing is not None or bool(ctx.snippet)
                if ctx.snippet_start_line is not None:  # the snippet is the file's own lines
                    first = ctx.snippet_start_line - 1
                    snippet = ctx.snippet.split("\n")
                    assert snippet == [ln.rstrip("\r") for ln in lines[first : first + len(snippet)]]
                if ctx.enclosing is not None:
                    added = hunk.added_line_numbers()
                    assert all(ctx.enclosing.start_line <= n <= ctx.enclosing.end_line for n in added)
    assert set(per_ext) == {".py", ".go", ".ts"}
    for ext, (hunks, with_symbol, with_context) in per_ext.items():
        assert with_context >= 0.95 * hunks, (ext, per_ext)
        assert with_symbol >= 0.3 * hunks, (ext, per_ext)
    assert per_ext[".py"][1] >= 0.6 * per_ext[".py"][0]
    # Our work on top of tree-sitter stays well below the pipeline's 2x budget.
    assert ours_cpu <= 2.0 * parse_cpu, (ours_cpu, parse_cpu)


_SOURCE_LINES = st.sampled_from(
    [
        "def f(x):",
        "    return x",
        "class A:",
        "    def m(self):",
        "        pass",
        "",
        "x = (",
        ")",
        "if x:",
        "    y = 1",
        "async def g():",
        "@dec",
        "func F() {",
        "}",
        "  ",
        "def broken(:",
    ]
)


@settings(max_examples=120, deadline=None)
@given(
    before=st.lists(_SOURCE_LINES, min_size=1, max_size=30),
    after=st.lists(_SOURCE_LINES, min_size=1, max_size=30),
    budget=st.integers(min_value=1, max_value=40),
    ext=st.sampled_from(["py", "go", "txt"]),
)
def test_property_contexts_never_raise_and_snippets_are_file_lines(
    before: list[str], after: list[str], budget: int, ext: str
) -> None:
    old, new = "\n".join(before) + "\n", "\n".join(after) + "\n"
    if old == new:
        return
    file = diff_of(f"f.{ext}", old, new)
    for source in (new, None):
        contexts = hunk_contexts(file, source, budget_lines=budget)
        assert [c.hunk_index for c in contexts] == list(range(len(file.hunks)))
        for ctx in contexts:
            assert len(ctx.snippet.split("\n")) <= budget
            if ctx.snippet_start_line is not None:
                first = ctx.snippet_start_line - 1
                assert ctx.snippet.split("\n") == after[first : first + len(ctx.snippet.split("\n"))]
            if ctx.enclosing is not None:
                assert ctx.enclosing.start_line <= ctx.enclosing.end_line <= len(after)


def test_hunk_on_decorators_only_still_finds_the_decorated_function() -> None:
    """Symbols are only collected around the hunks; a decorator line belongs to its function."""
    body = "".join(f"    x{i} = {i}\n" for i in range(40))
    decorators = "@functools.cache\n@a\n@b\n@c\n@d\n@e\n"
    before = "import functools\n\n\n" + decorators + "def f():\n" + body
    after = before.replace("@functools.cache", "@functools.lru_cache")
    (ctx,) = hunk_contexts(diff_of("deco.py", before, after), after)
    assert ctx.enclosing == Symbol("f", "function", 4, 50)
    assert ctx.changed_symbols == [Symbol("f", "function", 4, 50)]


def test_a_symbol_starting_where_another_ends_is_its_sibling_not_its_child() -> None:
    source = "class A { m() { return 1; } } function g() {\n  return 2;\n}\n"
    found = {s.name: s for s in symbols("javascript", source)}
    assert found["g"].kind == "function" and found["m"].kind == "method"


@pytest.mark.shared
def test_real_prs_contexts_around_the_hunks_equal_contexts_from_every_symbol(shared_data: Path) -> None:
    """hunk_contexts queries symbols only around the hunks: the same answers as from all of them."""
    root = shared_data / "real-prs"
    checked = 0
    for pr in sorted(p for p in root.iterdir() if (p / "diff.patch").is_file())[::4]:
        for file in parse_diff((pr / "diff.patch").read_text(encoding="utf-8")):
            after = pr / "after" / file.path
            if file.language is None or not file.hunks or not after.is_file():
                continue
            source = after.read_text(encoding="utf-8", errors="replace")
            tree = parse_source(file.language, source.encode("utf-8"))
            everything = parse_file(file.language, source, tree=tree)
            around = parse_file(file.language, source, tree=tree, hunks=file.hunks)
            assert len(around.symbols) <= len(everything.symbols)
            assert hunk_contexts(file, source, tree=tree) == hunk_contexts(file, source, parsed=everything)
            reference = hunk_contexts(file, source, parsed=everything)
            assert hunk_contexts(file, source, parsed=around) == reference
            checked += 1
    assert checked > 20
