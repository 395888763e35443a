"""Code context for each hunk: the enclosing symbol, the symbols it changes, a snippet for the prompt.

A file is parsed once (ParsedFile) however many hunks it has. Symbols are collected with one
tree-sitter query per language, which walks the tree in C: a Python walk over every node would
cost more than the parse itself. Anything that goes wrong (no grammar, no source, syntax errors,
a source that does not match the diff) degrades to plain hunk context; it never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from tree_sitter import Node, Query, QueryCursor, Tree

from reviewbot.core.domain import FileDiff, Hunk, HunkContext, Symbol
from reviewbot.core.languages import grammar, parser

log = logging.getLogger("reviewbot.review.context")

#: Python's decorated_definition is captured for its definition (a symbol's lines include its
#: decorators, so a range query that touches only the decorators must still find the symbol).
_DECORATED_KINDS = {"function_definition": "function", "class_definition": "class"}

#: Symbol kinds a function nested directly in them turns into a "method".
_CONTAINERS = frozenset({"class", "struct", "interface", "impl", "trait", "module"})

_JS_PATTERNS = """
(function_declaration) @def.function
(generator_function_declaration) @def.function
(class_declaration) @def.class
(method_definition) @def.method
(variable_declarator value: [(arrow_function) (function_expression)]) @def.function
"""
_TS_PATTERNS = (
    _JS_PATTERNS
    + """
(abstract_class_declaration) @def.class
(interface_declaration) @def.interface
(enum_declaration) @def.enum
(internal_module) @def.namespace
"""
)
_C_PATTERNS = """
(function_definition) @def.function
(struct_specifier body: (_)) @def.struct
(union_specifier body: (_)) @def.struct
(enum_specifier body: (_)) @def.enum
"""

#: Per language: tree-sitter query patterns; the capture name says the symbol kind.
SYMBOL_QUERIES: dict[str, str] = {
    "python": """
(function_definition) @def.function
(class_definition) @def.class
(decorated_definition) @def.decorated
""",
    "javascript": _JS_PATTERNS,
    "typescript": _TS_PATTERNS,
    "tsx": _TS_PATTERNS,
    "go": """
(function_declaration) @def.function
(method_declaration) @def.method
(type_spec type: (struct_type)) @def.struct
(type_spec type: (interface_type)) @def.interface
""",
    "rust": """
(function_item) @def.function
(struct_item) @def.struct
(union_item) @def.struct
(enum_item) @def.enum
(trait_item) @def.trait
(impl_item) @def.impl
(mod_item body: (_)) @def.module
""",
    "java": """
(class_declaration) @def.class
(record_declaration) @def.class
(interface_declaration) @def.interface
(annotation_type_declaration) @def.interface
(enum_declaration) @def.enum
(method_declaration) @def.method
(constructor_declaration) @def.method
""",
    "ruby": """
(method) @def.function
(singleton_method) @def.function
(class) @def.class
(module) @def.module
""",
    "c": _C_PATTERNS,
    "cpp": _C_PATTERNS
    + """
