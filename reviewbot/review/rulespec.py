"""The shape of one review rule, shared by the built-in packs (rules/*.yml) and repo configs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reviewbot.core.domain import CATEGORIES, SEVERITIES
from reviewbot.core.roles import ROLES

#: Categories whose findings are about production behaviour: off in tests, examples and fixtures
#: unless the rule lists those roles (a discarded error in a test is rarely a defect).
BEHAVIOUR_CATEGORIES = frozenset({"security", "bug", "correctness", "performance"})


def default_roles(category: str) -> tuple[str, ...]:
    """The roles a rule of `category` runs in when it does not list its own."""
    if category in BEHAVIOUR_CATEGORIES:
        return ("source", "docs")
    return tuple(r for r in ROLES if r not in ("generated", "vendored"))


class RuleExamples(BaseModel):
    """Code that must (positive) and must not (negative) trigger the rule's query."""

    model_config = ConfigDict(extra="forbid")
    positive: list[str] = Field(default_factory=list)
    negative: list[str] = Field(default_factory=list)


class RuleSpec(BaseModel):
    """A rule: a tree-sitter query (deterministic finding), an LLM instruction, or both."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Unique id, e.g. 'py-eval'.")
    languages: list[str] = Field(min_length=1, description="Languages it applies to, e.g. ['python'].")
    severity: str = Field(description=f"One of {', '.join(SEVERITIES)}.")
    category: str = Field(description=f"One of {', '.join(CATEGORIES)}.")
    message: str = Field(min_length=1, description="What the comment says when the rule fires.")
    title: str | None = Field(
        default=None, max_length=100, description="Short headline; default: the message's first clause."
    )
    paths: list[str] = Field(default_factory=list, description="Globs it is limited to (empty: all).")
    query: str | None = Field(default=None, description="tree-sitter query; capture @match anchors it.")
    instruction: str | None = Field(default=None, description="Guidance added to the LLM prompt.")
    examples: RuleExamples = Field(default_factory=RuleExamples)
    enabled: bool = Field(default=True, description="False: opt-in; a repo turns it on with rules.enable.")
    roles: list[str] | None = Field(
        default=None,
        description=(
            "File roles it runs in (source, test, example, fixture, generated, vendored, docs). "
            "Default: security, bug, correctness and performance rules run in source and docs only, others "
            "everywhere but generated and vendored code."
        ),
    )

    def runs_in(self, role: str) -> bool:
        """Whether this rule fires in a file of `role` (see reviewbot.core.roles)."""
        return role in (self.roles if self.roles is not None else default_roles(self.category))

    @model_validator(mode="after")
    def _check(self) -> RuleSpec:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {', '.join(CATEGORIES)}")
        unknown = sorted(set(self.roles or ()) - set(ROLES))
        if unknown:
            raise ValueError(f"roles: {', '.join(unknown)} not one of {', '.join(ROLES)}")
        if not self.query and not self.instruction:
            raise ValueError("a rule needs a 'query', an 'instruction', or both")
        return self
