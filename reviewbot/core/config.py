"""The per-repository file `.github/reviewbot.yml`: YAML text -> a validated `RepoConfig`.

Merge order: built-in defaults < org defaults (the org's `.github` repository, same file name) <
the repo's file. Mappings merge key by key; lists and scalars replace. The file is read from the
default branch by the caller, never from the PR head, so a PR cannot switch off its own review.

Pure: text in, model out (no I/O). Every problem becomes a line `<file>:<line>: <key>: <message>`
inside a `ConfigError`; users never see a traceback or a pydantic dump.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from reviewbot.core.domain import SEVERITIES
from reviewbot.core.globs import (
    MAX_PATTERN_CHARS,
    MAX_PATTERNS,
    GlobError,
    check_pattern,
    check_patterns,
    glob_list,
    wildcard_match,
)
from reviewbot.core.languages import SUPPORTED, language_for_path, matches_language
from reviewbot.review.rulespec import RuleSpec

CONFIG_PATH = ".github/reviewbot.yml"
ORG_CONFIG_FILENAME = "org:.github/reviewbot.yml"
#: Why a repository with `enabled: false` is not reviewed (the App's check and `reviewbot review`).
DISABLED_REASON = "reviewbot is disabled in the config (enabled: false)"

Severity = Literal[SEVERITIES]  # type: ignore[valid-type]


def _check_glob(pattern: str) -> str:
    """A glob that cannot compile ('[b-a]') would crash every later review of the repo: reject it
    now; so is one over the length cap (a tenant's glob must not cost every review a second)."""
    check_pattern(pattern)  # GlobError is a ValueError: pydantic reports it at the key
    return pattern


def _check_glob_list(patterns: list[str]) -> list[str]:
    check_patterns(patterns)
    return patterns


def _check_name_pattern(pattern: str) -> str:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern is {len(pattern)} characters long (at most {MAX_PATTERN_CHARS})")
    return pattern


Glob = Annotated[str, Field(min_length=1), AfterValidator(_check_glob)]
Globs = Annotated[list[Glob], AfterValidator(_check_glob_list)]
NamePattern = Annotated[str, AfterValidator(_check_name_pattern)]
NamePatterns = Annotated[list[NamePattern], Field(max_length=MAX_PATTERNS)]


def _check_language(lang: str) -> str:
    if lang not in SUPPORTED:
        close = difflib.get_close_matches(lang, SUPPORTED, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(SUPPORTED)})"
        raise ValueError(f"unknown language '{lang}'{hint}")
    return lang


Language = Annotated[str, AfterValidator(_check_language)]

DEFAULT_EXCLUDE: tuple[str, ...] = (
    # lockfiles
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "Cargo.lock",
    "go.sum",
    "Gemfile.lock",
    "composer.lock",
    "uv.lock",
    "Pipfile.lock",
    # vendored code (at any depth: monorepos vendor per service)
    "**/vendor/**",
    "**/third_party/**",
    "**/node_modules/**",
    # generated code
    "*.pb.go",
    "*_pb2.py",
    "*.generated.*",
    "**/generated/**",
    "dist/**",
    "build/**",
    # minified bundles and source maps
    "*.min.js",
    "*.min.css",
    "*.map",
)
DEFAULT_SKIP_AUTHORS: tuple[str, ...] = ("*[bot]", "dependabot*", "renovate*")
DEFAULT_SKIP_LABELS: tuple[str, ...] = ("skip-review", "reviewbot:skip")


# -------------------------------------------------------------------------------------------- models


#: How many LLM passes `llm.passes` allows, and how many run when it is not set: the default is
#: the one bench/passes_eval.py recommends from review-bench (docs/configuration.md, BENCHMARKS.md).
MAX_PASSES = 5
DEFAULT_PASSES = 1
#: The lowest temperature of a pass after the first when its entry sets none: passes that sample
#: the same tokens at temperature 0 agree by construction, and their agreement says nothing.
DIVERSE_TEMPERATURE = 0.7


