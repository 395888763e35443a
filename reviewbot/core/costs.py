"""Cost under the operator's control: caps a repository's config cannot exceed, and prices.

A repo's `.github/reviewbot.yml` is written by whoever can push to the repo, but the App's operator
pays for the LLM. `OperatorLimits` (process settings) caps passes, the models a repo may choose,
tokens per PR, tokens per installation per day and LLM requests per review; `TokenCap` enforces
the token and request budgets while a review runs, so past the cap the review posts what it has
and says which cap stopped it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reviewbot.core.config_schema import RepoConfig
from reviewbot.core.domain import LLMUsage

if TYPE_CHECKING:
    from reviewbot.core.settings import Settings


@dataclass(frozen=True, slots=True)
class Price:
    """Price per million prompt and completion tokens."""

    prompt: float
    completion: float


@dataclass(frozen=True, slots=True)
class ReviewCaps:
    """How much of one change a review takes on (None: no cap), so a giant PR costs bounded
    memory, time and LLM requests; what is left out is named in the check run and the report."""

    max_files: int | None = None
    max_changed_lines: int | None = None
    max_candidates: int | None = None
    max_llm_requests: int | None = None


@dataclass(frozen=True, slots=True)
class OperatorLimits:
    """What the operator allows any repository to ask for (None: no cap)."""

    max_passes: int | None = None
    allowed_models: tuple[str, ...] | None = None
    tokens_per_pr: int | None = None
    tokens_per_installation_day: int | None = None
    prices: dict[str, Price] = field(default_factory=dict)
    review: ReviewCaps = field(default_factory=ReviewCaps)


def limits_from_settings(settings: Settings) -> OperatorLimits:
    """The operator's caps and price table from the process settings."""
    models = settings.llm_allowed_models
    allowed = tuple(m.strip() for m in models.split(",") if m.strip()) if models else None
    if allowed is not None:
        allowed = (*allowed, settings.llm_model)  # the operator's own default is always allowed
    return OperatorLimits(
        max_passes=settings.llm_max_passes,
        allowed_models=allowed,
        tokens_per_pr=settings.llm_max_tokens_per_pr,
        tokens_per_installation_day=settings.llm_max_tokens_per_installation_day,
        prices={m: Price(p["prompt"], p["completion"]) for m, p in (settings.llm_prices or {}).items()},
        review=ReviewCaps(
            max_files=settings.review_max_files,
            max_changed_lines=settings.review_max_changed_lines,
            max_candidates=settings.review_max_candidates,
            max_llm_requests=settings.review_max_llm_requests,
        ),
    )


def apply_limits(
    config: RepoConfig, limits: OperatorLimits, default_model: str
) -> tuple[RepoConfig, list[str]]:
    """The repo config within the operator's caps, and one note per setting that was capped."""
    notes: list[str] = []
    llm_updates: dict[str, object] = {}
    specs = config.pass_specs()
    capped = list(specs)
    if limits.max_passes is not None and len(specs) > limits.max_passes:
        notes.append(
            f"passes: {len(specs)} asked by the repository config, {limits.max_passes} allowed "
            f"by the operator (REVIEWBOT_LLM_MAX_PASSES)"
        )
        capped = capped[: limits.max_passes]
    model = config.llm.model
    if model and limits.allowed_models is not None and model not in limits.allowed_models:
        notes.append(
            f"llm.model: {model!r} is not among the models the operator allows "
            f"(REVIEWBOT_LLM_ALLOWED_MODELS); using {default_model!r}"
        )
        llm_updates["model"] = None
    for n, spec in enumerate(capped):  # a pass's own model is held to the same list
        if spec.model and limits.allowed_models is not None and spec.model not in limits.allowed_models:
            notes.append(
                f"llm.passes[{n}].model: {spec.model!r} is not among the models the operator allows "
                f"(REVIEWBOT_LLM_ALLOWED_MODELS); that pass uses the repository's model"
            )
            capped[n] = spec.model_copy(update={"model": None})
    if capped != specs:
        llm_updates["passes"] = capped
    if not llm_updates:
        return config, notes
    return config.model_copy(update={"llm": config.llm.model_copy(update=llm_updates), "passes": None}), notes