(class_specifier body: (_)) @def.class
(namespace_definition body: (_)) @def.namespace
""",
}

_MAX_NAME = 200


@cache
def _query(language: str) -> Query | None:
    lang = grammar(language)
    patterns = SYMBOL_QUERIES.get(language)
    if lang is None or patterns is None:
        return None
    return Query(lang, patterns)


def parse_source(language: str, source: bytes) -> Tree | None:
    """The tree-sitter tree of `source`, or None when there is no grammar for `language`."""
    ts_parser = parser(language) if language else None
    if ts_parser is None:
        return None
    try:
        return ts_parser.parse(source)
    except Exception as exc:  # a grammar bug must not stop a review
        log.warning("tree-sitter failed on a %s file: %s", language, exc)
        return None


def symbols(language: str, source: bytes | str) -> list[Symbol]:
    """Functions, methods, classes... of `source`, outer before inner, with 1-based line ranges."""
    data = source.encode("utf-8") if isinstance(source, str) else source
    tree = parse_source(language, data)
    return _symbols_from_tree(language, tree)[0] if tree is not None else []


@dataclass(slots=True)
class ParsedFile:
    """One new-file source, parsed once and indexed for per-hunk lookups."""

    language: str | None
    lines: list[str]
    symbols: list[Symbol] = field(default_factory=list)
    #: parents[i]: index of the symbol directly enclosing symbols[i], -1 at top level
    parents: list[int] = field(default_factory=list)
    #: 1-based inclusive line ranges of ERROR / MISSING nodes
    error_ranges: list[tuple[int, int]] = field(default_factory=list)
    tree: Tree | None = None
    #: innermost[line]: index of the innermost symbol containing that line, -1 if none
    innermost: list[int] = field(default_factory=list)

    @property
    def has_tree(self) -> bool:
        return self.tree is not None

    def enclosing(self, lo: int, hi: int) -> Symbol | None:
        """Innermost symbol containing every line of lo..hi."""
        if not self.innermost or lo < 1 or lo >= len(self.innermost):
            return None
        i = self.innermost[lo]
        while i != -1 and not (self.symbols[i].start_line <= lo and self.symbols[i].end_line >= hi):
            i = self.parents[i]
        return self.symbols[i] if i != -1 else None

    def innermost_at(self, line: int) -> Symbol | None:
        if 1 <= line < len(self.innermost) and self.innermost[line] != -1:
            return self.symbols[self.innermost[line]]
        return None

    def has_error_in(self, lo: int, hi: int) -> bool:
        return any(start <= hi and end >= lo for start, end in self.error_ranges)


def parse_file(
    language: str | None,
    source: str | bytes,
    *,
    tree: Tree | None = None,
    hunks: Sequence[Hunk] | None = None,
) -> ParsedFile:
    """Parse (unless `tree` is given) and index a file. Never raises.

    With `hunks`, symbols are only collected around those hunks (every symbol that contains a
    line hunk_contexts looks at, so its answers are the same): the symbol query then visits a
    few subtrees instead of the whole file, which would cost a third of the parse itself.
    """
    text = source.decode("utf-8", errors="replace") if isinstance(source, bytes) else source
    lines = text.split("\n")
    if "\r" in text:
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if lines and lines[-1] == "" and text.endswith("\n"):
        lines.pop()
    parsed = ParsedFile(language=language, lines=lines)
    if language is None:
        return parsed
    try:
        if tree is None:
            data = source.encode("utf-8") if isinstance(source, str) else source
            tree = parse_source(language, data)
        if tree is None:
            return parsed
        parsed.tree = tree
        rows = None if hunks is None else _hunk_rows(hunks, len(lines))
        parsed.symbols, parsed.parents = _symbols_from_tree(language, tree, rows)
        parsed.error_ranges = _error_ranges(tree.root_node)
        parsed.innermost = _innermost_index(parsed.symbols, len(lines))
    except Exception as exc:  # keep the review going with plain context
        log.warning("symbol extraction failed for a %s file: %s", language, exc)
        parsed.symbols, parsed.parents, parsed.innermost = [], [], []
        parsed.error_ranges = [(1, max(1, len(lines)))]
    return parsed


def hunk_contexts(
    file: FileDiff,
    new_source: str | None,
    *,
    budget_lines: int = 120,
    tree: Tree | None = None,
    parsed: ParsedFile | None = None,
) -> list[HunkContext]:
    """One HunkContext per hunk of `file` (same order), from the file's new source.

    Pass `tree` (from parse_source on the same source) or a ParsedFile to avoid parsing again.
    Without usable syntax (no grammar, no source, a source that does not match the diff, or a
    syntax error around the hunk) the snippet is the hunk's own new-side lines.
    """
    budget = max(1, budget_lines)
    if file.status == "deleted" or not file.hunks:
        return [HunkContext(file.path, i, file.language, None) for i in range(len(file.hunks))]
    if parsed is None and new_source is not None:
        parsed = parse_file(file.language, new_source, tree=tree, hunks=file.hunks)
    if parsed is not None and not _matches_diff(file, parsed.lines):
        log.info("%s: the source does not match the diff; using plain hunk context", file.path)
        parsed = None
    out: list[HunkContext] = []
    for index, hunk in enumerate(file.hunks):
        try:
            out.append(_one_context(file, index, hunk, parsed, budget))
        except Exception as exc:  # defensive: one odd hunk must not cost the file its review
            log.warning("%s hunk %d: context failed (%s); plain hunk context", file.path, index + 1, exc)
            out.append(_plain(file, index, hunk, budget, parse_error=False))
    return out


def symbol_at(ctx: HunkContext, line: int) -> Symbol | None:
    """The innermost symbol of the hunk's context that encloses `line` (new-file numbering).

    A finding's fingerprint names this symbol, not the hunk's: a new file is one hunk whose
    enclosing symbol is none, and a hunk may span several functions."""
    around = [s for s in (*ctx.changed_symbols, ctx.enclosing) if s is not None]
    inside = [s for s in around if s.start_line <= line <= s.end_line]
    return min(inside, key=lambda s: (s.end_line - s.start_line, -s.start_line), default=None)


# --------------------------------------------------------------------------- internals


def _clamped_focus(hunk: Hunk, n: int) -> tuple[int, int]:
    lo, hi = _focus(hunk)
    return max(1, min(lo, n)), max(1, min(hi, n))


def _hunk_rows(hunks: Sequence[Hunk], n: int) -> list[tuple[int, int]]:
    """0-based half-open row ranges covering every line _one_context looks up, merged and sorted.

    Those lines are the clamped focus and the changed lines; a symbol that contains any of them
    intersects the range, so a range query finds it and all the symbols around it.
    """
    spans: list[tuple[int, int]] = []
    for hunk in hunks:
        lo, hi = _clamped_focus(hunk, n)
        changed = _changed_lines(hunk)
        if changed:
            lo, hi = min(lo, min(changed)), max(hi, max(changed))
        spans.append((max(0, lo - 2), max(0, hi) + 1))  # one line of slack on each side
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _one_context(
    file: FileDiff, index: int, hunk: Hunk, parsed: ParsedFile | None, budget: int
) -> HunkContext:
    if parsed is None or not parsed.has_tree:
        return _plain(file, index, hunk, budget, parse_error=False)
    n = len(parsed.lines)
    lo, hi = _clamped_focus(hunk, n)
    enclosing = parsed.enclosing(lo, hi)
    region = (enclosing.start_line, enclosing.end_line) if enclosing else (lo, hi)
    if parsed.has_error_in(min(region[0], lo), max(region[1], hi)):
        return _plain(file, index, hunk, budget, parse_error=True)
    changed: dict[Symbol, None] = {}
    for line in _changed_lines(hunk):
        sym = parsed.innermost_at(line)
        if sym is not None:
            changed[sym] = None
    snippet_lo, snippet_hi = _snippet_range(hunk, enclosing, (lo, hi), n, budget)
    return HunkContext(
        path=file.path,
        hunk_index=index,
        language=file.language,
        enclosing=enclosing,
        changed_symbols=sorted(changed, key=lambda s: (s.start_line, -s.end_line)),
        snippet="\n".join(parsed.lines[snippet_lo - 1 : snippet_hi]),
        snippet_start_line=snippet_lo,
    )


def _plain(file: FileDiff, index: int, hunk: Hunk, budget: int, *, parse_error: bool) -> HunkContext:
    """The hunk's new-side lines (consecutive new-file lines) as the snippet, within the budget."""
    new_side = [(ln.new_no, ln.text) for ln in hunk.lines if ln.kind != "deleted" and ln.new_no is not None]
    ctx = HunkContext(file.path, index, file.language, None, parse_error=parse_error)
    if not new_side:
        return ctx
    if len(new_side) > budget:
        lo, _hi = _focus(hunk)
        first = max(0, min(lo - new_side[0][0] - 3, len(new_side) - budget))
        new_side = new_side[first : first + budget]
    ctx.snippet = "\n".join(text for _, text in new_side)
    ctx.snippet_start_line = new_side[0][0]
    return ctx


