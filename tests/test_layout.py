"""The layout shows the architecture and stays so: pure packages never import I/O ones, and the
README's Layout section names exactly the subpackages and modules in the tree.

Why a test: a layout is only a description until something fails when it stops being true. One
`from reviewbot.app.store import ...` inside a pure stage (even inside a function) would make the
review stages need a database to be tested; this catches it at the import, by reading the source.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "reviewbot"

#: Data in, data out: no network, no database, no process-wide state of their own.
PURE = {"core", "review", "filter"}
#: The outside world: GitHub, HTTP, the database, LLM servers, git, the learning loop's store.
IO = {"app", "adapters", "learning"}
#: The CLI sits on top and may import anything.
TOP = {"commands"}


def _subpackages() -> set[str]:
    return {p.parent.name for p in PKG.glob("*/__init__.py")}


def _modules(package: str) -> set[str]:
    return {p.stem for p in (PKG / package).glob("*.py") if p.stem != "__init__"}


def _imported(path: Path) -> set[str]:
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return _imported_source(path.read_text(encoding="utf-8"), package)


def _imported_source(text: str, package: str) -> set[str]:
    """Every reviewbot module a source imports at run time: at the top or inside a function,
    absolute or relative. Imports under `if TYPE_CHECKING:` are left out: they name a type for the
    checker and load nothing when the stage runs."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                module = ".".join(
                    parts[: len(parts) - node.level + 1] + ([node.module] if node.module else [])
                )
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {name for name in found if name == "reviewbot" or name.startswith("reviewbot.")}


def _runtime_nodes(node: ast.AST) -> list[ast.AST]:
    """All nodes under `node`, minus the bodies of `if TYPE_CHECKING:` blocks."""
    out: list[ast.AST] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and ast.unparse(child.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}:
            for orelse in child.orelse:
                out.append(orelse)
                out.extend(_runtime_nodes(orelse))
            continue
        out.append(child)
        out.extend(_runtime_nodes(child))
    return out


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in _subpackages() else None


def test_every_subpackage_is_classified() -> None:
    assert _subpackages() == PURE | IO | TOP


def test_only_the_cli_lives_beside_the_subpackages() -> None:
    loose = {p.stem for p in PKG.glob("*.py")}
    assert loose == {"__init__", "__main__", "cli"}, "place every module in a subpackage"


@pytest.mark.parametrize("package", sorted(PURE))
def test_pure_packages_import_only_pure_packages(package: str) -> None:
    offences = []
    for path in sorted((PKG / package).rglob("*.py")):
        for module in sorted(_imported(path)):
            if _package_of(module) in IO | TOP or module.split(".")[1:2] == ["cli"]:
                offences.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offences, "a pure stage imports I/O (or the CLI):\n" + "\n".join(offences)


def test_the_import_reader_sees_imports_inside_functions() -> None:
    """The check above is only as good as this reader: it must see the imports that hide."""
    text = (
        "def f():\n    from reviewbot.app import store\n    import reviewbot.adapters.llm\n"
        "from . import diff\nif TYPE_CHECKING:\n    from reviewbot.app.records import Row\n"
    )
    found = _imported_source(text, "reviewbot.review")
    assert {"reviewbot.app.store", "reviewbot.adapters.llm", "reviewbot.review.diff"} <= found
    assert "reviewbot.app.records" not in found
    assert {_package_of(m) for m in found} >= {"app", "adapters", "review"}


def _readme_layout() -> dict[str, set[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    for package, modules in re.findall(r"^- `reviewbot/(\w+)/`[^:]*:(.*)$", section, re.M):
        listed[package] = set(re.findall(r"`(\w+)`", modules))
    return listed


def test_the_readme_layout_names_every_subpackage_and_module() -> None:
    listed = _readme_layout()
    assert set(listed) == _subpackages(), "README's Layout section and reviewbot/ disagree on packages"
    for package, modules in listed.items():
        assert modules == _modules(package), f"README's Layout lists other modules for {package}/"