class _Strict(BaseModel):
    # strict: YAML already types its scalars, so `max_comments: true` or `model: 4` are mistakes.
    model_config = ConfigDict(extra="forbid", strict=True)


class PathsConfig(_Strict):
    """Which files are reviewed: included by `include`, minus anything matching `exclude`."""

    include: Globs = Field(default_factory=lambda: ["**"], description="Globs of files to review.")
    exclude: Globs = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE),
        description="Globs of files never reviewed (lockfiles, vendored, generated, minified by default). "
        "Setting it replaces the default list.",
    )


class TriggersConfig(_Strict):
    """Which pull requests are reviewed at all."""

    drafts: bool = Field(default=False, description="Review draft pull requests too.")
    skip_authors: NamePatterns = Field(
        default_factory=lambda: list(DEFAULT_SKIP_AUTHORS),
        description="Author logins (globs, case-insensitive) whose pull requests are not reviewed.",
    )
    skip_labels: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SKIP_LABELS),
        description="Labels (case-insensitive) that switch the review off for a pull request.",
    )


class CustomRule(RuleSpec):
    """A repo's own rule: a RuleSpec whose languages must be ones we know."""

    @field_validator("languages")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for lang in value:
            _check_language(lang)
        return value

    @field_validator("paths")
    @classmethod
    def _globs_compile(cls, value: list[str]) -> list[str]:
        try:
            check_patterns([g.removeprefix("!") for g in value])
        except GlobError as exc:
            raise ValueError(f"invalid glob in paths: {exc}") from None
        return value


class RulesConfig(_Strict):
    """Switch rules on or off by id (globs allowed), override their severity, add custom rules."""

    disable: NamePatterns = Field(default_factory=list, description="Rule ids (or globs) to switch off.")
    enable: NamePatterns = Field(
        default_factory=list, description="Rule ids (or globs) to switch on; wins over `disable`."
    )
    severity: dict[str, Severity] = Field(
        default_factory=dict, description="Rule id -> severity that replaces the rule's own."
    )
    custom: list[CustomRule] = Field(
        default_factory=list, max_length=50, description="Extra rules for this repository (at most 50)."
    )

    @field_validator("custom")
    @classmethod
    def _unique_ids(cls, rules: list[RuleSpec]) -> list[RuleSpec]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"custom rule id '{rule.id}' is used twice")
            seen.add(rule.id)
        return rules


class PathInstruction(_Strict):
    """Extra guidance for the LLM on files matching `path`."""

    path: Glob = Field(description="Glob of the files the instructions apply to.")
    instructions: str = Field(min_length=1, description="Text added to the LLM prompt for those files.")


class LLMPass(_Strict):
    """One entry of `llm.passes`: a review pass with its own model, focus or temperature."""

    model: str | None = Field(
        default=None, description="Model for this pass (same server); null: `llm.model` or the server's."
    )
    focus: str | None = Field(
        default=None, min_length=1, description="What this pass looks for, added to its prompt."
    )
    temperature: float | None = Field(
        default=None,
        ge=0.0,
        le=2.0,
        description="Sampling temperature of this pass; null: `llm.temperature` for the first pass, "
        f"at least {DIVERSE_TEMPERATURE} for the others.",
    )


class LLMConfig(_Strict):
    """Per-repo LLM knobs (the server and key are process settings, not repo settings)."""

    model: str | None = Field(default=None, description="Model name; null uses the server's default.")
    temperature: float | None = Field(
        default=0.0, ge=0.0, le=2.0, description="Sampling temperature; null: not sent (the model's default)."
    )
    max_tokens_per_request: int = Field(
        default=12000,
        ge=1,
        description="Upper bound on prompt + completion tokens per LLM request (the model's context "
        "window bounds it too; the output limit counts against it, up to half).",
    )
    passes: int | list[LLMPass] | None = Field(
        default=None,
        description=f"Review passes: a count (1 to {MAX_PASSES}) or a list of {{model, focus, temperature}} "
        f"entries. Each pass sees the files and hunks in its own shuffled order; null: {DEFAULT_PASSES}.",
    )

    @field_validator("passes")
    @classmethod
    def _pass_range(cls, value: int | list[LLMPass] | None) -> int | list[LLMPass] | None:
        n = len(value) if isinstance(value, list) else value
        if n is not None and not 1 <= n <= MAX_PASSES:
            raise ValueError(f"must be between 1 and {MAX_PASSES} passes (got {n})")
        return value


