"""What a repository's reviews cost: LLM tokens, requests, failures and cost by model, and how many
reviews an operator cap stopped (read from the usage each posted review recorded)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from reviewbot.app import records
from reviewbot.app.records import Tenant

if TYPE_CHECKING:  # annotations only: the caller opens the store
    from reviewbot.app.store import Store


@dataclass(slots=True)
class ModelUsage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    cost: float | None = None


@dataclass(slots=True)
class UsageTotals:
    reviews: int = 0
    capped: int = 0  # reviews an operator cost cap stopped early
    by_model: dict[str, ModelUsage] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "reviews": self.reviews,
            "capped": self.capped,
            "by_model": {m: asdict(u) for m, u in sorted(self.by_model.items())},
        }


def usage_totals(store: Store, t: Tenant) -> UsageTotals:
    """Sum of the usage of the tenant's posted reviews (read through records), by model."""
    totals = UsageTotals()
    for usage in records.posted_usages(store, t):
        totals.reviews += 1
        totals.capped += bool(usage.get("stopped_by"))
        m = totals.by_model.setdefault(str(usage.get("model") or "unknown"), ModelUsage())
        m.requests += int(usage.get("requests") or 0)
        m.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        m.completion_tokens += int(usage.get("completion_tokens") or 0)
        m.errors += int(usage.get("errors") or 0)
        if isinstance(usage.get("cost"), int | float):
            m.cost = (m.cost or 0.0) + float(usage["cost"])
    return totals


def render_usage(t: UsageTotals) -> list[str]:
    """Lines for `reviewbot stats`."""
    lines = [f"LLM usage ({t.reviews} reviews, {t.capped} stopped by a cost cap)"]
    lines += [
        f"  {model[:32]:<32} {u.requests:>6} req {u.prompt_tokens:>10} + {u.completion_tokens:>8} tokens "
        f"{u.errors:>4} failed  cost {'-' if u.cost is None else f'{u.cost:.4f}'}"
        for model, u in sorted(t.by_model.items())
    ] or ["  (none)"]
    return lines
