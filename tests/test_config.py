"""The per-repo config: merge order, every error path with its file:line, helpers, schema, docs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reviewbot.core.config import CONFIG_PATH, ConfigError, load_config
from reviewbot.core.config_schema import (
    DEFAULT_EXCLUDE,
    DEFAULT_PASSES,
    RepoConfig,
    config_json_schema,
    config_schema_text,
)
from reviewbot.core.domain import SEVERITIES
from reviewbot.core.globs import glob_match
from reviewbot.filter.severity import meets_minimum

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "fixtures" / "configs"


def _text(name: str) -> str:
    return (CONFIGS / name).read_text()


def _errors(text: str | None, org: str | None = None, **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(text, org, **kw)
    assert str(info.value) == "\n".join(info.value.messages)
    assert [str(i) for i in info.value.issues] == info.value.messages
    return info.value.messages


# ------------------------------------------------------------------------------------ defaults/merge


@pytest.mark.parametrize("text", [None, "", "\n\n", "# only a comment\n", "---\n"])
def test_no_or_empty_file_means_defaults(text: str | None) -> None:
    cfg = load_config(text)
    assert cfg == RepoConfig()
    assert cfg.enabled is True
    assert cfg.paths.include == ["**"]
    assert cfg.paths.exclude == list(DEFAULT_EXCLUDE)
    assert cfg.languages is None
    assert cfg.triggers.drafts is False
    assert cfg.triggers.skip_authors == ["*[bot]", "dependabot*", "renovate*"]
    assert cfg.triggers.skip_labels == ["skip-review", "reviewbot:skip"]
    assert (cfg.min_severity, cfg.min_severity_by_path, cfg.max_comments) == ("low", {}, 10)
    assert (cfg.min_acceptance, cfg.target_precision, cfg.passes, cfg.llm.passes) == (None, None, None, None)
    assert (len(cfg.pass_specs()), cfg.verify) == (DEFAULT_PASSES, True)
    assert cfg.rules.model_dump() == {"disable": [], "enable": [], "severity": {}, "custom": []}
    assert cfg.path_instructions == []
    assert (cfg.llm.model, cfg.llm.temperature, cfg.llm.max_tokens_per_request) == (None, 0.0, 12000)
    assert cfg.exploration_rate == 0.05


def test_good_fixture_loads_every_key() -> None:
    cfg = load_config(_text("good.yml"), filename="good.yml")
    assert cfg.paths.include == ["src/**", "lib/**", "*.py"]
    assert cfg.languages == ["python", "go", "typescript"]
    assert cfg.triggers.drafts is True
    assert cfg.min_severity == "medium"
    assert cfg.min_severity_by_path == {"tests/**": "high", "src/core/**": "low"}
    assert (cfg.max_comments, cfg.target_precision, cfg.min_acceptance, cfg.passes) == (7, 0.8, None, 2)
    assert len(cfg.pass_specs()) == 2  # the deprecated count still counts
    assert cfg.rules.severity == {"py-eval-exec": "critical"}
    assert [r.id for r in cfg.rules.custom] == ["no-requests-without-timeout"]
    assert cfg.rules.custom[0].instruction.startswith("Flag calls")  # type: ignore[union-attr]
    assert len(cfg.path_instructions) == 2
    assert (cfg.llm.model, cfg.llm.temperature, cfg.llm.max_tokens_per_request) == ("gpt-4o", 0.2, 8000)
    assert cfg.exploration_rate == 0.1


def test_merge_precedence_defaults_then_org_then_repo() -> None:
    org = _text("org.yml")
    repo = "max_comments: 2\nllm:\n  temperature: 0.5\ntriggers:\n  skip_labels: [later]\n"
    cfg = load_config(repo, org)
    assert cfg.max_comments == 2  # repo beats org (5) and default (10)
    assert cfg.min_severity == "high"  # org beats default, repo silent
    assert len(cfg.pass_specs()) == DEFAULT_PASSES  # nobody set it: default
    # mappings merge key by key across layers
    assert cfg.llm.temperature == 0.5  # repo
    assert cfg.llm.model == "gpt-4o-mini"  # org
    assert cfg.llm.max_tokens_per_request == 12000  # default
    assert cfg.triggers.drafts is False  # org
    assert cfg.triggers.skip_authors == ["*[bot]", "dependabot*", "renovate*"]  # default
    # lists replace, they do not append
    assert cfg.triggers.skip_labels == ["later"]


def test_org_alone_and_repo_alone() -> None:
    assert load_config(None, _text("org.yml")).max_comments == 5
    assert load_config("max_comments: 3", None).max_comments == 3
    assert load_config("max_comments: 3", "").max_comments == 3


def test_repo_list_replaces_default_exclude() -> None:
    cfg = load_config("paths:\n  exclude: ['docs/**']\n")
    assert cfg.paths.exclude == ["docs/**"]
    assert cfg.paths.include == ["**"]
    assert cfg.path_included("package-lock.json")  # the default list was replaced, by request


def test_null_resets_an_org_value() -> None:
    cfg = load_config("llm:\n  model: null\n", "llm:\n  model: big-model\n")
    assert cfg.llm.model is None


def test_one_threshold_per_layer_repo_choice_replaces_org_choice() -> None:
    cfg = load_config("target_precision: 0.9\n", "min_acceptance: 0.4\n")
    assert (cfg.min_acceptance, cfg.target_precision) == (None, 0.9)
    cfg = load_config("min_acceptance: 0.3\n", "target_precision: 0.7\n")
    assert (cfg.min_acceptance, cfg.target_precision) == (0.3, None)


# ------------------------------------------------------------------------------------------- errors


def test_bad_types_fixture_reports_each_key_with_its_line() -> None:
    f = "fixtures/configs/bad-types.yml"
    assert _errors(_text("bad-types.yml"), filename=f) == [
        f"{f}:1: enabled: must be true or false (got 'maybe')",
        f"{f}:3: paths.include: must be a list (got 'src/**')",
        f"{f}:4: max_comments: must be >= 0 (got -1)",
        f"{f}:5: passes: must be <= 5 (got 9)",
        f"{f}:6: min_severity: must be one of 'critical', 'high', 'medium', 'low' or 'nit' (got 'urgent')",
        f"{f}:8: llm.temperature: must be <= 2.0 (got 3)",
        f"{f}:9: exploration_rate: must be <= 0.5 (got 0.9)",
    ]


def test_default_filename_in_messages() -> None:
    assert _errors("\n\nmax_comments: -1\n") == [f"{CONFIG_PATH}:3: max_comments: must be >= 0 (got -1)"]
    assert CONFIG_PATH == ".github/reviewbot.yml"


def test_unknown_keys_get_did_you_mean() -> None:
    assert _errors(_text("unknown-key.yml"), filename="u.yml") == [
        "u.yml:1: max_coments: unknown key 'max_coments' (did you mean 'max_comments'?)",
        "u.yml:3: triggers.draft: unknown key 'draft' (did you mean 'drafts'?)",
    ]


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    [msg] = _errors("llm:\n  zzz: 1\n")
    assert msg == (
        ".github/reviewbot.yml:2: llm.zzz: unknown key 'zzz' "
        "(allowed: model, temperature, max_tokens_per_request, passes)"
    )


def test_unknown_key_inside_a_list_item() -> None:
    text = "path_instructions:\n  - path: 'a/**'\n    instructions: x\n  - path: b\n    instruction: y\n"
    assert _errors(text) == [
        ".github/reviewbot.yml:4: path_instructions[1].instructions: is required",
        ".github/reviewbot.yml:5: path_instructions[1].instruction: unknown key 'instruction' "
        "(did you mean 'instructions'?)",
    ]
    text = "rules:\n  custom:\n    - id: x\n      languages: [go]\n      severity: low\n"
    text += "      category: bug\n      message: m\n      instruction: i\n      sevrity: high\n"
    assert _errors(text)[-1].endswith(
        "rules.custom[0].sevrity: unknown key 'sevrity' (did you mean 'severity'?)"
    )


def test_broken_yaml_names_the_line() -> None:
    [msg] = _errors(_text("broken-yaml.yml"), filename="b.yml")
    assert msg.startswith("b.yml:4: invalid YAML: ")
    [msg] = _errors("enabled: true\n\tpasses: 2\n", filename="t.yml")
    assert re.match(r"t\.yml:2: invalid YAML: .*'\\t'", msg)
    [msg] = _errors("a: 1\n---\nb: 2\n", filename="d.yml")
    assert msg.startswith("d.yml:2: invalid YAML: ")


def test_file_must_be_a_mapping() -> None:
    assert _errors(_text("not-a-mapping.yml"), filename="n.yml") == [
        "n.yml:1: the file must be a mapping of keys, got a list"
    ]
    assert _errors("\n42\n", filename="n.yml") == ["n.yml:2: the file must be a mapping of keys, got '42'"]


def test_duplicate_keys_are_errors() -> None:
    assert _errors(_text("duplicate-key.yml"), filename="d.yml") == [
        "d.yml:3: max_comments: duplicate key (first set on line 1)"
    ]
    assert _errors("llm:\n  model: a\n  model: b\n", filename="d.yml") == [
        "d.yml:3: llm.model: duplicate key (first set on line 2)"
    ]


def test_both_thresholds_in_one_file() -> None:
    assert _errors(_text("both-thresholds.yml"), filename="t.yml") == [
        "t.yml:3: target_precision: set either min_acceptance or target_precision, not both"
    ]


def test_rules_errors() -> None:
    f = "r.yml"
    assert _errors(_text("bad-rules.yml"), filename=f) == [
        f"{f}:3: rules.severity.py-eval: must be one of 'critical', 'high', 'medium', 'low' or 'nit' "
        "(got 'extreme')",
        f"{f}:5: rules.custom[0].id: must match ^[a-z0-9][a-z0-9_.-]*$ (got 'Bad Id')",
        f"{f}:6: rules.custom[0].languages: unknown language 'pyton' (did you mean 'python'?)",
        f"{f}:11: rules.custom[1]: a rule needs a 'query', an 'instruction', or both",
        f"{f}:16: languages[1]: unknown language 'cobol' (known: python, javascript, typescript, tsx, "
        "go, rust, java, ruby, c, cpp)",
    ]


def test_duplicate_custom_rule_ids() -> None:
    rule = "    - id: dup\n      languages: [go]\n      severity: low\n      category: bug\n"
    rule += "      message: m\n      instruction: i\n"
    [msg] = _errors("rules:\n  custom:\n" + rule + rule)
    assert msg == ".github/reviewbot.yml:2: rules.custom: custom rule id 'dup' is used twice"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_comments: 1.5", "max_comments: must be a whole number (got 1.5)"),
        ("max_comments: true", "max_comments: must be a whole number (got true)"),
        ("max_comments: '5'", "max_comments: must be a whole number (got '5')"),
        ("enabled: 1", "enabled: must be true or false (got 1)"),
        ("paths: null", "paths: must be a mapping of keys (got null)"),
        ("paths: [a]", "paths: must be a mapping of keys (got a list)"),
        ("passes: 0", "passes: must be >= 1 (got 0)"),
        ("min_acceptance: 1.5", "min_acceptance: must be <= 1.0 (got 1.5)"),
        ("min_acceptance: -0.1", "min_acceptance: must be >= 0.0 (got -0.1)"),
        ("target_precision: 0", "target_precision: must be > 0.0 (got 0)"),
        ("target_precision: high", "target_precision: must be a number (got 'high')"),
        ("exploration_rate: -1", "exploration_rate: must be >= 0.0 (got -1)"),
        ("llm: {max_tokens_per_request: 0}", "llm.max_tokens_per_request: must be >= 1 (got 0)"),
        ("llm: {model: 4}", "llm.model: must be a string (got 4)"),
        ("languages: python", "languages: must be a list (got 'python')"),
        ("languages: [pyhton]", "languages[0]: unknown language 'pyhton' (did you mean 'python'?)"),
        ("min_severity_by_path: {'src/**': 3}", "min_severity_by_path.src/**: must be one of"),
        ("min_severity_by_path: ['src/**']", "min_severity_by_path: must be a mapping of keys (got a list)"),
        ("triggers: {skip_labels: skip}", "triggers.skip_labels: must be a list (got 'skip')"),
        ("rules: {disable: [1]}", "rules.disable[0]: must be a string (got 1)"),
        ("path_instructions: [{path: '', instructions: x}]", "path_instructions[0].path: must not be empty"),
    ],
)
def test_each_validation_error_path(text: str, expected: str) -> None:
    [msg] = _errors(text, filename="x.yml")
    assert msg.startswith(f"x.yml:1: {expected}")


def test_error_in_list_item_points_at_the_item_line() -> None:
    text = "paths:\n  include:\n    - src/**\n    - 3\n"
    assert _errors(text, filename="x.yml") == ["x.yml:4: paths.include[1]: must be a string (got 3)"]


def test_errors_are_attributed_to_the_file_that_set_the_value() -> None:
    org = "max_comments: 4\n\npasses: 7\nfoo: 1\n"
    repo = "enabled: true\nmax_comments: -2\n"
    msgs = _errors(repo, org, filename="repo.yml", org_filename="org.yml")
    assert msgs[:2] == [
        "repo.yml:2: max_comments: must be >= 0 (got -2)",
        "org.yml:3: passes: must be <= 5 (got 7)",
    ]
    assert msgs[2].startswith("org.yml:4: foo: unknown key 'foo' (allowed: enabled, paths, ")
    assert len(msgs) == 3
    # A bad org value the repo overrides is no longer part of the result.
    assert load_config("passes: 2\n", "passes: 9\n").passes == 2


def test_yaml_errors_in_both_files_are_all_reported() -> None:
    msgs = _errors("a: [\n", "b: {\n", filename="repo.yml", org_filename="org.yml")
    assert [m.split(": ")[0] for m in msgs] == ["org.yml:2", "repo.yml:2"]


def test_yaml_merge_keys_and_anchors_work() -> None:
    text = "base: &b\n  temperature: 0.3\nllm:\n  <<: *b\n  model: m\n"
    # `base` is not a key we know: the anchor trick needs a known key, so this is an error...
    assert _errors(text)[0].startswith(".github/reviewbot.yml:1: base: unknown key 'base'")
    cfg = load_config("llm: &l {model: m, temperature: 0.3}\n")
    assert cfg.llm.temperature == 0.3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<<:", "f.yml:1: invalid YAML: expected a mapping or list of mappings for merging"),
        ("<<", "f.yml:1: invalid YAML: could not determine a constructor for the tag"),
        ("a: !!python/object x", "f.yml:1: invalid YAML: could not determine a constructor for the tag"),
        (
            "\n\nllm: !custom 3",
            "f.yml:3: invalid YAML: could not determine a constructor for the tag '!custom'",
        ),
        ("[" * 5000, "f.yml:1: invalid YAML: nested too deeply"),
        ("a: &x [*x]", "f.yml:1: invalid YAML: nested too deeply"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
            "f.yml:1: more than 10000 keys and values (alias copies count)",
        ),
    ],
)
def test_unbuildable_yaml_is_a_config_error(text: str, message: str) -> None:
    """Found by fuzzing: tags and merge keys fail while building, after the parse succeeded."""
    [msg] = _errors(text, filename="f.yml")
    assert msg.startswith(message)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [*"ab:-[]{}'\"#&*!|>\n\t 0123.", "max_comments", "llm", "  ", "<<: ", "!!str ", "&a ", "*a"]
        )
    ).map("".join)
)
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    """Never a traceback: whatever the bytes, the result is a RepoConfig or a ConfigError of lines."""
    try:
        load_config(text, filename="fuzz.yml")
    except ConfigError as exc:
        assert exc.messages
        assert all(re.match(r"fuzz\.yml:\d+: ", m) for m in exc.messages)


# ------------------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**", "a/b/c.py", True),
        ("src/**", "src/a/b.py", True),
        ("src/**", "lib/src/a.py", False),
        ("**/test_*.py", "test_x.py", True),
        ("**/test_*.py", "a/b/test_x.py", True),
        ("a/**/z.py", "a/z.py", True),
        ("a/**/z.py", "a/b/c/z.py", True),
        ("*.py", "deep/dir/x.py", True),  # no '/': matches the basename anywhere
        ("src/*.py", "src/x.py", True),
        ("src/*.py", "src/sub/x.py", False),  # '*' stays inside one directory
        ("/src/*.py", "src/x.py", True),
        ("?.go", "a.go", True),
        ("?.go", "ab.go", False),
        ("*.{js,ts}", "web/a.ts", True),
        ("*.{js,ts}", "web/a.py", False),
        ("[Mm]akefile", "Makefile", True),
        ("docs/", "docs/a/b.md", True),
        ("docs/", "src/docs/a.md", False),  # has a '/': anchored at the root
        ("/setup.py", "pkg/setup.py", False),
        ("setup.py", "pkg/setup.py", True),
        ("file.txt", "file.txt.bak", False),
    ],
)
def test_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


@pytest.mark.parametrize(
    ("path", "included"),
    [
        ("src/app.py", True),
        ("package-lock.json", False),
        ("web/yarn.lock", False),
        ("go.sum", False),
        ("uv.lock", False),
        ("vendor/github.com/x/y.go", False),
        ("services/api/vendor/x.go", False),
        ("frontend/node_modules/react/index.js", False),
        ("third_party/lib.c", False),
        ("api/v1/service.pb.go", False),
        ("proto/service_pb2.py", False),
        ("src/schema.generated.ts", False),
        ("src/generated/models.py", False),
        ("dist/bundle.js", False),
        ("build/out.js", False),
        ("src/build.py", True),
        ("static/app.min.js", False),
        ("static/app.min.css", False),
        ("static/app.js.map", False),
        ("static/app.js", True),
    ],
)
def test_default_excludes(path: str, included: bool) -> None:
    assert RepoConfig().path_included(path) is included


def test_include_and_exclude_combine() -> None:
    cfg = load_config(_text("good.yml"))
    assert cfg.path_included("src/a.py")
    assert cfg.path_included("tool.py")  # '*.py' has no '/', matches at the root too
    assert not cfg.path_included("docs/a.md")  # not included
    assert not cfg.path_included("src/legacy/old.py")  # excluded
    assert not cfg.path_included("src/db/migrations/0001.py")


def test_languages_filter() -> None:
    cfg = load_config("languages: [python, javascript]")
    assert cfg.file_included("a.py")
    assert cfg.file_included("a.tsx")  # javascript covers its family
    assert not cfg.file_included("main.go")
    assert not cfg.file_included("README.md")  # no language
    assert RepoConfig().file_included("README.md")  # null languages: everything
    assert RepoConfig().language_included(None)


def test_should_review() -> None:
    cfg = RepoConfig()
    assert cfg.should_review("alice", [], draft=False) == (True, "eligible for review")
    ok, reason = cfg.should_review("dependabot[bot]", [], draft=False)
    assert not ok and "skip_authors" in reason
    assert cfg.should_review("Renovate-Bot", [], draft=False)[0] is False  # case-insensitive
    # '[bot]' is literal, not a character class: 'robert' ends in 't' but is a person
    assert cfg.should_review("robert", [], draft=False)[0] is True
    ok, reason = cfg.should_review("alice", ["bug", "Skip-Review"], draft=False)
    assert not ok and "Skip-Review" in reason
    ok, reason = cfg.should_review("alice", [], draft=True)
    assert not ok and "draft" in reason
    assert load_config("triggers: {drafts: true}").should_review("alice", [], draft=True)[0] is True
    ok, reason = load_config("enabled: false").should_review("alice", [], draft=False)
    assert not ok and "enabled: false" in reason


def test_min_severity_by_path_last_match_wins() -> None:
    """Through the code the filter runs (severity.meets_minimum)."""
    cfg = load_config(
        "min_severity: medium\nmin_severity_by_path:\n  'src/**': low\n  'src/gen/**': critical\n"
        "  '*_test.go': high\n"
    )

    def minimum(path: str) -> str:
        return meets_minimum("nit", path, cfg.min_severity, cfg.min_severity_by_path)[1]

    assert minimum("README.md") == "medium"
    assert minimum("src/a.py") == "low"
    assert minimum("src/gen/x.py") == "critical"
    assert minimum("src/gen/x_test.go") == "high"
    assert set(SEVERITIES) >= {minimum(p) for p in ("a", "src/b")}


def test_instructions_for() -> None:
    cfg = load_config(_text("good.yml"))
    assert cfg.instructions_for("src/api/users.py") == [
        "Every handler must check the caller's permissions before touching the database."
    ]
    assert cfg.instructions_for("db/q.sql") == ["Watch for queries without a LIMIT on large tables."]
    assert cfg.instructions_for("src/api/q.sql") == [pi.instructions for pi in cfg.path_instructions]
    assert cfg.instructions_for("lib/x.py") == []


def test_merged_config_round_trips_through_yaml() -> None:
    cfg = load_config(_text("good.yml"), _text("org.yml"))
    assert load_config(cfg.to_yaml()) == cfg


# ------------------------------------------------------------------------------------ schema & docs


def test_committed_schema_is_in_sync() -> None:
    committed = (ROOT / "reviewbot.schema.json").read_text()
    assert committed == config_schema_text(), (
        "reviewbot.schema.json is out of date with reviewbot/core/config.py; regenerate it with:\n"
        "  .venv/bin/reviewbot config schema > reviewbot.schema.json"
    )


def test_schema_forbids_unknown_keys_and_knows_defaults() -> None:
    schema = config_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["additionalProperties"] is False
    assert schema["properties"]["max_comments"]["default"] == 10
    assert schema["properties"]["max_comments"]["minimum"] == 0
    assert set(schema["properties"]["min_severity"]["enum"]) == set(SEVERITIES)
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object" and "properties" in definition:
            assert definition.get("additionalProperties") is False, name
    json.dumps(schema)


def _dotted_keys(schema: dict[str, Any]) -> list[str]:
    defs = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].split("/")[-1]]
        for branch in node.get("anyOf", []):
            branch = resolve(branch)
            if branch.get("type") in ("object", "array"):
                return branch
        return node

    keys: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        node = resolve(node)
        if node.get("type") == "array" and "items" in node:
            items = resolve(node["items"])
            if "properties" in items:
                walk(items, prefix + "[]")
            return
        for name, sub in node.get("properties", {}).items():
            key = f"{prefix}.{name}" if prefix else name
            keys.append(key)
            walk(sub, key)

    walk(schema, "")
    return keys


def test_every_key_is_documented() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text()
    keys = _dotted_keys(config_json_schema())
    assert "rules.custom[].examples.positive" in keys and "llm.temperature" in keys
    missing = [k for k in keys if f"`{k}`" not in docs]
    assert not missing, f"docs/configuration.md does not mention these keys (as `key`): {missing}"


def test_every_yaml_example_in_the_docs_is_valid() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", docs, flags=re.DOTALL)
    assert len(blocks) >= 20
    for block in blocks:
        try:
            load_config(block, filename="docs/configuration.md")
        except ConfigError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"invalid example in docs/configuration.md:\n{block}\n{exc}")


def test_a_bracket_inside_a_glob_class_is_literal_and_warns_nothing() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert glob_match("src/[[x]y.py", "src/[y.py")
        assert glob_match("src/[[x]y.py", "src/xy.py")
        assert not glob_match("src/[[x]y.py", "src/zy.py")


def test_llm_passes_is_a_count_or_a_list_of_entries_and_wins_over_the_deprecated_key() -> None:
    cfg = load_config("passes: 4\nllm:\n  passes:\n    - {}\n    - {model: local-coder, focus: security}\n")
    specs = cfg.pass_specs()
    assert [(s.model, s.focus) for s in specs] == [(None, None), ("local-coder", "security")]
    assert len(load_config("llm:\n  passes: 3\n").pass_specs()) == 3
    assert [e.splitlines()[0] for e in _errors("llm:\n  passes: 6\n", filename="t.yml")] == [
        "t.yml:2: llm.passes: must be between 1 and 5 passes (got 6)"
    ]
    assert _errors("llm:\n  passes: []\n", filename="t.yml")
    assert _errors("llm:\n  passes:\n    - {model: m, shots: 3}\n", filename="t.yml")
    assert load_config("verify: false\n").verify is False