def _focus(hunk: Hunk) -> tuple[int, int]:
    """New-file lines the hunk changes: its added lines, or where its deleted lines were."""
    added = hunk.added_line_numbers()
    if added:
        return min(added), max(added)
    anchors = list(_deletion_anchors(hunk))
    if anchors:
        return min(anchors), max(anchors)
    end = hunk.new_start + max(hunk.new_len, 1) - 1
    return max(1, hunk.new_start), max(1, end)


def _deletion_anchors(hunk: Hunk) -> list[int]:
    """For each deleted line, the new-file line just before the gap it leaves."""
    anchors: list[int] = []
    last_new = hunk.new_start - 1 if hunk.new_len else hunk.new_start
    for ln in hunk.lines:
        if ln.new_no is not None:
            last_new = ln.new_no
        elif ln.kind == "deleted":
            anchors.append(max(1, last_new))
    return anchors


def _changed_lines(hunk: Hunk) -> list[int]:
    added = hunk.added_line_numbers()
    return added if added else _deletion_anchors(hunk)[:1]


def _snippet_range(
    hunk: Hunk, enclosing: Symbol | None, focus: tuple[int, int], n: int, budget: int
) -> tuple[int, int]:
    if enclosing is not None and enclosing.end_line - enclosing.start_line + 1 <= budget:
        return enclosing.start_line, min(enclosing.end_line, n)
    h_lo = max(1, hunk.new_start)
    h_hi = max(h_lo, hunk.new_start + hunk.new_len - 1)
    if h_hi - h_lo + 1 >= budget:
        lo = max(h_lo, focus[0] - 3)
        hi = lo + budget - 1
    else:
        pad = (budget - (h_hi - h_lo + 1)) // 2
        lo, hi = h_lo - pad, h_hi + pad
        if enclosing is not None:  # stay inside the (too long) function
            lo, hi = max(lo, enclosing.start_line), min(hi, enclosing.end_line)
    lo = max(1, min(lo, n))
    return lo, max(lo, min(hi, n))


