"""Which language a path is in, and the tree-sitter grammar for it.

Grammars come from the per-language wheels (tree-sitter-python, ...), imported lazily so that a
missing or broken grammar only disables that language. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import PurePosixPath

from tree_sitter import Language, Parser

#: language name -> (module, function returning the grammar pointer)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "ruby": ("tree_sitter_ruby", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}

_EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".rb": "ruby",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
}

#: Rule packs and configs may name a family; "typescript" rules also apply to tsx, etc.
LANGUAGE_FAMILIES: dict[str, set[str]] = {
    "javascript": {"javascript", "typescript", "tsx"},
    "typescript": {"typescript", "tsx"},
    "tsx": {"tsx"},
}

SUPPORTED: tuple[str, ...] = tuple(_GRAMMARS)


def language_for_path(path: str) -> str | None:
    """The language name for a file path, or None when we have no grammar for it."""
    return _EXTENSIONS.get(PurePosixPath(path).suffix.lower())


def matches_language(language: str | None, wanted: str) -> bool:
    """Whether a file in `language` is covered by a rule or setting naming `wanted`."""
    if language is None:
        return False
    return language == wanted or language in LANGUAGE_FAMILIES.get(wanted, set())


@cache
def grammar(language: str) -> Language | None:
    """The tree-sitter Language for `language`, or None if its wheel is not importable."""
    spec = _GRAMMARS.get(language)
    if spec is None:
        return None
    module_name, attr = spec
    try:
        module = importlib.import_module(module_name)
        return Language(getattr(module, attr)())
    except (ImportError, AttributeError, ValueError):
        return None


def parser(language: str) -> Parser | None:
    """A fresh parser for `language` (parsers are cheap; they are not thread-safe to share)."""
    lang = grammar(language)
    return Parser(lang) if lang is not None else None