class SarifInConfig(_Strict):
    """The repository's own linters as candidate sources in the App (reviewbot.review.sarif_in)."""

    check_runs: list[str] = Field(
        default_factory=list,
        description="Names (globs) of check runs on the head commit whose annotations are imported.",
    )
    artifacts: list[str] = Field(
        default_factory=list,
        description="Names (globs) of workflow-run artifacts of the head commit whose *.sarif files "
        "are imported.",
    )


class ConversationConfig(_Strict):
    """Answers to questions asked under reviewbot's comments (reviewbot.app.conversation)."""

    enabled: bool = Field(
        default=True, description="Answer a question replied to a reviewbot comment (needs an LLM)."
    )


class RepoConfig(_Strict):
    """The whole `.github/reviewbot.yml`, after merging defaults < org < repo."""

    enabled: bool = Field(default=True, description="false switches reviewbot off for the repository.")
    paths: PathsConfig = Field(default_factory=PathsConfig)
    languages: list[Language] | None = Field(
        default=None, description=f"Languages to review (null: all). Known: {', '.join(SUPPORTED)}."
    )
    triggers: TriggersConfig = Field(default_factory=TriggersConfig)
    min_severity: Severity = Field(default="low", description="Findings below this severity are not posted.")
    min_severity_by_path: dict[Glob, Severity] = Field(
        default_factory=dict,
        max_length=MAX_PATTERNS,
        description="Glob -> min_severity for matching files; the last match wins.",
    )
    max_comments: int = Field(default=10, ge=0, description="At most this many comments per pull request.")
    min_acceptance: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Post a finding only if its predicted acceptance is at least this. "
        "Exclusive with target_precision.",
    )
    target_precision: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Pick the acceptance threshold that reaches this precision on past feedback. "
        "Exclusive with min_acceptance.",
    )
    passes: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PASSES,
        description="Deprecated: the count form of `llm.passes`, which wins.",
    )
    verify: bool = Field(
        default=True,
        description="Ask the LLM to verify each surviving finding against its code before posting "
        "(one batched request per PR); refuted findings are not posted. Needs an LLM.",
    )
    rules: RulesConfig = Field(default_factory=RulesConfig)
    path_instructions: list[PathInstruction] = Field(
        default_factory=list,
        max_length=MAX_PATTERNS,
        description="Extra LLM guidance for files matching a glob.",
    )
    llm: LLMConfig = Field(default_factory=LLMConfig)
    sarif_in: SarifInConfig = Field(default_factory=SarifInConfig)
    conversation: ConversationConfig = Field(default_factory=ConversationConfig)
    exploration_rate: float = Field(
        default=0.05,
        ge=0.0,
        le=0.5,
        description="Share of near-threshold findings posted anyway so the acceptance model keeps learning.",
    )

    def min_severity_for(self, path: str) -> str:
        """The minimum severity for `path` (the last matching `min_severity_by_path` glob wins),
        as the filter applies it."""
        from reviewbot.filter.severity import minimum_for

        return minimum_for(path, self.min_severity, dict(self.min_severity_by_path))

    @field_validator("target_precision")
    @classmethod
    def _one_threshold(cls, value: float | None, info: Any) -> float | None:
        if value is not None and info.data.get("min_acceptance") is not None:
            raise ValueError("set either min_acceptance or target_precision, not both")
        return value

    # ---- questions the pipeline asks

    def pass_specs(self) -> list[LLMPass]:
        """The LLM passes to run: `llm.passes`, else the deprecated `passes`, else the default."""
        chosen = self.llm.passes if self.llm.passes is not None else self.passes
        if isinstance(chosen, list):
            return list(chosen)
        return [LLMPass() for _ in range(DEFAULT_PASSES if chosen is None else chosen)]

    def path_included(self, path: str) -> bool:
        """Whether `path` passes `paths.include` and is not caught by `paths.exclude`."""
        return glob_list(tuple(self.paths.include)).any(path) and not glob_list(
            tuple(self.paths.exclude)
        ).any(path)

    def language_included(self, language: str | None) -> bool:
        """Whether a file in `language` is reviewed (None = a language we have no grammar for)."""
        if self.languages is None:
            return True
        return any(matches_language(language, wanted) for wanted in self.languages)

    def file_included(self, path: str) -> bool:
        """`path_included` and `language_included` for the language of `path`."""
        return self.path_included(path) and self.language_included(language_for_path(path))

    def should_review(self, author: str, labels: list[str], draft: bool) -> tuple[bool, str]:
        """Whether a PR is reviewed at all, and why (the reason is shown in logs and checks)."""
        if not self.enabled:
            return False, DISABLED_REASON
        if draft and not self.triggers.drafts:
            return False, "draft pull request (triggers.drafts is false)"
        for pattern in self.triggers.skip_authors:
            if wildcard_match(pattern, author):
                return False, f"author '{author}' matches triggers.skip_authors '{pattern}'"
        skip = {label.lower() for label in self.triggers.skip_labels}
        for label in labels:
            if label.lower() in skip:
                return False, f"label '{label}' is in triggers.skip_labels"
        return True, "eligible for review"

    def instructions_for(self, path: str) -> list[str]:
        """The `path_instructions` texts that apply to `path`, in file order."""
        found = glob_list(tuple(pi.path for pi in self.path_instructions)).indices(path)
        return [self.path_instructions[i].instructions for i in found]

    def to_yaml(self) -> str:
        """The merged config as YAML (what `reviewbot config check` prints)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of `.github/reviewbot.yml` (committed as reviewbot.schema.json for editors)."""
    schema = RepoConfig.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "reviewbot repository configuration (.github/reviewbot.yml)",
    }


