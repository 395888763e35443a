"""Importing reviewbot from one exported tree only, in the subprocess a bench runs on it.

Benches that compare an older commit (exported with `git archive`) with this checkout run code on
the export with its root first on sys.path. The venv's editable install of reviewbot still answers
every `reviewbot.*` module the export lacks with this checkout's module. Since the layout move
(1e21abc: modules into core/, review/, ...) and the config and rules splits after it, an export
from before them lacks every new name, so `from reviewbot.review.prompt import ...` on it ran
this checkout's prompt.py: the "before" and "after" figures were the same code, and nothing failed.

`pin(root)` is Python source for the start of such a subprocess: `root` first on sys.path, and
each new module name the tree lacks bound to the module it came from (MOVED), so the same
statements run on either layout. `check_pinned()`, defined by it, raises SystemExit when any
reviewbot module was loaded from outside `root`; `outside_modules()` lists them.
"""

from __future__ import annotations

from pathlib import Path

#: module as the benches name it -> where it lived before, newest first
MOVED: dict[str, tuple[str, ...]] = {
    "reviewbot.core.config": ("reviewbot.config",),
    "reviewbot.core.config_schema": ("reviewbot.core.config", "reviewbot.config"),
    "reviewbot.review.context": ("reviewbot.context",),
    "reviewbot.review.diff": ("reviewbot.diff",),
    "reviewbot.review.prompt": ("reviewbot.prompt",),
    "reviewbot.review.rules": ("reviewbot.rules",),
    "reviewbot.review.rule_selection": ("reviewbot.review.rules", "reviewbot.rules"),
}

_PIN = r"""
import importlib as _importlib
import os as _os
import sys as _sys
import types as _types

_ROOT = {root!r}
_MOVED = {moved!r}
_sys.path.insert(0, _ROOT)


def _in_tree(name):
    base = _os.path.join(_ROOT, *name.split("."))
    return _os.path.isfile(base + ".py") or _os.path.isfile(_os.path.join(base, "__init__.py"))


def _package(name):
    if name in _sys.modules:
        return _sys.modules[name]
    if _in_tree(name):
        return _importlib.import_module(name)
    stand_in = _sys.modules[name] = _types.ModuleType(name)  # no __path__: nothing else found in it
    parent, _, leaf = name.rpartition(".")
    setattr(_package(parent), leaf, stand_in)
    return stand_in


for _new, _olds in _MOVED.items():
    _old = next((o for o in _olds if _in_tree(o)), None)
    if not _in_tree(_new) and _old is not None:
        _parent, _, _leaf = _new.rpartition(".")
        _sys.modules[_new] = _importlib.import_module(_old)
        setattr(_package(_parent), _leaf, _sys.modules[_new])


def outside_modules():
    root = _os.path.join(_os.path.realpath(_ROOT), "")
    return sorted(
        f"{{name}} ({{module.__file__}})"
        for name, module in list(_sys.modules.items())
        if name.split(".")[0] == "reviewbot"
        and getattr(module, "__file__", None)
        and not _os.path.realpath(module.__file__).startswith(root)
    )


def check_pinned():
    outside = outside_modules()
    if outside:
        raise SystemExit(f"imported from outside {{_ROOT}}: {{', '.join(outside)}}")
"""


def pin(root: Path) -> str:
    """Python source: import reviewbot from `root` only (see the module docstring)."""
    return _PIN.format(root=str(root), moved=MOVED)
