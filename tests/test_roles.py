"""File roles and the rule gating built on them (issue #10: rule hits posted in test code)."""

from __future__ import annotations

import pytest

from reviewbot.core.roles import file_role
from reviewbot.review.rule_selection import all_added
from reviewbot.review.rules import RuleSet, load_builtin_rules
from reviewbot.review.rulespec import RuleSpec


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("src/click/core.py", "source"),
        ("tests/test_basic.py", "test"),
        ("pkg/test_util.py", "test"),
        ("pkg/util_test.py", "test"),
        ("conftest.py", "test"),
        ("cobra_test.go", "test"),
        ("doc/md_docs_test.go", "test"),
        ("example_test.go", "example"),
        ("test/app.router.js", "test"),
        ("lib/router.spec.ts", "test"),
        ("src/__tests__/a.js", "test"),
        ("src/test/java/org/FooTest.java", "test"),
        ("examples/auth/index.js", "example"),
        ("docs/examples/run.py", "example"),
        ("testdata/golden.go", "fixture"),
        ("tests/fixtures/app.py", "fixture"),
        ("vendor/github.com/x/y.go", "vendored"),
        ("web/node_modules/lodash/index.js", "vendored"),
        ("api/v1/service.pb.go", "generated"),
        ("proto/service_pb2.py", "generated"),
        ("zz_generated.deepcopy.go", "generated"),
        ("static/app.min.js", "generated"),
        ("docs/conf.py", "docs"),
        ("example.py", "source"),
        ("latest.py", "source"),
        ("contest/runner.py", "source"),
        (None, "source"),
    ],
)
def test_file_role(path: str | None, role: str) -> None:
    assert file_role(path) == role


PY_TLS = "import requests\n\ndef ping(url):\n    return requests.get(url, verify=False, timeout=5)\n"


def _tls_rules() -> list[RuleSpec]:
    return [
        r for r in load_builtin_rules() if r.query and "python" in r.languages and r.category == "security"
    ]


def test_security_rules_are_off_in_tests_examples_and_fixtures_by_default() -> None:
    ruleset = RuleSet(rules=_tls_rules())
    fired = ruleset.run(all_added("svc/client.py", PY_TLS), PY_TLS)
    assert fired, "the security rule must fire in source code"
    for path in (
        "tests/test_client.py",
        "examples/client.py",
        "tests/fixtures/client.py",
        "vendor/x/client.py",
    ):
        assert ruleset.run(all_added(path, PY_TLS), PY_TLS) == [], path


def test_a_rule_opts_in_to_test_code() -> None:
    rule = next(
        r
        for r in _tls_rules()
        if r.id
        in {c.rule_id for c in RuleSet(rules=_tls_rules()).run(all_added("svc/client.py", PY_TLS), PY_TLS)}
    )
    opted = rule.model_copy(update={"roles": ["source", "test"]})
    found = RuleSet(rules=[opted]).run(all_added("tests/test_client.py", PY_TLS), PY_TLS)
    assert [c.rule_id for c in found] == [rule.id]
    assert RuleSet(rules=[opted]).run(all_added("examples/client.py", PY_TLS), PY_TLS) == []


def test_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="roles"):
        RuleSpec(
            id="x",
            languages=["python"],
            severity="high",
            category="bug",
            message="m",
            query="(identifier) @match",
            roles=["tests"],
        )


def test_style_rules_still_run_in_tests_but_not_in_generated_code() -> None:
    rule = RuleSpec(
        id="py-any-ident",
        languages=["python"],
        severity="nit",
        category="style",
        message="m",
        query='((identifier) @match (#eq? @match "requests"))',
    )
    rs = RuleSet(rules=[rule])
    assert rs.run(all_added("tests/test_x.py", PY_TLS), PY_TLS)
    assert rs.run(all_added("proto/x_pb2.py", PY_TLS), PY_TLS) == []