def _matches_diff(file: FileDiff, lines: list[str]) -> bool:
    """Whether `lines` is the file the diff produces (a stale source would mislabel everything)."""
    checked = mismatched = 0
    for hunk in file.hunks:
        for ln in hunk.lines:
            if ln.kind == "deleted" or ln.new_no is None:
                continue
            checked += 1
            if ln.new_no > len(lines) or lines[ln.new_no - 1] != ln.text:
                mismatched += 1
    return checked == 0 or mismatched * 5 <= checked


def _symbols_from_tree(
    language: str, tree: Tree, rows: Sequence[tuple[int, int]] | None = None
) -> tuple[list[Symbol], list[int]]:
    """Symbols (outer before inner) and their parents; with `rows` (0-based half-open row ranges),
    only the symbols that intersect one of them."""
    query = _query(language)
    if query is None:
        return [], []
    if rows is None:
        batches = [QueryCursor(query).captures(tree.root_node)]
    else:
        batches = []
        cursor = QueryCursor(query)
        for first, stop in rows:
            cursor.set_point_range((first, 0), (stop, 0))
            batches.append(cursor.captures(tree.root_node))
    raw: list[tuple[int, int, int, int, str, str]] = []
    seen: set[tuple[int, int]] = set()
    for capture, nodes in (item for captures in batches for item in captures.items()):
        capture_kind = capture.removeprefix("def.")
        for node in nodes:
            kind = capture_kind
            if kind == "decorated":
                definition = node.child_by_field_name("definition")
                if definition is None or definition.type not in _DECORATED_KINDS:
                    continue
                node, kind = definition, _DECORATED_KINDS[definition.type]
            key = (node.start_byte, node.end_byte)
            if key in seen:
                continue
            seen.add(key)
            start_node = node
            wrapper = node.parent if language == "python" else None
            if wrapper is not None and wrapper.type == "decorated_definition":
                start_node = wrapper  # Python: include the decorators
            start = start_node.start_point.row + 1
            end = node.end_point.row + (0 if node.end_point.column == 0 and node.end_point.row > 0 else 1)
            raw.append((start, max(start, end), node.start_byte, node.end_byte, kind, _name(language, node)))
    # Outer before inner; equal line ranges by byte span (outer first), never by the order the
    # captures came in (that depends on the ranges queried).
    raw.sort(key=lambda r: (r[0], -r[1], r[2], -r[3]))
    found: list[Symbol] = []
    parents: list[int] = []
    stack: list[int] = []
    for start, end, _first_byte, _end_byte, kind, name in raw:
        # The parent is the nearest symbol that contains this one's lines; one that merely ends
        # on the line this one starts on (`} function next() {`) is a sibling, not a parent.
        while stack and not (found[stack[-1]].start_line <= start and found[stack[-1]].end_line >= end):
            stack.pop()
        parent = stack[-1] if stack else -1
        in_container = parent != -1 and found[parent].kind in _CONTAINERS
        qualified = language in ("c", "cpp") and "::" in name  # int Foo::bar() {...}
        if kind == "function" and (in_container or qualified):
            kind = "method"
        found.append(Symbol(name=name, kind=kind, start_line=start, end_line=end))
        parents.append(parent)
        stack.append(len(found) - 1)
    return found, parents