@dataclass(slots=True)
class Spend:
    """One LLM request's claim on the review's token cap: reserved before it is sent, settled once
    after (asking and verification share it, so both charge the cap and the usage alike)."""

    cap: TokenCap | None
    usage: LLMUsage
    reserved: int

    def answered(self, prompt_tokens: int, completion_tokens: int) -> None:
        """The server answered: the cap and the usage are charged what it reported."""
        if self.cap is not None:
            self.cap.settle(self.reserved, prompt_tokens + completion_tokens)
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens

    def failed(self) -> None:
        """No answer: the reservation is given back (a failed request costs the cap nothing)."""
        if self.cap is not None:
            self.cap.settle(self.reserved, 0)


def reserve_request(cap: TokenCap | None, usage: LLMUsage, tokens: int) -> Spend | None:
    """Reserve a request's estimated tokens on the review's cap and count the request in `usage`.
    None when the cap refuses (then `usage.stopped_by` names the cap): the request is not sent."""
    if cap is not None and not cap.reserve(tokens):
        usage.stopped_by = usage.stopped_by or cap.name
        return None
    usage.requests += 1
    return Spend(cap, usage, tokens)


def cost_of(usage: LLMUsage, prices: dict[str, Price]) -> float | None:
    """What the usage cost by the price table, or None when the model has no price."""
    price = prices.get(usage.model)
    if price is None:
        return None
    return (usage.prompt_tokens * price.prompt + usage.completion_tokens * price.completion) / 1_000_000


class TokenCap:
    """The LLM budget shared by every request of a review (all passes and verification): a token
    budget, a request count, or both; thread- and task-safe.

    A request reserves its estimated prompt tokens (and one request) before it is sent and settles
    with what the server reported; a request that would go past either budget is not sent, and
    `name` then says which budget stopped it.
    """

    def __init__(
        self,
        limit: int | None,
        name: str,
        *,
        max_requests: int | None = None,
        requests_name: str = "",
    ) -> None:
        self.limit = limit
        self.max_requests = max_requests
        self._names = {"tokens": name, "requests": requests_name}
        self._stopped_by = "tokens" if limit is not None else "requests"
        self.spent = 0
        self.sent = 0  # requests reserved (sent, whatever their answer)
        self.stopped = 0  # requests not sent because of the cap
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The budget that stopped the first refused request (else the token budget's), e.g.
        "tokens per PR (REVIEWBOT_LLM_MAX_TOKENS_PER_PR=50000)"."""
        return self._names[self._stopped_by]

    def reserve(self, tokens: int) -> bool:
        with self._lock:
            over_requests = self.max_requests is not None and self.sent >= self.max_requests
            over_tokens = self.limit is not None and self.spent + tokens > self.limit
            if over_requests or over_tokens:
                if not self.stopped:
                    self._stopped_by = "requests" if over_requests else "tokens"
                self.stopped += 1
                return False
            self.spent += tokens
            self.sent += 1
            return True

    def settle(self, reserved: int, used: int) -> None:
        with self._lock:
            self.spent += used - reserved


def token_cap(limits: OperatorLimits, *, used_today: int = 0) -> TokenCap | None:
    """The tightest of the per-PR cap and what is left of the installation's daily cap, with the
    operator's cap on LLM requests per review."""
    caps: list[tuple[int, str]] = []
    if limits.tokens_per_pr is not None:
        caps.append(
            (limits.tokens_per_pr, f"tokens per PR (REVIEWBOT_LLM_MAX_TOKENS_PER_PR={limits.tokens_per_pr})")
        )
    if limits.tokens_per_installation_day is not None:
        left = max(0, limits.tokens_per_installation_day - used_today)
        caps.append(
            (
                left,
                f"tokens per installation per day (REVIEWBOT_LLM_MAX_TOKENS_PER_INSTALLATION_DAY="
                f"{limits.tokens_per_installation_day}, {used_today} already used today)",
            )
        )
    requests = limits.review.max_llm_requests
    if not caps and requests is None:
        return None
    limit, name = min(caps) if caps else (None, "")
    return TokenCap(
        limit,
        name,
        max_requests=requests,
        requests_name=f"LLM requests per review (REVIEWBOT_REVIEW_MAX_LLM_REQUESTS={requests})",
    )
