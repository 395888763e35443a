"""A file's role in its project, from its path and its language's conventions.

Why: a finding means different things in different files. A discarded error or `verify=False`
in a test, an example or a fixture is usually deliberate, and generated or vendored code is not
the author's to fix. Rules gate on the role (security and bug rules are off outside `source`
unless a rule opts in) and the acceptance model sees it as a feature. Pure, no I/O.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

Role = Literal["source", "test", "example", "fixture", "generated", "vendored", "docs"]

#: Every role, the default first.
ROLES: tuple[Role, ...] = ("source", "test", "example", "fixture", "generated", "vendored", "docs")

_VENDORED_DIRS = frozenset(
    {
        "vendor",
        "vendored",
        "third_party",
        "third-party",
        "thirdparty",
        "node_modules",
        "bower_components",
        "external",
        "_vendor",
    }
)
_GENERATED_DIRS = frozenset({"generated", "gen", "__generated__", "dist", "build"})
_FIXTURE_DIRS = frozenset(
    {
        "fixtures",
        "fixture",
        "testdata",
        "test_data",
        "__fixtures__",
        "__mocks__",
        "mocks",
        "snapshots",
        "__snapshots__",
        "golden",
        "goldens",
    }
)
_TEST_DIRS = frozenset(
    {
        "test",
        "tests",
        "testing",
        "__tests__",
        "spec",
        "specs",
        "e2e",
        "integration_test",
        "integration_tests",
        "integration",
        "acceptance_tests",
        "it",
    }
)
_EXAMPLE_DIRS = frozenset(
    {
        "example",
        "examples",
        "_example",
        "_examples",
        "sample",
        "samples",
        "demo",
        "demos",
        "cookbook",
        "tutorial",
        "tutorials",
    }
)
_DOCS_DIRS = frozenset({"docs", "doc", "documentation"})

# File-name conventions per language (the name alone, case-insensitive).
# Searched (not matched) and anchored at the end, without a leading `.*`: a `.*X$` tried at every
# position is quadratic on a long name (the fuzzer's module-regex check).
_TEST_NAME = re.compile(
    r"""(
        ^test_[^/]*\.py$ | _test\.py$ | ^conftest\.py$       # pytest
      | _test\.go$                                          # go test
      | \.(test|spec)\.[cm]?[jt]sx?$                        # jest, mocha, vitest
      | (Test|Tests|IT)\.(java|kt|scala)$ | ^Test[^/]*\.(java|kt)$   # JUnit
      | _spec\.rb$ | _test\.rb$                          # rspec, minitest
      | Tests?\.cs$ | _test\.(c|cc|cpp|rs)$
    )""",
    re.VERBOSE,
)
_GENERATED_NAME = re.compile(
    r"""(
        \.pb\.go$ | _pb2(_grpc)?\.pyi?$ | \.pb\.(cc|h)$ | _generated\.[A-Za-z0-9]+$ | \.gen\.[A-Za-z0-9]+$
      | _gen\.go$ | ^zz_generated[^/]*\.go$ | \.min\.(js|css)$ | -lock\.json$ | \.lock$
      | ^package-lock\.json$ | ^go\.sum$ | \.designer\.cs$
    )""",
    re.VERBOSE,
)
_EXAMPLE_NAME = re.compile(r"^(example|examples|demo|sample)_|_example\.[A-Za-z0-9]+$")


@lru_cache(maxsize=1 << 14)
def file_role(path: str | None) -> Role:
    """The role of `path` (a repo-relative POSIX path); 'source' when nothing says otherwise.

    Order matters: vendored and generated code first (whatever directory they sit in), then
    fixtures (test data is not test code), tests, examples, docs.
    """
    if not path:
        return "source"
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if not parts:
        return "source"
    name = parts[-1]
    dirs = {d.lower() for d in parts[:-1]}
    lname = name.lower()
    if dirs & _VENDORED_DIRS:
        return "vendored"
    if dirs & _GENERATED_DIRS or _GENERATED_NAME.search(name) or _GENERATED_NAME.search(lname):
        return "generated"
    if dirs & _FIXTURE_DIRS:
        return "fixture"
    if _TEST_NAME.search(name) or dirs & _TEST_DIRS:
        # Go's runnable examples live in *_test.go files named example_test.go / example_*_test.go
        if lname.startswith("example") and lname.endswith("_test.go"):
            return "example"
        return "test"
    if dirs & _EXAMPLE_DIRS or _EXAMPLE_NAME.search(lname):
        return "example"
    if dirs & _DOCS_DIRS:
        return "docs"
    return "source"


def role_tokens(path: str | None) -> str:
    """`role=<role>`: the categorical token the acceptance model hashes."""
    return f"role={file_role(path)}"