def _text(node: Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", errors="replace")


def _name(language: str, node: Node) -> str:
    kind = node.type
    if kind == "function_definition" and language in ("c", "cpp"):
        name = _c_function_name(node)
    elif kind == "method_declaration" and language == "go":
        name = _text(node.child_by_field_name("name"))
        recv = node.child_by_field_name("receiver")
        params = [c for c in recv.named_children if c.type == "parameter_declaration"] if recv else []
        if params:
            recv_type = _text(params[0].child_by_field_name("type")).lstrip("*").split("[", 1)[0]
            name = f"{recv_type}.{name}" if recv_type else name
    elif kind == "impl_item":
        target = _text(node.child_by_field_name("type"))
        trait = node.child_by_field_name("trait")
        name = f"{_text(trait)} for {target}" if trait is not None else target
    else:
        name = _text(node.child_by_field_name("name"))
    name = " ".join(name.split())
    return name[:_MAX_NAME] if name else "<anonymous>"


def _c_function_name(node: Node) -> str:
    declarator = node.child_by_field_name("declarator")
    for _ in range(16):  # pointer / reference / parenthesized declarators wrap the function one
        if declarator is None or declarator.type == "function_declarator":
            break
        inner = declarator.child_by_field_name("declarator")
        if inner is None:
            inner = next((c for c in declarator.named_children if "declarator" in c.type), None)
        declarator = inner
    if declarator is None:
        return ""
    return _text(declarator.child_by_field_name("declarator"))


def _error_ranges(root: Node) -> list[tuple[int, int]]:
    """Ranges of ERROR / MISSING nodes, descending only into subtrees that contain one."""
    if not root.has_error:
        return []
    ranges: list[tuple[int, int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            ranges.append((node.start_point.row + 1, node.end_point.row + 1))
            continue
        stack.extend(child for child in node.children if child.has_error)
    return ranges


def _innermost_index(found: list[Symbol], n_lines: int) -> list[int]:
    """Per line (1-based), the index of the innermost symbol covering it; -1 outside any."""
    index = [-1] * (n_lines + 2)
    for i, sym in enumerate(found):  # outer symbols come first, so inner ones overwrite them
        lo, hi = max(1, sym.start_line), min(sym.end_line, n_lines + 1)
        if hi >= lo:
            index[lo : hi + 1] = [i] * (hi - lo + 1)
    return index
