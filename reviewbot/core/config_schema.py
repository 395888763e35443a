"""What `.github/reviewbot.yml` may say: the pydantic models, their defaults and their checks.

Pure. `reviewbot.core.config` turns YAML text into these models (merge order, line numbers,
errors); `reviewbot config schema` prints their JSON Schema (committed as reviewbot.schema.json).
"""

from __future__ import annotations

import difflib
import json
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

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