def config_schema_text() -> str:
    """The exact text of reviewbot.schema.json."""
    return json.dumps(config_json_schema(), indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------------ loading/errors


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where (file, line, dotted key) and what."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: "
        return where + (f"{self.key}: {self.message}" if self.key else self.message)


class ConfigError(Exception):
    """The config is invalid. `messages` are `<file>:<line>: <key>: <message>` lines."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        self.messages = [str(i) for i in issues]
        super().__init__("\n".join(self.messages))


Path_ = tuple[str | int, ...]


@dataclass
class _Parsed:
    data: dict[str, Any]
    lines: dict[Path_, int]  # key path -> 1-based line of the key (or list item)


#: A config is a few KiB; the file comes from a tenant's repository and is parsed on every review,
#: so a bigger one is refused before parsing (a 1 MB file once cost 15 minutes of merging).
MAX_CONFIG_BYTES = 64 * 1024

#: libyaml's composer when installed (3-4x faster than the pure-Python one, same nodes and marks).
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str) -> yaml.Node | None:
    """Compose with libyaml; on a YAML error compose again in Python for its clearer message (and
    its handling of text libyaml cannot encode, such as a lone surrogate)."""
    try:
        return yaml.compose(text, Loader=_YAML_LOADER)
    except (yaml.YAMLError, UnicodeEncodeError):
        if _YAML_LOADER is yaml.SafeLoader:
            raise
        return yaml.compose(text, Loader=yaml.SafeLoader)


def _parse(text: str | None, filename: str) -> _Parsed:
    """YAML text -> plain data plus the line of every key; errors become ConfigError."""
    if text is None or not text.strip():
        return _Parsed({}, {(): 1})
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            [ConfigIssue(filename, 1, "", f"the file is {size} bytes; at most {MAX_CONFIG_BYTES} are read")]
        )
    lines: dict[Path_, int] = {(): 1}
    issues: list[ConfigIssue] = []
    try:
        node = _compose(text)
        if node is None or (node.tag == "tag:yaml.org,2002:null" and isinstance(node, yaml.ScalarNode)):
            return _Parsed({}, {(): 1})  # an empty document ("---" alone)
        lines[()] = node.start_mark.line + 1
        data = _build(node, (), lines, issues, filename, yaml.SafeLoader(""), [_MAX_NODES])
    except yaml.MarkedYAMLError as exc:  # syntax errors, and tags/merges that cannot be built
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise ConfigError([ConfigIssue(filename, line, "", f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(filename, 1, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([ConfigIssue(filename, 1, "", "invalid YAML: nested too deeply")]) from None
    except _TooBig:
        raise ConfigError(
            [ConfigIssue(filename, 1, "", f"more than {_MAX_NODES} keys and values (alias copies count)")]
        ) from None
    if not issues and not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"'{data}'"
        issues.append(ConfigIssue(filename, lines[()], "", f"the file must be a mapping of keys, got {kind}"))
    if issues:
        raise ConfigError(issues)
    return _Parsed(data, lines)


def key_lines(text: str | None, filename: str = CONFIG_PATH) -> dict[tuple[str | int, ...], int]:
    """Key path -> 1-based line in `text` (e.g. ("rules", "disable", 0) -> 3), for messages about
    a config that is valid YAML but names something that does not exist. Raises ConfigError."""
    return _parse(text, filename).lines


#: A config has a few hundred keys and values; aliases can make a small file expand exponentially
#: ("billion laughs"), and the file comes from a repository, so building stops here.
MAX_CONFIG_VALUES = 10_000
_MAX_NODES = MAX_CONFIG_VALUES


class _TooBig(Exception):
    pass


def _build(
    node: yaml.Node,
    path: Path_,
    lines: dict[Path_, int],
    issues: list[ConfigIssue],
    filename: str,
    constructor: yaml.SafeLoader,
    budget: list[int],
) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(ConfigIssue(filename, line, _dotted(path), "a key must be a plain string"))
                continue
            key = key_node.value  # the raw text: `on:` stays "on", `123:` stays "123"
            if key in out:
                issues.append(
                    ConfigIssue(
                        filename,
                        line,
                        _dotted((*path, key)),
                        f"duplicate key (first set on line {lines[(*path, key)]})",
                    )
                )
                continue
            lines[(*path, key)] = line
            out[key] = _build(value_node, (*path, key), lines, issues, filename, constructor, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_build(item, (*path, i), lines, issues, filename, constructor, budget))
        return items
    return constructor.construct_object(node, deep=True)


#: Keys where a later layer setting one clears the other from earlier layers.
_EXCLUSIVE: tuple[tuple[str, str], ...] = (("min_acceptance", "target_precision"),)


class _Origins:
    """Where each key path of the merged config was set: (file, line), by path.

    Indexed by parent path too, so replacing or forgetting a subtree costs its size, not the size
    of the whole config (merging was quadratic in keys: 20k keys took 49 s).
    """

    def __init__(self) -> None:
        self.at: dict[Path_, tuple[str, int]] = {}
        self._kids: dict[Path_, set[Path_]] = {}

    def __contains__(self, path: Path_) -> bool:
        return path in self.at

    def __getitem__(self, path: Path_) -> tuple[str, int]:
        return self.at[path]

    def set(self, path: Path_, where: tuple[str, int]) -> None:
        self.at[path] = where
        if path:
            self._kids.setdefault(path[:-1], set()).add(path)

    def forget(self, prefix: Path_) -> None:
        """Drop `prefix` and everything below it."""
        stack = [prefix]
        while stack:
            path = stack.pop()
            self.at.pop(path, None)
            stack.extend(self._kids.pop(path, ()))
        if prefix:
            self._kids.get(prefix[:-1], set()).discard(prefix)


def _children(lines: dict[Path_, int]) -> dict[Path_, list[Path_]]:
    """Parent path -> the key paths directly under it, for one layer's `lines`."""
    kids: dict[Path_, list[Path_]] = {}
    for path in lines:
        if path:
            kids.setdefault(path[:-1], []).append(path)
    return kids


def _merge(
    base: dict[str, Any],
    over: dict[str, Any],
    origin: _Origins,
    over_lines: dict[Path_, int],
    filename: str,
    path: Path_ = (),
    kids: dict[Path_, list[Path_]] | None = None,
) -> dict[str, Any]:
    """Deep-merge `over` into `base` (mappings merge, everything else replaces), tracking origins.

    Linear in the keys of both layers: each replaced subtree's origins are walked once.
    """
    if kids is None:
        kids = _children(over_lines)
    merged = dict(base)
    if path == ():
        for a, b in _EXCLUSIVE:
            for mine, other in ((a, b), (b, a)):
                if over.get(mine) is not None and other not in over and other in merged:
                    del merged[other]
                    origin.forget((other,))
    for key, value in over.items():
        sub = (*path, key)
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            origin.set(sub, (filename, over_lines.get(sub, 1)))
            merged[key] = _merge(merged[key], value, origin, over_lines, filename, sub, kids)
        else:
            origin.forget(sub)
            merged[key] = value
            stack = [sub]
            while stack:
                p = stack.pop()
                if p in over_lines:
                    origin.set(p, (filename, over_lines[p]))
                stack.extend(kids.get(p, ()))
    return merged


def load_config(
    repo_text: str | None,
    org_text: str | None = None,
    *,
    filename: str = CONFIG_PATH,
    org_filename: str = ORG_CONFIG_FILENAME,
) -> RepoConfig:
    """Merge built-in defaults < org file < repo file and validate. Raises ConfigError.

    `None` or empty text means "no file" (defaults). `filename`/`org_filename` only label errors.
    """
    issues: list[ConfigIssue] = []
    layers: list[tuple[_Parsed, str]] = []
    for text, name in ((org_text, org_filename), (repo_text, filename)):
        try:
            layers.append((_parse(text, name), name))
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues:
        raise ConfigError(issues)

    merged: dict[str, Any] = {}
    origin = _Origins()
    origin.set((), (filename, 1))
    for parsed, name in layers:
        merged = _merge(merged, parsed.data, origin, parsed.lines, name)
    try:
        return RepoConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_issues_from(exc, origin, filename)) from None


def _issues_from(exc: ValidationError, origin: _Origins, default_file: str) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    seen: set[tuple[str, int, str, str]] = set()
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]))
        file, line = default_file, 1
        for n in range(len(loc), -1, -1):
            if loc[:n] in origin:
                file, line = origin[loc[:n]]
                break
        issue = ConfigIssue(file, line, _dotted(loc), _message(err, loc))
        ident = (issue.file, issue.line, issue.key, issue.message)
        if ident not in seen:
            seen.add(ident)
            issues.append(issue)
    issues.sort(key=lambda i: (i.file != default_file, i.file, i.line))
    return issues


def _clean_loc(loc: tuple[Any, ...]) -> Path_:
    """Drop pydantic's '[key]' marker (an error in a mapping key is reported at the key)."""
    return tuple(part for part in loc if part != "[key]")


def _dotted(loc: Path_) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(err: Any, loc: Path_) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    shown = _short(value)
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        options = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(options)})"
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return "is required"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
        bound = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}
        return f"must be {op[kind]} {ctx.get(bound[kind])} (got {shown})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number (got {shown})"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number (got {shown})"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false (got {shown})"
    if kind == "string_type":
        return f"must be a string (got {shown})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "list_type":
        return f"must be a list (got {shown})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of keys (got {shown})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {shown})"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')} (got {shown})"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    return f"{err['msg']} (got {shown})"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _allowed_keys(loc: Path_) -> list[str]:
    """Field names of the model found at `loc` (for did-you-mean on unknown keys)."""
    model: Any = RepoConfig
    for part in loc:
        model = _unwrap(model)
        if isinstance(part, int):
            args = get_args(model)
            model = args[0] if get_origin(model) is list and args else None
        elif isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = model.model_fields[part].annotation
        else:
            return []
    model = _unwrap(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """`X | None` -> X; Annotated[X, ...] -> X."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp
